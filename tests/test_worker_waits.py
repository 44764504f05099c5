"""A worker and waiting runs: it sleeps until the soonest timeout, and on PostgreSQL it hears
signals committed by other processes instead of waiting for its next poll."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import statesaga
from statesaga import Saga, SagaStatus, Step, Wait
from statesaga.context import Context
from statesaga.durable import open_store, shutdown
from statesaga.store.base import SagaStore
from statesaga.worker import Worker

DONE: dict[str, float] = {}


async def reserve(ctx: Context) -> None:
    pass


async def release(ctx: Context) -> None:
    DONE[ctx.saga_id] = time.time()


async def ship(ctx: Context) -> dict[str, Any]:
    DONE[ctx.saga_id] = time.time()
    return {}


class Timed(Saga):
    steps = (Step("reserve", reserve, compensate=release), Wait("paid", timeout=0.6))


class Forever(Saga):
    steps = (Step("reserve", reserve), Wait("paid"), Step("ship", ship))


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sagas.db'}"
        await shutdown()
        return
    from test_store_postgres import URL, drop_schema, require_server

    require_server()
    schema = f"wworker_{uuid.uuid4().hex[:10]}"
    yield f"{URL}{'&' if '?' in URL else '?'}schema={schema}"
    await shutdown()
    drop_schema(schema)


async def _parked(saga: type[Saga], url: str) -> tuple[str, SagaStore]:
    """A run of ``saga`` left waiting, with nobody following it."""
    run = await saga().start(store=url)
    store = await open_store(url)
    for _ in range(500):
        if (await store.load(run.saga_id)).run.status == "waiting":
            break
        await asyncio.sleep(0.01)
    task = run._task  # type: ignore[attr-defined]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return run.saga_id, store


async def test_a_worker_wakes_for_the_soonest_timeout_not_its_poll(url: str) -> None:
    run_id, store = await _parked(Timed, url)
    due = (await store.load(run_id)).run.wake_at
    assert due is not None
    worker = Worker(url, poll=30.0, sagas={(await store.load(run_id)).run.saga_path: Timed})
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(500):
            if run_id in DONE:
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert (await store.load(run_id)).run.status == SagaStatus.COMPENSATED
    assert 0 <= DONE[run_id] - due < 1.0  # fired within a second of its due time


async def test_a_worker_drives_a_signalled_run_before_its_next_poll(url: str) -> None:
    run_id, store = await _parked(Forever, url)
    saga_path = (await store.load(run_id)).run.saga_path
    worker = Worker(url, poll=30.0 if "postgresql" in url else 0.2, sagas={saga_path: Forever})
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.3)  # the worker has looked and sleeps
        sent = time.time()
        # From another store object, as another process would.
        assert await statesaga.signal(url + "", run_id, "paid", saga=Forever)
        for _ in range(1000):
            if run_id in DONE:
                break
            await asyncio.sleep(0.005)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert (await store.load(run_id)).run.status == SagaStatus.COMPLETED
    # PostgreSQL's notification wakes the worker well before its 30 s poll.
    assert DONE[run_id] - sent < 1.0
