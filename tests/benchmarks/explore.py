"""12. The failure space of a saga, generated and run in memory (``statesaga.testing.explore``).

For a 20-step chain and a 10-step DAG: how many scenarios the default set holds, how long
``explore`` takes over all of them, and per scenario against the baseline measured in the
same run: one plain in-memory run of the same saga (``saga.execute()``), which is the least a
scenario can cost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from statesaga import Saga, Step
from statesaga.testing import explore

#: The default set of a 20-step chain, in memory.
CHAIN_GOAL_S = 10.0


async def _ship(ctx: Any) -> dict[str, Any]:
    return {}


async def _undo(ctx: Any) -> None:
    return None


def _chain(size: int) -> type[Saga]:
    steps = tuple(Step(f"s{i:02}", _ship, compensate=_undo) for i in range(size))
    return type(f"Chain{size}", (Saga,), {"steps": steps, "__module__": __name__})


def _dag(size: int) -> type[Saga]:
    """Two branches that join, then fan out again: siblings at every level."""
    steps = [Step("s00", _ship, compensate=_undo)]
    for i in range(1, size):
        parent = f"s{max(0, i - 2):02}"
        steps.append(Step(f"s{i:02}", _ship, compensate=_undo, depends_on=(parent,)))
    return type(f"Dag{size}", (Saga,), {"steps": tuple(steps), "__module__": __name__})


@dataclass
class ExploreTiming:
    saga: str
    scenarios: int
    total_s: float
    per_scenario_ms: float
    plain_run_ms: float
    goal_s: float | None

    @property
    def ratio(self) -> float:
        return self.per_scenario_ms / self.plain_run_ms

    @property
    def passed(self) -> bool | None:
        return None if self.goal_s is None else self.total_s <= self.goal_s


async def _plain(saga: type[Saga], runs: int) -> float:
    began = time.perf_counter()
    for _ in range(runs):
        await saga().execute()
    return (time.perf_counter() - began) / runs * 1000


async def _one(saga: type[Saga], goal_s: float | None) -> ExploreTiming:
    plain = await _plain(saga, 200)
    began = time.perf_counter()
    report = await explore(saga)
    took = time.perf_counter() - began
    assert report.ok, report.summary()
    count = len(report.scenarios)
    return ExploreTiming(saga.__name__, count, took, took / count * 1000, plain, goal_s)


def bench_explore() -> list[ExploreTiming]:
    """Section 12's measurements."""
    return [
        asyncio.run(_one(_chain(20), CHAIN_GOAL_S)),
        asyncio.run(_one(_dag(10), None)),
    ]
