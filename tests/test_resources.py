"""Stores and brokers opened from URLs: one per URL and event loop, closed as the loop ends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _services import AMQP_URL, require
from test_store_postgres import URL as PG_URL
from test_store_postgres import admin, drop_schema, new_schema, require_server

from statesaga import Saga, SagaStatus, Step, resume, shutdown
from statesaga.context import Context
from statesaga.durable.resources import loop_resources
from statesaga.messaging.brokers.memory import MemoryBroker
from statesaga.messaging.relay import Relay
from statesaga.store import MemoryStore, SagaStore, StoreError
from statesaga.store.sqlite import SQLiteStore
from statesaga.worker import Worker

ROOT = Path(__file__).resolve().parent.parent


async def noop(ctx: Context) -> None:
    return None


class Four(Saga):
    steps = tuple(Step(name, noop) for name in "abcd")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema name, dropped with its contents at teardown."""
    require_server()
    name = new_schema()
    yield name
    drop_schema(name)


def writer_threads() -> int:
    return sum(t.name.startswith("statesaga-sqlite-writer") for t in threading.enumerate())


async def test_concurrent_runs_by_url_share_one_store(tmp_path: Path) -> None:
    """Many runs started at once by one SQLite URL open one store, with one writer thread."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    before = writer_threads()
    results = await asyncio.gather(*(Four(i=i).execute(store=url) for i in range(50)))
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert writer_threads() - before == 1
    assert list(loop_resources().stores) == [url]


def client_connections(schema_marker: str) -> int:
    """Connections to the test database whose application name carries ``schema_marker``."""
    rows = admin(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (schema_marker,)
    )
    return int(rows[0][0])


async def test_concurrent_runs_by_postgres_url_hold_no_more_than_the_pool(
    pg_schema: str,
) -> None:
    """150 runs at once by one PostgreSQL URL hold the store's connections only (writer + pool)."""
    marker = f"t{pg_schema[-12:]}"
    url = f"{PG_URL}?schema={pg_schema}&application_name={marker}"
    results = await asyncio.gather(*(Four(i=i).execute(store=url) for i in range(150)))
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    store: Any = loop_resources().stores[url]
    assert 1 <= client_connections(marker) <= 1 + store.pool_size
    await shutdown()
    assert client_connections(marker) == 0


async def test_shutdown_closes_url_stores_and_a_later_run_opens_them_again(
    tmp_path: Path,
) -> None:
    """``shutdown()`` closes what URLs opened; the next run by URL opens a fresh store."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    before = writer_threads()
    await Four().execute(store=url)
    first = loop_resources().stores[url]
    await shutdown()
    assert writer_threads() == before
    assert (await Four().execute(store=url)).status is SagaStatus.COMPLETED
    assert loop_resources().stores[url] is not first


async def test_a_store_that_failed_to_open_is_opened_again_next_time(tmp_path: Path) -> None:
    """A URL whose store could not open is not remembered: once the cause is gone, runs work."""
    folder = tmp_path / "later"
    url = f"sqlite:///{folder / 'runs.db'}"
    folder.write_text("a file where the folder should be")
    with pytest.raises(StoreError):
        await Four().execute(store=url)
    folder.unlink()
    folder.mkdir()
    assert (await Four().execute(store=url)).status is SagaStatus.COMPLETED


async def test_an_empty_store_url_is_refused() -> None:
    """``execute(store="")`` says it names no store, instead of picking one."""
    with pytest.raises(StoreError, match="names no store"):
        await Four().execute(store="")


SCRIPT = """
import asyncio, sys, threading
from statesaga import Saga, Step

async def noop(ctx):
    return None

class Four(Saga):
    steps = tuple(Step(name, noop) for name in "abcd")

def writers():
    return sum(t.name.startswith("statesaga-sqlite-writer") for t in threading.enumerate())

async def burst():
    results = await asyncio.gather(*(Four().execute(store=sys.argv[1]) for _ in range(20)))
    return {r.status.value for r in results}

