"""statesaga beside DBOS on the same machine: durable 4-step workflows of no-op steps.

DBOS (PyPI ``dbos``, 3.x, the ``bench`` extra) runs an async workflow of four async no-op
steps with its system database in a SQLite file (its own settings); statesaga runs a 4-step
chain of no-op steps by URL, ``execute(store="sqlite:///path.db")``, with its defaults (WAL,
synchronous=FULL). Both one at a time (milliseconds per run) and 100 in flight
(``asyncio.gather``, runs per second). Rounds alternate between the two; medians.

Skipped, saying so, when ``dbos`` is not installed (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statesaga import Saga, SagaStatus, Step, shutdown


async def noop(ctx: Any) -> None:
    """A no-op step."""
    return None


class Compared(Saga):
    """4-step chain of no-op steps."""

    steps = tuple(Step(name, noop) for name in "abcd")


@dataclass
class DbosResult:
    """One at a time (ms per run) and 100 in flight (runs/s), DBOS and statesaga."""

    rounds: int
    in_flight: int
    dbos_ms: float
    statesaga_ms: float
    dbos_per_s: float
    statesaga_per_s: float
    goal: float
    passed: bool
    one_ratio: float = 0.0  # DBOS ms / statesaga ms: how many times faster statesaga is
    flight_ratio: float = 0.0  # statesaga runs/s / DBOS runs/s
    dbos_version: str = ""
    one_ratios: list[float] = field(default_factory=list)


def missing() -> str | None:
    """Why the section cannot run (``None``: it can)."""
    if importlib.util.find_spec("dbos") is None:
        return "dbos is not installed (pip install -e '.[bench]', or make bench)"
    return None


def _dbos_workflow() -> Any:
    from dbos import DBOS

    @DBOS.step()
    async def a() -> None:
        return None

    @DBOS.step()
    async def b() -> None:
        return None

    @DBOS.step()
    async def c() -> None:
        return None

    @DBOS.step()
    async def d() -> None:
        return None

    @DBOS.workflow()
    async def chain(i: int) -> int:
        await a()
        await b()
        await c()
        await d()
        return i

    return chain


async def _one_at_a_time(run: Any, runs: int) -> float:
    """Median seconds of ``runs`` runs made one after another."""
    times = []
    for i in range(runs):
        start = time.perf_counter()
        await run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _in_flight(run: Any, n: int) -> float:
    """Runs per second with ``n`` runs gathered at once."""
    start = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def bench_dbos(rounds: int, runs: int, in_flight: int, goal: float) -> DbosResult:
    """``rounds`` alternating rounds after a warm-up one; ``runs`` one-at-a-time runs each."""
    from importlib.metadata import version

    from dbos import DBOS

    chain = _dbos_workflow()
    with tempfile.TemporaryDirectory(prefix="statesaga-bench-") as tmp:
        base = Path(tmp)
        DBOS(
            config={
                "name": "statesaga-bench",
                "system_database_url": f"sqlite:///{base / 'dbos.sqlite'}",
                "run_admin_server": False,
                "log_level": "WARNING",
            }
        )
        DBOS.launch()
        url = f"sqlite:///{base / 'statesaga.db'}"
        counter = iter(range(10**9))

        async def statesaga_run(i: int) -> None:
            result = await Compared(i=i).execute(store=url, saga_id=f"s{next(counter)}")
            if result.status is not SagaStatus.COMPLETED:
                raise SystemExit("DBOS comparison: a statesaga run did not complete")

        one: dict[str, list[float]] = {"dbos": [], "statesaga": []}
        flight: dict[str, list[float]] = {"dbos": [], "statesaga": []}
        try:
            for r in range(rounds + 1):
                sides = [("dbos", chain), ("statesaga", statesaga_run)]
                for name, run in sides if r % 2 else sides[::-1]:
                    single = await _one_at_a_time(run, runs)
                    many = await _in_flight(run, in_flight)
                    if r:  # the first round warms up
                        one[name].append(single)
                        flight[name].append(many)
        finally:
            await shutdown()  # first: destroying DBOS shuts the loop's default executor down
            DBOS.destroy()
    ratios = [d / s for d, s in zip(one["dbos"], one["statesaga"], strict=True)]
    one_ratio = statistics.median(ratios)
    dbos_per_s = statistics.median(flight["dbos"])
    statesaga_per_s = statistics.median(flight["statesaga"])
    return DbosResult(
        rounds=rounds,
        in_flight=in_flight,
        dbos_ms=statistics.median(one["dbos"]) * 1e3,
        statesaga_ms=statistics.median(one["statesaga"]) * 1e3,
        dbos_per_s=dbos_per_s,
        statesaga_per_s=statesaga_per_s,
        goal=goal,
        passed=one_ratio >= goal,
        one_ratio=one_ratio,
        flight_ratio=statesaga_per_s / dbos_per_s,
        dbos_version=version("dbos"),
        one_ratios=ratios,
    )


if __name__ == "__main__":
    why = missing()
    print(why or asyncio.run(bench_dbos(5, 20, 100, 8.0)))
