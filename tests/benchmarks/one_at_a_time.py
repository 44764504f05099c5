"""One durable run at a time on SQLite (a saga per web request) against plain sqlite3.

Engine: runs of a 4-step chain of no-op steps, one after another, each named by URL,
``await Saga(...).execute(store="sqlite:///path.db")`` as the docs show (after one earlier run
has opened the store, as in a service that has served a request), with the default settings
(WAL, synchronous=FULL).

Baseline: plain ``sqlite3`` on one connection to a file of the same schema and settings makes
the same five commits per run with the same rows: the run row inserted by the first, each
commit updating the run row and writing the step rows and the two history rows of its
write-ahead point.

Rounds alternate between the two (which goes first alternates too); each round times a batch
of runs one at a time. Reported: the medians per run, and the median of the rounds' own
ratios (a round's two sides ran back to back).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statesaga import Saga, SagaStatus, Step, shutdown
from statesaga.store.sqlite import SQLiteStore

STEPS = ("a", "b", "c", "d")


async def noop(ctx: Any) -> None:
    """A no-op step."""
    return None


class OneAtATime(Saga):
    """4-step chain of no-op steps."""

    steps = tuple(Step(name, noop) for name in STEPS)


@dataclass
class OneAtATimeResult:
    """Milliseconds per run, one run at a time: the engine by URL and plain sqlite3."""

    runs: int
    rounds: int
    engine_ms: float
    sqlite_ms: float
    ratio: float
    goal: float
    passed: bool
    ratio_rounds: list[float] = field(default_factory=list)


def commits(run_id: str, now: float) -> list[dict[str, Any]]:
    """The five commits of a 4-step chain as the journal makes them: rows by table."""
    owner = "bench:1:abc"
    out: list[dict[str, Any]] = []
    seq = 0
    for k in range(len(STEPS) + 1):
        history, steps = [], []
        if k == 0:
            history.append(("start", "pending", "running", 0))
        else:
            prev = STEPS[k - 1]
            history.append((f"{prev}.succeed", f"{prev}.running", f"{prev}.succeeded", 1))
            steps.append((run_id, prev, "succeeded", 1, "{}", None))
        if k < len(STEPS):
            source = "running" if k == 0 else f"{STEPS[k - 1]}.succeeded"
            history.append((f"{STEPS[k]}.start", source, f"{STEPS[k]}.running", 1))
            steps.append((run_id, STEPS[k], "running", 1, None, None))
            state, status = f"{STEPS[k]}.running", "running"
        else:
            history.append(("complete", f"{STEPS[-1]}.succeeded", "completed", 0))
            state = status = "completed"
        rows = []
        for trigger, source, dest, attempt in history:
            seq += 1
            rows.append((run_id, seq, trigger, source, dest, now, attempt, None))
        update = (status, json.dumps({"saga": state}), now, None, None, run_id, k, owner)
        out.append({"update": update, "steps": steps, "history": rows})
    out[0]["create"] = (
        run_id,
        "OneAtATime",
        "one_at_a_time:OneAtATime",
        "f" * 16,
        json.dumps({"i": 0}),
        "pending",
        json.dumps({"saga": "pending"}),
        0,
        owner,
        now + 30,
        now,
        now,
        None,
        None,
    )
    return out


def sqlite_round(con: sqlite3.Connection, prefix: str, runs: int) -> float:
    """Seconds for ``runs`` runs' commits made by plain sqlite3, one run after another."""
    start = time.perf_counter()
    for i in range(runs):
        for commit in commits(f"{prefix}{i}", time.time()):
            con.execute("BEGIN IMMEDIATE")
            if "create" in commit:
                con.execute(
                    "INSERT INTO statesaga_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    commit["create"],
                )
            con.execute(
                "UPDATE statesaga_runs SET status=?, config=?, updated_at=?, failed_step=?, "
                "error=?, version=version+1 WHERE run_id=? AND version=? AND lease_owner=?",
                commit["update"],
            )
            con.executemany(
                "INSERT OR REPLACE INTO statesaga_steps VALUES (?,?,?,?,?,?)", commit["steps"]
            )
            con.executemany(
                "INSERT INTO statesaga_history VALUES (?,?,?,?,?,?,?,?)", commit["history"]
            )
            con.execute("COMMIT")
    return time.perf_counter() - start


async def engine_round(url: str, prefix: str, runs: int) -> float:
    """Seconds for ``runs`` durable runs by URL, one after another."""
    start = time.perf_counter()
    for i in range(runs):
        result = await OneAtATime(i=i).execute(store=url, saga_id=f"{prefix}{i}")
        if result.status is not SagaStatus.COMPLETED:
            raise SystemExit("one-at-a-time benchmark: a run did not complete")
    return time.perf_counter() - start


async def bench_one_at_a_time(runs: int, rounds: int, goal: float) -> OneAtATimeResult:
    """``rounds`` alternating rounds (after a warm-up round) of ``runs`` runs each."""
    engine: list[float] = []
    plain: list[float] = []
    with tempfile.TemporaryDirectory(prefix="statesaga-bench-") as tmp:
        base = Path(tmp)
        async with SQLiteStore(base / "schema.db"):
            pass
        shutil.copy(base / "schema.db", base / "plain.db")
        url = f"sqlite:///{base / 'engine.db'}"
        con = sqlite3.connect(base / "plain.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        try:
            await engine_round(url, "warm", 1)  # opens the store, as an earlier request did
            for r in range(rounds + 1):
                sides = ["engine", "sqlite"] if r % 2 else ["sqlite", "engine"]
                measured = {}
                for side in sides:
                    if side == "engine":
                        measured[side] = await engine_round(url, f"r{r}-", runs)
                    else:
                        measured[side] = sqlite_round(con, f"r{r}-", runs)
                if r:  # the first round warms up
                    engine.append(measured["engine"] / runs)
                    plain.append(measured["sqlite"] / runs)
        finally:
            con.close()
            await shutdown()
    ratios = [e / p for e, p in zip(engine, plain, strict=True)]
    ratio = statistics.median(ratios)
    return OneAtATimeResult(
        runs=runs,
        rounds=rounds,
        engine_ms=statistics.median(engine) * 1e3,
        sqlite_ms=statistics.median(plain) * 1e3,
        ratio=ratio,
        goal=goal,
        passed=ratio <= goal,
        ratio_rounds=ratios,
    )


if __name__ == "__main__":
    print(asyncio.run(bench_one_at_a_time(20, 15, 1.5)))
