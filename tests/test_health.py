"""/healthz, /readyz (and /metrics on the same port) of `statesaga worker` and `relay`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _services import free_port
from test_worker_cluster import ROOT, names, start_worker

from statesaga.observe.health import Health, start_health_server, store_check
from statesaga.store import MemoryStore, SQLiteStore
from tests.crash import cluster

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow


def get(port: int, path: str) -> tuple[int, str]:
    """The status and body of GET ``path`` on the local ``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def aget(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, port, path)  # /readyz's checks run on this loop


async def test_healthz_follows_the_heartbeat() -> None:
    """200 while the heartbeat is fresh, 503 with its age once it is stale."""
    beat = [time.monotonic()]
    server = start_health_server(0, Health(lambda: beat[0], stale_after=1.0), addr="127.0.0.1")
    try:
        assert await aget(server.port, "/healthz") == (200, "ok\n")
        beat[0] -= 5
        status, body = await aget(server.port, "/healthz")
        assert status == 503
        assert body.startswith("no heartbeat for 5.")
        assert await aget(server.port, "/nowhere") == (404, "not found: try /healthz or /readyz\n")
    finally:
        server.close()


async def test_readyz_runs_the_checks_and_says_which_failed(tmp_path: Path) -> None:
    """200 when every check passes; 503 naming the failing one; 503 while draining."""

    async def broken() -> str | None:
        raise ConnectionError("refused")

    store = MemoryStore()
    health = Health(time.monotonic, stale_after=1.0, checks={"store": store_check(store)})
    server = start_health_server(0, health, addr="127.0.0.1")
    try:
        assert await aget(server.port, "/readyz") == (200, "ok\n")
        health.checks["broker"] = broken
        assert await aget(server.port, "/readyz") == (503, "broker: ConnectionError: refused\n")
        del health.checks["broker"]
        closed = SQLiteStore(tmp_path / "never-opened.db")
        health.checks["store"] = store_check(closed)
        status, body = await aget(server.port, "/readyz")
        assert status == 503
        assert body.startswith("store: ")
        health.checks["store"] = store_check(store)
        health.draining = True
        assert await aget(server.port, "/readyz") == (
            503,
            "draining: finishing the work in hand before exiting\n",
        )
    finally:
        server.close()


async def test_a_check_that_hangs_is_not_ready() -> None:
    """A check that does not answer within the timeout makes /readyz 503, not hang."""

    async def hangs() -> str | None:
        await asyncio.sleep(60)
        return None

    health = Health(time.monotonic, stale_after=1.0, checks={"store": hangs}, timeout=0.2)
    server = start_health_server(0, health, addr="127.0.0.1")
    try:
        assert await aget(server.port, "/readyz") == (
            503,
            "the checks did not answer within 0.2 s\n",
        )
    finally:
        server.close()


async def test_a_worker_serves_health_and_metrics_on_one_port(tmp_path: Path) -> None:
    """`worker --health-port P --metrics-port P`: /healthz, /readyz and /metrics answer 200;
    on SIGTERM /readyz turns 503 while the worker drains."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await cluster.strand(store, "long", seconds=2.0, owner=None, expires=None)
    port = free_port()
    worker = start_worker(
        url, tmp_path, "--poll", "0.05", "--health-port", str(port), "--metrics-port", str(port)
    )
    try:
        deadline = time.monotonic() + 30
        while not names(tmp_path, "step-long-a-*"):
            assert time.monotonic() < deadline, "the worker never started the run"
            await asyncio.sleep(0.05)
        assert await aget(port, "/healthz") == (200, "ok\n")
        assert await aget(port, "/readyz") == (200, "ok\n")
        status, metrics = await aget(port, "/metrics")
        assert status == 200
        assert "statesaga_" in metrics
        assert await aget(port, "/elsewhere") == (
            404,
            "not found: try /healthz, /readyz or /metrics\n",
        )
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        status, body = await aget(port, "/readyz")
        assert (status, body.split(":")[0]) == (503, "draining")
        assert (await aget(port, "/healthz"))[0] == 200  # draining is alive
        _, err = await asyncio.to_thread(worker.communicate, timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, err


async def test_a_worker_whose_broker_is_down_is_not_ready(tmp_path: Path) -> None:
    """/readyz names the broker when it does not answer; /healthz stays 200."""
    port = free_port()
    worker = start_worker(
        f"sqlite:///{tmp_path / 'runs.db'}",
        tmp_path,
        "--health-port",
        str(port),
        "--broker",
        f"amqp://guest:guest@127.0.0.1:{free_port()}/",
    )
    try:
        status, body = await until_served(port, "/readyz")
        assert status == 503
        assert body.startswith("broker: ")
        assert await aget(port, "/healthz") == (200, "ok\n")
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


async def until_served(port: int, path: str) -> tuple[int, str]:
    deadline = time.monotonic() + 30
    while True:
        try:
            return await aget(port, path)
        except OSError:
            assert time.monotonic() < deadline, "nothing served"
            await asyncio.sleep(0.05)


def start_relay(port: int, url: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "statesaga.cli", "relay", "--poll", "0.05"]
    command += ["--health-port", str(port), "--store", url, "--broker", "memory://"]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def test_a_relay_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`relay --health-port`: /healthz and /readyz answer 200; SIGTERM exits 0."""
    port = free_port()
    relay = start_relay(port, f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        assert await until_served(port, "/healthz") == (200, "ok\n")
        assert await aget(port, "/readyz") == (200, "ok\n")
        relay.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(relay.communicate, timeout=30)
    finally:
        relay.kill()
    assert relay.returncode == 0, err
    assert "stopping: finishing the batch in hand" in err
    assert "relay stopped" in err


@pytest.mark.parametrize("command", ["worker", "relay"])
def test_store_and_broker_urls_come_from_the_environment(command: str, tmp_path: Path) -> None:
    """$STATESAGA_STORE and $STATESAGA_BROKER stand for --store and --broker."""
    db = tmp_path / "env.db"
    done = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", command, "--once"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "STATESAGA_STORE": f"sqlite:///{db}"}
        | {"STATESAGA_BROKER": "memory://", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert str(db) in done.stdout
    assert "memory://" in done.stdout or command == "worker"
    refused = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", command, "--once"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "STATESAGA_STORE": f"sqlite:///{db}"}
        | {"STATESAGA_BROKER": "kafka://h:9092", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "unknown broker URL scheme 'kafka'" in refused.stderr
