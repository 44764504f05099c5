"""Workers in a cluster: no run driven by two at once, takeover on time while busy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from statesaga.store import SagaStore, store_from_url
from statesaga.worker import Worker
from tests.crash import cluster

# Real processes started, killed and restarted: run on the default Python only in CI.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL of each durable backend, on a fresh file or schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    from test_store_postgres import URL, drop_schema, new_schema, require_server

    require_server()
    name = new_schema()
    yield f"{URL}?schema={name}"
    drop_schema(name)


@pytest.fixture
async def store(url: str) -> AsyncIterator[SagaStore]:
    opened = store_from_url(url)
    await opened.open()
    yield opened
    await opened.close()


def start_worker(url: str, folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "statesaga.cli", "worker", "--store", url, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CLUSTER_DIR": str(folder)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def names(folder: Path, pattern: str) -> list[str]:
    """The names of the files in ``folder`` that match ``pattern``."""
    return [path.name for path in folder.glob(pattern)]


async def test_two_worker_processes_never_drive_one_run_at_once(
    store: SagaStore, url: str, tmp_path: Path
) -> None:
    """Two `statesaga worker` processes on one store split the runs: no run is driven by both at
    the same time, and each step runs once."""
    runs = [f"r{i:02d}" for i in range(24)]
    for run_id in runs:
        await cluster.strand(store, run_id, seconds=0.03, owner="dead", expires=1.0)
    workers = [start_worker(url, tmp_path, "--poll", "0.05", "--concurrency", "4") for _ in "ab"]
    try:
        deadline = time.monotonic() + 40
        while len(names(tmp_path, "done-*")) < 2 * len(runs):
            assert time.monotonic() < deadline, "the workers did not finish the runs"
            await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.terminate()
        outputs = [worker.communicate(timeout=30) for worker in workers]
    assert not names(tmp_path, "overlap-*")
    steps = sorted(n.rsplit("-", 2)[0] for n in names(tmp_path, "step-*"))
    assert steps == sorted(f"step-{r}-{s}" for r in runs for s in "ab")
    # Both took part (the runs are spread, not all taken by whoever looked first).
    pids = {n.rsplit("-", 1)[1] for n in names(tmp_path, "done-*")}
    assert len(pids) == 2, outputs
    assert all(w.returncode == 0 for w in workers), outputs


async def test_a_dead_workers_runs_are_taken_over_on_time_while_the_worker_is_busy(
    store: SagaStore,
) -> None:
    """A busy worker still looks every poll: runs whose lease runs out are taken within the lease
    and one poll, not after the long runs in hand end."""
    poll = 0.2
    for i in range(3):
        await cluster.strand(store, f"long{i}", seconds=3.0, owner=None, expires=None)
    expires = time.time() + 1.0
    for i in range(2):
        await cluster.strand(store, f"dead{i}", seconds=0.01, owner="dead", expires=expires)
    cluster.started.clear()
    worker = Worker(store, poll=poll, concurrency=8)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, drain_timeout=0.1))
    try:
        deadline = time.monotonic() + 10
        while not {("dead0", "b"), ("dead1", "b")} <= cluster.started.keys():
            assert time.monotonic() < deadline, "the dead worker's runs were not taken over"
            await asyncio.sleep(0.02)
        assert {"long0", "long1", "long2"} <= worker.in_hand  # still busy with the long ones
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    for i in range(2):
        late = cluster.started[(f"dead{i}", "a")] - expires
        assert late < poll + 0.5, f"taken over {late:.2f} s after its lease ran out"


async def test_a_worker_takes_no_more_runs_than_it_can_start(store: SagaStore) -> None:
    """With every slot busy the worker leaves the other runs free for other workers."""
    for i in range(5):
        await cluster.strand(store, f"r{i}", seconds=1.0, owner=None, expires=None)
    worker = Worker(store, poll=0.05, concurrency=2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, drain_timeout=0.1))
    try:
        await asyncio.sleep(0.5)
        assert len(worker.in_hand) == 2
        assert len(await store.leased(time.time())) == 2
        assert len(await store.unfinished(time.time())) == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
