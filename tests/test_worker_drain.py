"""`statesaga worker` on SIGTERM: drains (running steps finish, no new step, leases released)
within --drain-timeout, and stops at once on a second signal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_worker_cluster import ROOT, names, start_worker, store, url

from statesaga.store import SagaStore
from statesaga.worker import Worker
from tests.crash import cluster

# Real processes started, killed and restarted: run on the default Python only in CI.
pytestmark = pytest.mark.slow

__all__ = ["store", "url"]  # the fixtures, shared


async def started(folder: Path, pattern: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(names(folder, pattern)) < count:
        assert time.monotonic() < deadline, f"no {pattern} files"
        await asyncio.sleep(0.02)


async def stopped(worker: subprocess.Popen[str]) -> tuple[float, str]:
    """Seconds until ``worker`` exits, and what it wrote to stderr."""
    began = time.monotonic()
    _, err = await asyncio.to_thread(worker.communicate, timeout=40)
    return time.monotonic() - began, err


async def test_sigterm_lets_running_steps_finish_then_releases_the_runs(
    store: SagaStore, url: str, tmp_path: Path
) -> None:
    """SIGTERM: the running steps finish and are committed, no new step starts, the leases are
    released, the worker exits 0 within the drain timeout; another worker goes on at once."""
    for run_id in ("r0", "r1"):
        await cluster.strand(store, run_id, seconds=1.0, owner=None, expires=None)
    worker = start_worker(url, tmp_path, "--poll", "0.05", "--drain-timeout", "10")
    try:
        await started(tmp_path, "step-r*-a-*", 2)
        worker.send_signal(signal.SIGTERM)
        took, err = await stopped(worker)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert took < 10, err
    assert len(names(tmp_path, "done-r*-a-*")) == 2, err  # the running steps finished
    assert not names(tmp_path, "step-r*-b-*"), err  # and no new one started
    for stage in ("draining", "paused between steps", "drained", "worker stopped"):
        assert stage in err
    for run_id in ("r0", "r1"):
        snapshot = await store.load(run_id)
        assert snapshot.run.lease_owner is None  # released, not left to run out
        assert snapshot.steps["a"].phase == "succeeded"
    cluster.started.clear()
    other = Worker(store, poll=0.05)
    stop = asyncio.Event()
    began = time.time()
    task = asyncio.create_task(other.run(stop, drain_timeout=0))
    try:
        while not {("r0", "b"), ("r1", "b")} <= cluster.started.keys():
            assert time.time() - began < 1.0, "the released runs were not taken at once"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_step_longer_than_the_drain_timeout_is_left_at_the_timeout(
    store: SagaStore, url: str, tmp_path: Path
) -> None:
    """A step still running at --drain-timeout is abandoned: the worker exits then, 0, and the
    run stays resumable."""
    await cluster.strand(store, "long", seconds=30.0, owner=None, expires=None)
    worker = start_worker(url, tmp_path, "--poll", "0.05", "--drain-timeout", "1")
    try:
        await started(tmp_path, "step-long-a-*", 1)
        worker.send_signal(signal.SIGTERM)
        took, err = await stopped(worker)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert 1.0 <= took < 5.0, err
    assert "drain timed out after 1 s" in err
    assert await store.unfinished(time.time()) == ["long"]


async def test_a_second_sigterm_stops_at_once(store: SagaStore, url: str, tmp_path: Path) -> None:
    """A second SIGTERM while draining stops the worker at once; the run stays resumable."""
    await cluster.strand(store, "long", seconds=30.0, owner=None, expires=None)
    worker = start_worker(url, tmp_path, "--poll", "0.05", "--drain-timeout", "30")
    try:
        await started(tmp_path, "step-long-a-*", 1)
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        worker.send_signal(signal.SIGTERM)
        took, err = await stopped(worker)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert took < 3.0, err
    assert "stopping now: 1 run left for any worker to resume" in err
    assert await store.unfinished(time.time()) == ["long"]


def catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGTERM now (Linux's /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def start_relay(url: str) -> subprocess.Popen[str]:
    """``statesaga relay`` on ``url``, to an in-process broker (it gets no further here)."""
    command = ["relay", "--store", url, "--broker", "memory://"]
    return subprocess.Popen(
        [sys.executable, "-m", "statesaga.cli", *command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("command", ["worker", "relay"])
async def test_sigterm_while_the_store_opens_stops_the_command_cleanly(
    command: str, tmp_path: Path
) -> None:
    """A worker or relay whose store does not answer yet handles SIGTERM already: it stops,
    exit 0, rather than dying of the signal or waiting for the store."""
    if sys.platform != "linux":
        pytest.skip("reads signal handlers from Linux's /proc")
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, says nothing
    port = silent.sockets[0].getsockname()[1]
    url = f"postgresql://127.0.0.1:{port}/test"
    worker = start_worker(url, tmp_path) if command == "worker" else start_relay(url)
    try:
        deadline = time.monotonic() + 30
        while not catches_sigterm(worker.pid):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker never handled SIGTERM"
            await asyncio.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        took, err = await stopped(worker)
    finally:
        worker.kill()
        silent.close()
    assert worker.returncode == 0, err
    assert took < 5.0, err
    assert f"{command} stopped before its store opened" in err
