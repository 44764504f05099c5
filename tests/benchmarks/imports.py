"""Import time: ``import statesaga`` against ``import asyncio``, each in a fresh interpreter.

Every round starts two new interpreters, one importing ``asyncio`` and one ``statesaga`` (in
alternating order); each times its own import statement, so interpreter start-up is not
counted, both as CPU time (``time.process_time``) and as wall-clock time
(``time.perf_counter``). ``statesaga`` imports ``asyncio`` itself: the ratio is the whole cost
of ``import statesaga`` against that of its one unavoidable dependency. Reported: medians in
milliseconds, and the median of the rounds' own ratios. The goal applies to CPU time: other
load on a shared machine then does not count as the import's cost (the two clocks' medians
agree on a quiet machine).

Bytecode is cached as an installed package has it (``pip`` compiles on install): the
interpreters run isolated (``-I``, so ``PYTHONDONTWRITEBYTECODE`` is ignored) with their
bytecode cache in a temporary folder (``-X pycache_prefix``), filled by a warm-up round that is
not measured. The source tree is left untouched.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

MODULES = ("asyncio", "statesaga")
CLOCKS = ("cpu", "wall")


@dataclass
class ImportTimes:
    """One clock's figures: milliseconds (medians) and the median of the rounds' ratios."""

    clock: str
    asyncio_ms: float
    statesaga_ms: float
    ratio: float
    asyncio_rounds: list[float] = field(default_factory=list)
    statesaga_rounds: list[float] = field(default_factory=list)
    ratio_rounds: list[float] = field(default_factory=list)


@dataclass
class ImportResult:
    """Both clocks, and the goal, checked on CPU time."""

    rounds: int
    cpu: ImportTimes
    wall: ImportTimes
    goal: float
    passed: bool


def import_ms(module: str, cache: str) -> dict[str, float]:
    """Milliseconds ``import <module>`` takes in a new interpreter, start-up excluded, by clock."""
    code = (
        "import time\n"
        "wall, cpu = time.perf_counter(), time.process_time()\n"
        f"import {module}\n"
        "print(time.process_time() - cpu, time.perf_counter() - wall)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-X", f"pycache_prefix={cache}", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"import benchmark: import {module} failed:\n{done.stderr}")
    return {clock: float(s) * 1e3 for clock, s in zip(CLOCKS, done.stdout.split(), strict=True)}


def _times(clock: str, asyncio_rounds: list[float], statesaga_rounds: list[float]) -> ImportTimes:
    ratios = [s / a for a, s in zip(asyncio_rounds, statesaga_rounds, strict=True)]
    return ImportTimes(
        clock=clock,
        asyncio_ms=statistics.median(asyncio_rounds),
        statesaga_ms=statistics.median(statesaga_rounds),
        ratio=statistics.median(ratios),
        asyncio_rounds=asyncio_rounds,
        statesaga_rounds=statesaga_rounds,
        ratio_rounds=ratios,
    )


def bench_imports(rounds: int, goal: float) -> ImportResult:
    """``rounds`` alternating rounds after one warm-up round that fills the bytecode cache."""
    measured: dict[str, list[dict[str, float]]] = {module: [] for module in MODULES}
    with tempfile.TemporaryDirectory(prefix="statesaga-imports-") as cache:
        for module in MODULES:
            import_ms(module, cache)
        for index in range(rounds):
            for module in MODULES if index % 2 == 0 else MODULES[::-1]:
                measured[module].append(import_ms(module, cache))
    cpu, wall = (
        _times(clock, *([m[clock] for m in measured[module]] for module in MODULES))
        for clock in CLOCKS
    )
    return ImportResult(rounds=rounds, cpu=cpu, wall=wall, goal=goal, passed=cpu.ratio <= goal)


if __name__ == "__main__":
    found = bench_imports(15, 2.0)
    for times in (found.cpu, found.wall):
        print(
            f"{times.clock}: import asyncio {times.asyncio_ms:.1f} ms, import statesaga "
            f"{times.statesaga_ms:.1f} ms, ratio {times.ratio:.2f}x"
        )
    print(f"goal <= {found.goal:.1f}x on CPU time: {'met' if found.passed else 'not met'}")
