"""Import time: ``import statesaga`` against ``import asyncio``, each in a fresh interpreter.

Every round starts two new interpreters, one importing ``asyncio`` and one ``statesaga`` (in
alternating order), and each times its own import with ``time.perf_counter`` around the
import statement, so interpreter start-up is not counted. ``statesaga`` imports ``asyncio``
itself: the ratio is the whole cost of ``import statesaga`` against that of its one
unavoidable dependency. Reported: medians in milliseconds, and the median of the rounds' own
ratios.

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


@dataclass
class ImportResult:
    """``import asyncio`` and ``import statesaga``, milliseconds (medians), and their ratio."""

    rounds: int
    asyncio_ms: float
    statesaga_ms: float
    ratio: float
    goal: float
    passed: bool
    asyncio_rounds: list[float] = field(default_factory=list)
    statesaga_rounds: list[float] = field(default_factory=list)
    ratio_rounds: list[float] = field(default_factory=list)


def import_ms(module: str, cache: str) -> float:
    """Milliseconds ``import <module>`` takes in a new interpreter, start-up excluded."""
    code = (
        "import time\n"
        "start = time.perf_counter()\n"
        f"import {module}\n"
        "print(time.perf_counter() - start)\n"
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
    return float(done.stdout) * 1e3


def bench_imports(rounds: int, goal: float) -> ImportResult:
    """``rounds`` alternating rounds after one warm-up round that fills the bytecode cache."""
    with tempfile.TemporaryDirectory(prefix="statesaga-imports-") as cache:
        for module in MODULES:
            import_ms(module, cache)
        times: dict[str, list[float]] = {module: [] for module in MODULES}
        for index in range(rounds):
            order = MODULES if index % 2 == 0 else MODULES[::-1]
            for module in order:
                times[module].append(import_ms(module, cache))
    ratios = [s / a for a, s in zip(times["asyncio"], times["statesaga"], strict=True)]
    ratio = statistics.median(ratios)
    return ImportResult(
        rounds=rounds,
        asyncio_ms=statistics.median(times["asyncio"]),
        statesaga_ms=statistics.median(times["statesaga"]),
        ratio=ratio,
        goal=goal,
        passed=ratio <= goal,
        asyncio_rounds=times["asyncio"],
        statesaga_rounds=times["statesaga"],
        ratio_rounds=ratios,
    )


if __name__ == "__main__":
    found = bench_imports(15, 2.0)
    print(
        f"import asyncio {found.asyncio_ms:.1f} ms, import statesaga {found.statesaga_ms:.1f} ms,"
        f" ratio {found.ratio:.2f}x (goal <= {found.goal:.1f}x)"
    )