for round in (1, 2):
    print(round, asyncio.run(burst()), "writers after:", writers(), flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_url_works_in_a_second_asyncio_run_and_closes_without_warnings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A store opened by URL is closed as its asyncio.run ends; the next asyncio.run opens its
    own; nothing warns (warnings are errors, ResourceWarning included)."""
    if backend == "postgres":
        schema = request.getfixturevalue("pg_schema")
        url = f"{PG_URL}?schema={schema}"
    else:
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    (tmp_path / "bursts.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-W", "error", "bursts.py", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        "1 {'completed'} writers after: 0",
        "2 {'completed'} writers after: 0",
    ]


EMITTER = """
import asyncio, os, sys
from statesaga import Saga, Step

async def first(ctx):
    return {}

async def second(ctx):
    ctx.emit("statesaga-test-shutdown", {"n": 1}, key=ctx.saga_id)
    if os.environ.get("DIE"):
        os._exit(3)  # a process killed mid-saga: the worker takes the run over
    return {}

class Emitter(Saga):
    steps = (Step("first", first), Step("second", second))

if __name__ == "__main__":
    asyncio.run(Emitter().execute(store=sys.argv[1]))
"""


def test_a_worker_with_a_broker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`statesaga worker --broker` closes its broker connection on SIGTERM: no reconnect, no
    pending task destroyed, no traceback."""
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    (tmp_path / "emitter.py").write_text(textwrap.dedent(EMITTER))
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    died = subprocess.run(
        [sys.executable, "-m", "emitter", url],
        cwd=tmp_path,
        env={**env, "DIE": "1", "STATESAGA_LEASE_SECONDS": "0.5"},
        check=False,
        timeout=60,
    )
    assert died.returncode == 3
    time.sleep(0.6)  # its lease runs out
    command = [sys.executable, "-X", "dev", "-m", "statesaga.cli", "worker", "--store", url]
    worker = subprocess.Popen(
        [*command, "--broker", AMQP_URL],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = subprocess.run(
                [sys.executable, "-m", "statesaga.cli", "runs", "list", "--store", url],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if "completed" in listed.stdout:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # the message's publish attempt settles
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert "completed" in listed.stdout
    assert worker.returncode == 0, err
    for trouble in ("Reconnecting", "Task was destroyed", "Traceback", "unclosed"):
        assert trouble not in err, err


def locked(path: Path) -> Any:
    """A connection holding ``path``'s write lock: opening a store there waits for it."""
    import sqlite3

    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def release_later(holder: Any, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, holder.rollback)
    timer.start()
    return timer


async def test_shutdown_while_a_store_opens_closes_it_once_open(tmp_path: Path) -> None:
    """A store still opening when shutdown() comes is closed once it has opened (no writer
    thread left), and the run waiting for it gets a StoreError saying why."""
    before = writer_threads()
    holder = locked(tmp_path / "runs.db")
    run = asyncio.create_task(Four().execute(store=f"sqlite:///{tmp_path / 'runs.db'}"))
    await asyncio.sleep(0.1)  # its open waits for the lock
    timer = release_later(holder, 0.3)
    await shutdown()
    with pytest.raises(StoreError, match="shut down"):
        await run
    timer.join()
    holder.close()
    assert writer_threads() == before


def test_a_loop_ending_while_a_store_opens_leaves_no_writer_behind(tmp_path: Path) -> None:
    """asyncio.run ending while a run's store is still opening closes that store once open."""
    before = writer_threads()
    holder = locked(tmp_path / "runs.db")

    left: list[asyncio.Task[Any]] = []

    async def leave_a_run_behind() -> None:
        left.append(asyncio.create_task(Four().execute(store=f"sqlite:///{tmp_path / 'runs.db'}")))
        await asyncio.sleep(0.1)

    timer = release_later(holder, 0.3)
    asyncio.run(leave_a_run_behind())
    assert left[0].cancelled()
    timer.join()
    holder.close()
    assert writer_threads() == before


def test_stores_of_loops_closed_without_shutdown_are_closed_later(tmp_path: Path) -> None:
    """A loop closed without asyncio.run's shutdown steps does not keep its store for good: the
    next loop to open one closes it."""
    before = writer_threads()
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for _ in range(5):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(Four().execute(store=url))
        finally:
            loop.close()

    async def last() -> None:
        await Four().execute(store=url)

    asyncio.run(last())
    deadline = time.monotonic() + 10
    while writer_threads() > before and time.monotonic() < deadline:
        time.sleep(0.02)  # the stores of closed loops are closed in a thread of their own
    assert writer_threads() == before


class Owned(MemoryStore):
    """A caller's store that counts how often it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1


class OwnedBroker(MemoryBroker):
    """A caller's broker that counts how often it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1


async def emit(ctx: Context) -> None:
    ctx.emit("orders", {"step": ctx.step}, key="k")


class Emits(Saga):
    steps = (Step("a", emit), Step("b", emit))


def test_a_store_or_broker_passed_as_an_object_is_never_closed_by_statesaga() -> None:
    """Runs, resumes, workers, relays, ``shutdown()`` and the loop's end leave a store or
    broker the caller passed open: the caller owns it."""
    store, broker = Owned(), OwnedBroker()

    async def use() -> None:
        first = await Emits().execute(store=store, broker=broker, saga_id="o1")
        assert first.status is SagaStatus.COMPLETED
        assert (await resume(store, "o1", broker=broker)).status is SagaStatus.COMPLETED
        await Worker(store, broker=broker).run_once()
        async with Relay(store, broker) as relay:
            await relay.run_once()
        await shutdown()
        assert (await Emits().execute(store=store, broker=broker)).status is SagaStatus.COMPLETED

    asyncio.run(use())
    assert (store.closes, broker.closes) == (0, 0)


async def test_no_task_is_left_running_after_async_with_exits(tmp_path: Path) -> None:
    """A run inside ``async with`` a store and a broker leaves nothing running once they
    close: no lease keeper, no sender, no writer."""
    before = asyncio.all_tasks()
    async with SQLiteStore(tmp_path / "runs.db") as store, MemoryBroker() as broker:
        result = await Emits().execute(store=store, broker=broker)
    assert result.status is SagaStatus.COMPLETED
    assert len(broker.messages("orders")) == 2
    assert asyncio.all_tasks() == before
    assert loop_resources().keepers == {}
    assert writer_threads() == 0


gates: dict[str, asyncio.Event] = {}


async def wait_for_gate(ctx: Context) -> None:
    await gates[ctx.saga_id].wait()


class Gated(Saga):
    steps = (Step("a", noop), Step("b", wait_for_gate))


async def until_driving(store: SagaStore, run_id: str) -> None:
    for _ in range(200):
        if loop_resources().driving(store, run_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{run_id} never driven")


async def test_the_lease_keeper_of_a_run_ends_with_the_run() -> None:
    """A keeper lives while runs of its store hold leases, and is gone (task ended) after."""
    gate = gates["g1"] = asyncio.Event()
    store = MemoryStore()
    run = asyncio.create_task(Gated().execute(store=store, saga_id="g1"))
    await until_driving(store, "g1")
    keeper = loop_resources().keepers[id(store)]
    assert keeper.running
    gate.set()
    assert (await run).status is SagaStatus.COMPLETED
    assert not keeper.running
    assert loop_resources().keepers == {}


async def test_shutdown_stops_the_lease_keepers_and_leaves_a_callers_store_open() -> None:
    """``shutdown()`` closes the keepers it owns, even of runs still going; a store passed as
    an object stays open, and the run still completes in it."""
    gate = gates["g2"] = asyncio.Event()
    store = Owned()
    run = asyncio.create_task(Gated().execute(store=store, saga_id="g2"))
    await until_driving(store, "g2")
    keeper = loop_resources().keepers[id(store)]
    await shutdown()
    assert keeper.closed
    assert not keeper.running
    gate.set()
    assert (await run).status is SagaStatus.COMPLETED
    assert store.closes == 0


async def test_a_url_store_closes_after_its_keepers() -> None:
    """The loop's resources stop a keeper of a store they opened before closing that store,
    so no renewal runs against a closed store."""
    gate = gates["g3"] = asyncio.Event()
    url = "memory://"
    run = asyncio.create_task(Gated().execute(store=url, saga_id="g3"))
    opened = loop_resources()
    await until_store(opened, url)
    store = opened.stores[url]
    await until_driving(store, "g3")
    keeper = opened.keepers[id(store)]
    order: list[str] = []
    real_close, real_aclose = store.close, keeper.aclose

    async def close() -> None:
        order.append("store")
        await real_close()

    async def aclose() -> None:
        order.append("keeper")
        await real_aclose()

    store.close = close  # type: ignore[method-assign]
    keeper.aclose = aclose  # type: ignore[method-assign]
    await shutdown()
    assert order == ["keeper", "store"]
    gate.set()
    assert (await run).status is SagaStatus.COMPLETED  # a memory store works on, closed


async def until_store(resources: Any, url: str) -> None:
    for _ in range(200):
        if url in resources.stores:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{url} never opened")
