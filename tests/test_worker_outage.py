"""A worker whose PostgreSQL goes away for a moment (a restart, a failover) waits and looks
again: it does not exit, and it drives the runs created once the database is back."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import pytest
from _services import Proxy
from test_store_postgres import URL, drop_schema, new_schema, require_server

from statesaga import Saga, Step
from statesaga.context import Context
from statesaga.loader import saga_reference
from statesaga.store import store_from_url
from statesaga.worker import Worker
from tests.crash.cluster import new_run


async def noop(ctx: Context) -> None:
    return None


class Two(Saga):
    steps = (Step("a", noop), Step("b", noop))


async def test_a_worker_outlives_a_store_that_goes_away_for_a_moment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_server()
    schema = new_schema()
    proxy = Proxy(urlsplit(URL).port or 5432)
    await proxy.start()
    via = URL.replace(f":{urlsplit(URL).port or 5432}/", f":{proxy.port}/")
    direct = store_from_url(f"{URL}?schema={schema}")
    worker_store = store_from_url(f"{via}?schema={schema}")
    stop = asyncio.Event()
    try:
        async with direct, worker_store:
            worker = Worker(worker_store, poll=0.05, sagas={saga_reference(Two): Two})
            with caplog.at_level(logging.WARNING, logger="statesaga.worker"):
                running = asyncio.create_task(worker.run(stop, drain_timeout=5))
                await asyncio.sleep(0.3)
                await proxy.stop()  # every connection of the worker's store cut
                await asyncio.sleep(1.0)
                assert not running.done(), running.exception()
                await proxy.start()
                await direct.create(new_run(Two, "after-outage", {}))
                deadline = time.monotonic() + 20
                while (await direct.load("after-outage")).run.status != "completed":
                    assert not running.done(), running.exception()
                    assert time.monotonic() < deadline, "the worker did not go on"
                    await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(running, 10)
    finally:
        stop.set()
        await proxy.stop()
        drop_schema(schema)
    warnings = [r.getMessage() for r in caplog.records]
    assert any("does not answer" in w for w in warnings), warnings
    assert any("answers again" in w for w in warnings), warnings
