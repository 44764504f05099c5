"""Durable runs on SQLite against a floor: raw sqlite3 writing the same rows in batches.

Engine: N concurrent 4-step chains of no-op steps with default settings (WAL,
synchronous=FULL), every transition committed ahead of each step, two ways: by URL,
``execute(store="sqlite:///path.db")`` as the docs show (after one earlier run has opened the
store, as in a service that has served a request), and with one ``SQLiteStore`` object passed
to every run. A cold burst (N runs by URL at once, the first to open the store) is reported
beside them.

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

from statesaga import Saga, SagaStatus, Step, shutdown
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
    """Durable throughput: the engine both ways and the floor, sagas per second (medians)."""

    sagas: int
    rounds: int
    url_per_s: float
    object_per_s: float
    floor_per_s: float
    url_ratio: float
    object_ratio: float
    cold_url_ms: float
    url_latency_ms: float
    object_latency_ms: float
    goal: float
    passed: bool
    url_rounds: list[float] = field(default_factory=list)
    object_rounds: list[float] = field(default_factory=list)
    floor_rounds: list[float] = field(default_factory=list)


def _completed(results: list[Any]) -> None:
    if {r.status for r in results} != {SagaStatus.COMPLETED}:
        raise SystemExit("durable benchmark: a run did not complete")


async def object_round(folder: Path, n: int) -> float:
    store = SQLiteStore(folder / "object.db")
    async with store:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(DurableBench(i=i).execute(store=store, saga_id=f"r{i}") for i in range(n))
        )
        elapsed = time.perf_counter() - start
    _completed(results)
    return elapsed


async def url_round(folder: Path, n: int) -> float:
    url = f"sqlite:///{folder / 'url.db'}"
    _completed([await DurableBench(i=-1).execute(store=url, saga_id="first")])
    start = time.perf_counter()
    results = await asyncio.gather(
        *(DurableBench(i=i).execute(store=url, saga_id=f"r{i}") for i in range(n))
    )
    elapsed = time.perf_counter() - start
    await shutdown()  # closes the store the URL opened
    _completed(results)
    return elapsed


async def cold_url_round(folder: Path, n: int) -> float:
    url = f"sqlite:///{folder / 'cold.db'}"
    start = time.perf_counter()
    results = await asyncio.gather(
        *(DurableBench(i=i).execute(store=url, saga_id=f"r{i}") for i in range(n))
    )
    elapsed = time.perf_counter() - start
    await shutdown()
    _completed(results)
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


async def latency(folder: Path, runs: int = 20) -> tuple[float, float]:
    """Milliseconds for one durable run with nothing else going on (median), by URL and with
    a store object, alternating."""
    url = f"sqlite:///{folder / 'latency-url.db'}"
    by_url, by_object = [], []
    async with SQLiteStore(folder / "latency-object.db") as store:
        for i in range(runs):
            for times, target in ((by_url, url), (by_object, store)):
                start = time.perf_counter()
                await DurableBench(i=i).execute(store=target, saga_id=f"l{i}")
                times.append(time.perf_counter() - start)
    await shutdown()
    return statistics.median(by_url) * 1e3, statistics.median(by_object) * 1e3


async def bench_durable(n: int, rounds: int, goal: float) -> DurableResult:
    times: dict[str, list[float]] = {"url": [], "object": [], "floor": [], "cold": []}
    with tempfile.TemporaryDirectory(prefix="statesaga-bench-") as tmp:
        base = Path(tmp)
        template = base / "schema.db"
        await schema_db(template)
        for r in range(rounds + 1):
            folder = base / f"round{r}"
            folder.mkdir()
            shutil.copy(template, folder / "floor.db")
            sides = ["url", "object", "floor", "cold"]
            order = sides[r % 4 :] + sides[: r % 4]  # each side takes each place in turn
            measured: dict[str, float] = {}
            for side in order:
                if side == "url":
                    measured[side] = await url_round(folder, n)
                elif side == "object":
                    measured[side] = await object_round(folder, n)
                elif side == "cold":
                    measured[side] = await cold_url_round(folder, n)
                else:
                    measured[side] = await asyncio.to_thread(floor_round, folder / "floor.db", n)
            if r:  # the first round warms up
                for side, elapsed in measured.items():
                    times[side].append(elapsed)
            shutil.rmtree(folder)
        url_ms, object_ms = await latency(base)

    def ratio(side: str) -> float:
        # The median of each round's own ratio: a round's sides ran back to back.
        return statistics.median(e / f for e, f in zip(times[side], times["floor"], strict=True))

    url_ratio, object_ratio = ratio("url"), ratio("object")
    return DurableResult(
        sagas=n,
        rounds=rounds,
        url_per_s=n / statistics.median(times["url"]),
        object_per_s=n / statistics.median(times["object"]),
        floor_per_s=n / statistics.median(times["floor"]),
        url_ratio=url_ratio,
        object_ratio=object_ratio,
        cold_url_ms=statistics.median(times["cold"]) * 1e3,
        url_latency_ms=url_ms,
        object_latency_ms=object_ms,
        goal=goal,
        passed=url_ratio <= goal and object_ratio <= goal,
        url_rounds=[n / t for t in times["url"]],
        object_rounds=[n / t for t in times["object"]],
        floor_rounds=[n / t for t in times["floor"]],
    )
