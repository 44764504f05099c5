"""Durable runs on SQLite against a floor: raw sqlite3 writing the same rows in batches.

Engine: N concurrent 4-step chains of no-op steps, ``execute(store=SQLiteStore(...))`` with
default settings (WAL, synchronous=FULL), every transition committed ahead of each step.

Floor: one thread with plain ``sqlite3`` on the same schema writes the same rows the journal
writes for those N runs: one transaction per write-ahead point (five for a 4-step chain, the
first also inserting the run rows), each carrying that point's rows for all N runs, like a
perfect group commit.
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

from statesaga import Saga, SagaStatus, Step
from statesaga.store.sqlite import SQLiteStore

STEPS = ("a", "b", "c", "d")


async def noop(ctx: Any) -> None:
    """A no-op step."""
    return None


class DurableBench(Saga):
    """4-step chain of no-op steps."""

    steps = tuple(Step(name, noop) for name in STEPS)


@dataclass
class DurableResult:
    """Durable throughput: engine and floor, sagas per second (medians)."""

    sagas: int
    rounds: int
    engine_per_s: float
    floor_per_s: float
    ratio: float
    latency_ms: float
    goal: float
    passed: bool
    engine_rounds: list[float] = field(default_factory=list)
    floor_rounds: list[float] = field(default_factory=list)


async def engine_round(folder: Path, n: int) -> float:
    store = SQLiteStore(folder / "engine.db")
    async with store:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(DurableBench(i=i).execute(store=store, saga_id=f"r{i}") for i in range(n))
        )
        elapsed = time.perf_counter() - start
    if {r.status for r in results} != {SagaStatus.COMPLETED}:
        raise SystemExit("durable benchmark: a run did not complete")
    return elapsed


async def schema_db(path: Path) -> None:
    async with SQLiteStore(path):
        pass


def floor_round(path: Path, n: int) -> float:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    owner, now = "bench:1:abc", time.time()
    config = json.dumps({"saga": "pending"})
    start = time.perf_counter()
    run_rows = [
        (
            f"r{i}",
            "DurableBench",
            "bench:DurableBench",
            "f" * 16,
            json.dumps({"i": i}),
            "pending",
            config,
            0,
            owner,
            now + 30,
            now,
            now,
            None,
            None,
        )
        for i in range(n)
    ]
    # Write-ahead point k: step k-1 succeeded (with its result) and step k starts.
    seq = 0
    for k in range(len(STEPS) + 1):
        runs, steps, history = [], [], []
        state = "completed" if k == len(STEPS) else f"{STEPS[k]}.running"
        status = "completed" if k == len(STEPS) else "running"
        for i in range(n):
            runs.append((status, json.dumps({"saga": state}), now, None, None, f"r{i}", k, owner))
            if k:
                prev = STEPS[k - 1]
                steps.append((f"r{i}", prev, "succeeded", 1, "{}", None))
                history.append(
                    (
                        f"r{i}",
                        seq + 1,
                        f"{prev}.succeed",
                        f"{prev}.running",
                        f"{prev}.succeeded",
                        now,
                        1,
                        None,
                    )
                )
            if k < len(STEPS):
                steps.append((f"r{i}", STEPS[k], "running", 1, None, None))
            history.append((f"r{i}", seq + 2, "x", "y", state, now, 1, None))
        seq += 2
        con.execute("BEGIN IMMEDIATE")
        if k == 0:  # the runs are created by their first commit, as the engine does
            con.executemany(
                "INSERT INTO statesaga_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run_rows
            )
        con.executemany(
            "UPDATE statesaga_runs SET status=?, config=?, updated_at=?, failed_step=?, "
            "error=?, version=version+1 WHERE run_id=? AND version=? AND lease_owner=?",
            runs,
        )
        con.executemany("INSERT OR REPLACE INTO statesaga_steps VALUES (?,?,?,?,?,?)", steps)
        con.executemany("INSERT INTO statesaga_history VALUES (?,?,?,?,?,?,?,?)", history)
        con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


async def latency(folder: Path, runs: int = 20) -> float:
    """Milliseconds for one durable run with nothing else going on (median)."""
    times = []
    async with SQLiteStore(folder / "latency.db") as store:
        for i in range(runs):
            start = time.perf_counter()
            await DurableBench(i=i).execute(store=store, saga_id=f"l{i}")
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


async def bench_durable(n: int, rounds: int, goal: float) -> DurableResult:
    engine_times: list[float] = []
    floor_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="statesaga-bench-") as tmp:
        base = Path(tmp)
        template = base / "schema.db"
        await schema_db(template)
        for r in range(rounds + 1):
            folder = base / f"round{r}"
            folder.mkdir()
            shutil.copy(template, folder / "floor.db")
            order = (0, 1) if r % 2 else (1, 0)
            measured: dict[int, float] = {}
            for side in order:
                if side == 0:
                    measured[0] = await engine_round(folder, n)
                else:
                    measured[1] = await asyncio.to_thread(floor_round, folder / "floor.db", n)
            if r:  # the first round warms up
                engine_times.append(measured[0])
                floor_times.append(measured[1])
            shutil.rmtree(folder)
        lat = await latency(base)
    engine_rate = n / statistics.median(engine_times)
    floor_rate = n / statistics.median(floor_times)
    # The median of each round's own ratio: a round's two sides ran back to back.
    ratio = statistics.median(e / f for e, f in zip(engine_times, floor_times, strict=True))
    return DurableResult(
        sagas=n,
        rounds=rounds,
        engine_per_s=engine_rate,
        floor_per_s=floor_rate,
        ratio=ratio,
        latency_ms=lat,
        goal=goal,
        passed=ratio <= goal,
        engine_rounds=[n / t for t in engine_times],
        floor_rounds=[n / t for t in floor_times],
    )
