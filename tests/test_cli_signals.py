"""``statesaga runs signal|cancel`` and waiting runs in ``runs list|show``, as real commands."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from helpers import run_cli

from statesaga.durable import open_store, shutdown

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow

SAGA = """
from statesaga import Saga, Step, Wait

async def reserve(ctx):
    return None

async def release(ctx):
    return None

async def ship(ctx):
    return {"paid": ctx.results["paid"].get("amount")}

class Booking(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=3600),
        Step("ship", ship),
    )
"""


@pytest.fixture
def sagas(tmp_path: Path) -> Iterator[ModuleType]:
    (tmp_path / "cli_waits_saga.py").write_text(SAGA, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("cli_waits_saga")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cli_waits_saga", None)


@pytest.fixture
async def parked(sagas: ModuleType, tmp_path: Path) -> tuple[str, str]:
    """A store URL and a run of Booking waiting in it, followed by nobody."""
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    run = await sagas.Booking().start(store=url)
    store = await open_store(url)
    for _ in range(500):
        if (await store.load(run.saga_id)).run.status == "waiting":
            break
        await asyncio.sleep(0.01)
    task = run._task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await shutdown()
    return url, run.saga_id


def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    done = run_cli(*args, cwd=tmp_path)
    return done.returncode, done.stdout + done.stderr


async def test_list_and_show_tell_what_a_run_waits_for(
    parked: tuple[str, str], tmp_path: Path
) -> None:
    url, run_id = parked
    code, out = _cli(tmp_path, "runs", "list", "--store", url, "--status", "waiting")
    assert code == 0, out
    assert run_id in out
    assert "WAITS FOR" in out
    assert "paid (gives up " in out
    code, out = _cli(tmp_path, "runs", "show", "--store", url, run_id)
    assert code == 0, out
    assert "waits for paid (gives up" in out
    assert "paid.wait" in out


async def test_signal_accepts_once_reports_duplicates_and_refuses(
    parked: tuple[str, str], tmp_path: Path
) -> None:
    url, run_id = parked
    base = ("runs", "signal", "--store", url, run_id, "paid")
    code, out = _cli(tmp_path, *base, "--data", '{"amount": 42}', "--id", "pay-77")
    assert (code, f"{run_id}: signal 'paid' accepted") == (0, out.strip())
    code, out = _cli(tmp_path, *base, "--data", '{"amount": 42}', "--id", "pay-77")
    assert code == 0, out
    assert "duplicate" in out
    code, out = _cli(tmp_path, *base, "--data", '{"amount": 43}', "--id", "pay-77")
    assert code == 1, out
    assert "pay-77" in out
    code, out = _cli(tmp_path, "runs", "signal", "--store", url, run_id, "shipped")
    assert code == 1, out
    assert "has no wait for it" in out
    code, out = _cli(tmp_path, "runs", "signal", "--store", url, "nope", "paid")
    assert code == 1, out
    assert "no run 'nope'" in out
    code, out = _cli(tmp_path, "runs", "show", "--store", url, run_id)
    assert "pay-77" in out
    assert '{"amount": 42}' in out
    # A worker drives it on: the step after the wait read the payload.
    code, out = _cli(tmp_path, "worker", "--store", url, "--once")
    assert code == 0, out
    assert f"{run_id}: completed" in out


@pytest.mark.parametrize(
    ("data", "says"),
    [("{not json", "not JSON"), ("[1, 2]", "must be a JSON object")],
)
async def test_bad_data_is_a_usage_error(
    parked: tuple[str, str], tmp_path: Path, data: str, says: str
) -> None:
    url, run_id = parked
    code, out = _cli(tmp_path, "runs", "signal", "--store", url, run_id, "paid", "--data", data)
    assert code == 2, out
    assert says in out


async def test_cancel_compensates_a_waiting_run(parked: tuple[str, str], tmp_path: Path) -> None:
    url, run_id = parked
    code, out = _cli(tmp_path, "runs", "cancel", "--store", url, run_id)
    assert (code, out.strip()) == (0, f"{run_id}: cancellation requested")
    code, out = _cli(tmp_path, "runs", "cancel", "--store", url, run_id)
    assert (code, out.strip()) == (0, f"{run_id}: already requested")
    code, out = _cli(tmp_path, "worker", "--store", url, "--once")
    assert code == 0, out
    assert f"{run_id}: compensated" in out


async def test_resuming_a_waiting_run_says_it_waits(
    parked: tuple[str, str], tmp_path: Path
) -> None:
    url, run_id = parked
    code, out = _cli(tmp_path, "runs", "resume", "--store", url, run_id)
    assert (code, out.strip()) == (0, f"{run_id}: waiting for paid")


SCRIPT = """
import asyncio, sys
from cli_waits_saga import Booking

async def main():
    run = await Booking().start(store=sys.argv[1], saga_id="S-1")
    print("started", run.saga_id)

asyncio.run(main())
"""


async def test_a_script_that_returns_after_start_leaves_the_run_to_a_worker(
    sagas: ModuleType, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    (tmp_path / "start_and_go.py").write_text(SCRIPT, encoding="utf-8")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "start_and_go.py", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "started S-1" in done.stdout
    store = await open_store(url)
    record = (await store.load("S-1")).run
    await shutdown()
    assert record.status in ("running", "waiting")  # not compensated: the run goes on
    assert record.lease_owner is None or (record.lease_expires or 0) <= time.time() + 1
    code, out = _cli(tmp_path, "worker", "--store", url, "--once")
    assert code == 0, out
    if record.status == "running":
        assert "S-1: waiting for paid" in out
    code, out = _cli(tmp_path, "runs", "list", "--store", url, "--status", "waiting")
    assert "S-1" in out


async def test_a_signal_after_a_cancel_request_is_refused(
    parked: tuple[str, str], tmp_path: Path
) -> None:
    url, run_id = parked
    assert _cli(tmp_path, "runs", "cancel", "--store", url, run_id)[0] == 0
    code, out = _cli(tmp_path, "runs", "signal", "--store", url, run_id, "paid")
    assert code == 1, out
    assert "asked to stop" in out
    code, out = _cli(tmp_path, "worker", "--store", url, "--once")
    assert f"{run_id}: compensated" in out
