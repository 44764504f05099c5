"""Waits: many waiting runs for one worker, timeouts firing on time, signal-to-step latency.

10a. On SQLite, runs parked at a wait are rows. A ``statesaga worker`` process (the command
     users run) is started over 100 and then over 10,000 waiting runs: its memory (RSS, after
     it has looked at the store), the time from its start to the end of a wait that was due
     before it started, and, for runs whose timeout falls due while it runs, how late each
     timeout fired (the step after the wait notes the time).
10b. The time from a signal to the step after the wait, median of N: in the process that
     started the run and awaits its handle; across processes to a worker on PostgreSQL
     (woken by the database's notification, polling every 30 s); and to a worker on SQLite
     (no notifications: within its poll interval, 0.5 s here).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import waits_sagas
from waits_sagas import Paid, ShortSleeps, Sleeps

import statesaga
from statesaga.durable import open_store, shutdown

HERE = Path(__file__).resolve().parent


@dataclass
class ManyWaiting:
    """A worker over many waiting runs (10a)."""

    waiting: int
    rss_mb: float
    first_due_s: float  # worker start -> the end of a wait due before it started
    late_ms: list[float] = field(default_factory=list)  # timeouts that fell due while it ran


@dataclass
class Latency:
    """Signal -> next step, milliseconds (10b)."""

    where: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return sorted(self.samples)[int(0.9 * (len(self.samples) - 1))]


def _worker(url: str, log: Path, poll: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE), "STATESAGA_BENCH_LOG": str(log)}
    return subprocess.Popen(
        [sys.executable, "-m", "statesaga.cli", "worker", "--store", url, "--poll", str(poll)],
        env=env,
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _marks(log: Path) -> dict[str, float]:
    if not log.exists():
        return {}
    return {
        run_id: float(at)
        for run_id, at in (line.split() for line in log.read_text().splitlines() if line)
    }


async def _park(saga: type[statesaga.Saga], url: str, count: int, batch: int = 500) -> list[str]:
    """Start ``count`` runs of ``saga`` and leave them waiting, followed by nobody."""
    store = await open_store(url)
    ids: list[str] = []
    for start in range(0, count, batch):
        runs = await asyncio.gather(
            *(saga().start(store=url) for _ in range(min(batch, count - start)))
        )
        pending = {run.saga_id: run for run in runs}
        while pending:
            waiting = {r.run_id for r in await store.list_runs(status="waiting", limit=count + 10)}
            for run_id in [i for i in pending if i in waiting]:
                task = pending.pop(run_id)._task  # type: ignore[attr-defined]
                task.cancel()
            await asyncio.sleep(0.02)
        ids += [run.saga_id for run in runs]
    await asyncio.sleep(0.05)  # the cancelled followers end
    return ids


async def _many(url: str, base: Path, waiting: int, due_now: int, due_soon: int) -> ManyWaiting:
    log = base / f"log-{waiting}.txt"
    os.environ["STATESAGA_BENCH_LOG"] = str(log)
    store = await open_store(url)
    have = len(await store.list_runs(status="waiting", limit=1_000_000))
    await _park(Sleeps, url, waiting - have)
    first = await _park(ShortSleeps, url, due_now)
    await asyncio.sleep(2.1)  # their timeouts have passed: due as the worker starts
    began = time.time()
    worker = _worker(url, log, poll=1.0)
    try:
        soon = await _park(ShortSleeps, url, due_soon)
        deadline = time.time() + 60
        while time.time() < deadline:
            marks = _marks(log)
            if all(i in marks for i in first + soon):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # idle, after a look at the store
        rss = _rss_mb(worker.pid)
    finally:
        worker.terminate()
        worker.wait(30)
    marks = _marks(log)
    late = []
    for run_id in soon:
        snapshot = await store.load(run_id)
        began_wait = next(t.at for t in snapshot.history if t.trigger == "nap.wait")
        if run_id in marks:
            late.append((marks[run_id] - (began_wait + 2.0)) * 1e3)
    return ManyWaiting(
        waiting=waiting,
        rss_mb=rss,
        first_due_s=min(marks[i] for i in first if i in marks) - began if first else 0.0,
        late_ms=late,
    )


async def bench_many_waiting(counts: Sequence[int], due_soon: int) -> list[ManyWaiting]:
    """10a, on one SQLite store that grows from the first count to the last."""
    with tempfile.TemporaryDirectory(prefix="statesaga-bench-waits-") as tmp:
        base = Path(tmp)
        url = f"sqlite:///{base / 'waits.db'}"
        try:
            return [await _many(url, base, count, 5, due_soon) for count in counts]
        finally:
            await shutdown()


async def _same_process(url: str, samples: int) -> Latency:
    log = Path(os.environ["STATESAGA_BENCH_LOG"])
    store = await open_store(url)
    taken = []
    for _ in range(samples):
        run = await Paid().start(store=url)
        while (await store.load(run.saga_id)).run.status != "waiting":  # noqa: ASYNC110
            await asyncio.sleep(0.005)  # the store is what tells
        await asyncio.sleep(0.05)  # the follower sleeps
        sent = time.time()
        await run.signal("paid")
        await run.result()
        taken.append((_marks(log)[run.saga_id] - sent) * 1e3)
    return Latency("same process, awaiting the handle", taken)


async def _across(url: str, base: Path, where: str, poll: float, samples: int) -> Latency:
    log = base / f"log-{uuid.uuid4().hex[:6]}.txt"
    os.environ["STATESAGA_BENCH_LOG"] = str(log)
    ids = await _park(Paid, url, samples)
    worker = _worker(url, log, poll=poll)
    taken = []
    try:
        await asyncio.sleep(2.0)  # started, looked, asleep
        for run_id in ids:
            sent = time.time()
            await statesaga.signal(url, run_id, "paid", saga=Paid)
            while run_id not in (marks := _marks(log)):  # noqa: ASYNC110
                await asyncio.sleep(0.002)  # another process writes the file
            taken.append((marks[run_id] - sent) * 1e3)
            await asyncio.sleep(min(poll, 1.0) * 0.37)  # signals land at different points of a poll
    finally:
        worker.terminate()
        worker.wait(30)
    return Latency(where, taken)


async def bench_latency(pg_url: str | None, samples: int) -> list[Latency]:
    """10b."""
    assert waits_sagas.Paid is Paid
    with tempfile.TemporaryDirectory(prefix="statesaga-bench-latency-") as tmp:
        base = Path(tmp)
        os.environ["STATESAGA_BENCH_LOG"] = str(base / "log-local.txt")
        sqlite = f"sqlite:///{base / 'latency.db'}"
        try:
            found = [await _same_process(sqlite, samples)]
            if pg_url is not None:
                found.append(
                    await _across(pg_url, base, "worker process, PostgreSQL", 30.0, samples)
                )
            found.append(
                await _across(sqlite, base, "worker process, SQLite (poll 0.5 s)", 0.5, samples)
            )
            return found
        finally:
            await shutdown()
