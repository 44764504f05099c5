"""The consumer inbox on PostgreSQL (real server) and SQLite: every message applied exactly once.

PostgreSQL tests skip when the server is unreachable, except under ``CI=true`` (they fail then);
each works in a fresh schema, dropped afterwards. The RabbitMQ and Redis tests follow the same
rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _services import AMQP_URL, REDIS_URL, remove_rabbitmq, remove_redis, require
from test_store_postgres import URL, admin, drop_schema, new_schema, require_server

from statesaga.messaging import Broker, Delivery, Message, inbox_for
from statesaga.messaging.brokers import MemoryBroker
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
from statesaga.messaging.brokers.redis import RedisBroker
from statesaga.messaging.inbox import Inbox, InboxError, Outcome, consume
from statesaga.messaging.inbox_postgres import PostgresInbox
from statesaga.messaging.inbox_sqlite import SQLiteInbox
from statesaga.store.postgres import PostgresStore
from statesaga.store.sqlite import SQLiteStore

WAIT = 10.0


class Backend:
    """One database kind: inboxes on it, a handler that records its effect, the effects."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.schema = new_schema() if kind == "postgres" else ""
        self.path = tmp_path / "inbox.db"
        #: message id -> how many more times the handler raises for it (after writing).
        self.fail: dict[str, int] = {}
        self.pause = 0.0  # seconds the handler waits inside its transaction
        self.calls = 0

    def setup(self) -> None:
        if self.kind == "postgres":
            admin(f'CREATE SCHEMA "{self.schema}"')
            admin(f'CREATE TABLE "{self.schema}".effects (seq bigserial, message_id text, n int)')
        else:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                conn.execute(
                    "CREATE TABLE effects (seq INTEGER PRIMARY KEY, message_id TEXT, n INT)"
                )
                conn.commit()

    def teardown(self) -> None:
        if self.kind == "postgres":
            drop_schema(self.schema)

    def inbox(self, consumer: str = "billing") -> Inbox[Any]:
        if self.kind == "postgres":
            return PostgresInbox(URL, consumer=consumer, schema=self.schema)
        return SQLiteInbox(self.path, consumer=consumer)

    def _should_fail(self, message: Message) -> bool:
        self.calls += 1
        left = self.fail.get(message.id, 0)
        if left:
            self.fail[message.id] = left - 1
        return left > 0

    @property
    def handler(self) -> Any:
        if self.kind == "postgres":

            async def on_pg(message: Message, conn: psycopg.AsyncConnection[Any]) -> None:
                await conn.execute(
                    f'INSERT INTO "{self.schema}".effects (message_id, n) VALUES (%s, %s)',
                    (message.id, message.payload["n"]),
                )
                await asyncio.sleep(self.pause)
                if self._should_fail(message):
                    raise RuntimeError(f"handler failed on {message.id}")

            return on_pg

        def on_sqlite(message: Message, conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO effects (message_id, n) VALUES (?, ?)",
                (message.id, message.payload["n"]),
            )
            time.sleep(self.pause)
            if self._should_fail(message):
                raise RuntimeError(f"handler failed on {message.id}")

        return on_sqlite

    def effects(self) -> list[tuple[str, int]]:
        if self.kind == "postgres":
            rows = admin(f'SELECT message_id, n FROM "{self.schema}".effects ORDER BY seq')
        else:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                rows = conn.execute("SELECT message_id, n FROM effects ORDER BY seq").fetchall()
        return [(str(i), int(n)) for i, n in rows]


@pytest.fixture(params=["postgres", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "postgres":
        require_server()
    b = Backend(request.param, tmp_path)
    b.setup()
    yield b
    b.teardown()


@pytest.fixture
async def inbox(backend: Backend) -> AsyncIterator[Inbox[Any]]:
    async with backend.inbox() as opened:
        yield opened


def message(n: int, key: str | None = None) -> Message:
    return Message(id=f"m{n}", topic="orders.paid", payload={"n": n}, key=key)


async def eventually(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds; fail after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    for _ in iter(int, 1):  # until the deadline
        if condition():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def drain(broker: Broker, topic: str, group: str, inbox: Inbox[Any], handler: Any) -> None:
    """Run ``consume`` until the memory broker has nothing unacked for ``group``."""
    assert isinstance(broker, MemoryBroker)
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(
            broker, topic, group=group, inbox=inbox, handler=handler, retry_delay=0.01, stop=stop
        )
    )
    await eventually(lambda: not broker.unacked(topic, group=group))
    stop.set()
    await task


# -- exactly once ------------------------------------------------------------------------------


async def test_a_message_is_applied_once_and_recorded(backend: Backend, inbox: Inbox[Any]) -> None:
    """The first processing applies and records; the second is recognised and skipped."""
    assert await inbox.process(message(1), backend.handler)
    assert not await inbox.process(message(1), backend.handler)
    assert backend.effects() == [("m1", 1)]
    assert await inbox.seen("m1")
    assert backend.calls == 1


async def test_duplicate_deliveries_are_acked_without_running_the_handler(
    backend: Backend, inbox: Inbox[Any]
) -> None:
    """The same message delivered three times is applied once; every delivery is acked."""
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="billing")
    for _ in range(3):
        await broker.publish(message(1, key="o1"))
    await broker.publish(message(2, key="o1"))
    await drain(broker, "orders.paid", "billing", inbox, backend.handler)
    assert backend.effects() == [("m1", 1), ("m2", 2)]
    assert backend.calls == 2


async def test_a_failed_handler_is_rolled_back_and_its_message_applied_later(
    backend: Backend, inbox: Inbox[Any]
) -> None:
    """A handler raising twice leaves no effect and no record; the redelivery applies once."""
    backend.fail["m1"] = 2
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="billing")
    await broker.publish(message(1, key="o1"))
    await broker.publish(message(2, key="o1"))
    await drain(broker, "orders.paid", "billing", inbox, backend.handler)
    assert backend.effects() == [("m1", 1), ("m2", 2)]
    assert backend.calls == 4  # m1 three times (two failures), m2 once


async def test_handle_reports_what_it_did(backend: Backend, inbox: Inbox[Any]) -> None:
    """handle() acks applied and duplicate deliveries, nacks a failure."""
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="g")
    backend.fail["m1"] = 1
    for _ in range(2):
        await broker.publish(message(1))
    async with contextlib.aclosing(broker.consume("orders.paid", group="g")) as deliveries:
        outcomes = [await inbox.handle(await anext(deliveries), backend.handler) for _ in range(3)]
    assert outcomes == [Outcome.FAILED, Outcome.APPLIED, Outcome.DUPLICATE]
    assert broker.unacked("orders.paid", group="g") == 0


async def test_an_ack_that_raises_any_error_is_logged_not_raised(
    backend: Backend, inbox: Inbox[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A broker whose ack fails with an unexpected error: applied, logged, nothing raised."""

    async def broken() -> None:
        raise RuntimeError("channel gone")

    delivery = Delivery(message(7), ack=broken, nack=broken)
    assert await inbox.handle(delivery, backend.handler) is Outcome.APPLIED
    assert "settling message 'm7' failed" in caplog.text


async def test_concurrent_deliveries_of_one_message_apply_it_once(backend: Backend) -> None:
    """Two consumers (own connections) processing one message at once: one applies it."""
    backend.pause = 0.2
    async with backend.inbox() as first, backend.inbox() as second:
        results = await asyncio.gather(
            first.process(message(1), backend.handler),
            second.process(message(1), backend.handler),
        )
    assert sorted(results) == [False, True]
    assert backend.effects() == [("m1", 1)]


async def test_a_concurrent_delivery_applies_the_message_when_the_first_fails(
    backend: Backend,
) -> None:
    """If the consumer holding the message fails, the one waiting behind it applies it."""
    backend.pause = 0.2
    backend.fail["m1"] = 1
    async with backend.inbox() as first, backend.inbox() as second:
        results = await asyncio.gather(
            first.process(message(1), backend.handler),
            second.process(message(1), backend.handler),
            return_exceptions=True,
        )
    assert sum(r is True for r in results) == 1
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert backend.effects() == [("m1", 1)]


async def _swallows_an_error(message: Message, conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("CREATE TEMPORARY TABLE IF NOT EXISTS scratch (n int)")
    with contextlib.suppress(psycopg.errors.DivisionByZero):
        await conn.execute("SELECT 1 / 0")


async def _rolls_back(message: Message, conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("ROLLBACK")


@pytest.mark.parametrize("misbehaving", [_swallows_an_error, _rolls_back])
async def test_a_postgres_handler_that_ends_the_transaction_does_not_lose_its_message(
    misbehaving: Any,
) -> None:
    """A handler leaving the transaction failed or rolled back: refused and nacked, not acked."""
    require_server()
    schema = new_schema()
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="g")
    await broker.publish(message(1))
    try:
        async with PostgresInbox(URL, consumer="c", schema=schema) as inbox:
            async with contextlib.aclosing(broker.consume("orders.paid", group="g")) as deliveries:
                outcome = await inbox.handle(await anext(deliveries), misbehaving)
            assert outcome is Outcome.FAILED
            assert not await inbox.seen("m1")
            with pytest.raises(InboxError, match=r"savepoint|leave that to the inbox"):
                await inbox.process(message(1), misbehaving)
        assert broker.unacked("orders.paid", group="g") == 1  # it comes again
    finally:
        drop_schema(schema)


async def test_a_postgres_handler_may_recover_from_an_error_in_a_savepoint() -> None:
    """A handler that catches a failed statement inside a savepoint still applies its message."""
    require_server()
    schema = new_schema()

    async def careful(message: Message, conn: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            async with conn.transaction():
                await conn.execute("SELECT 1 / 0")

    try:
        async with PostgresInbox(URL, consumer="c", schema=schema) as inbox:
            assert await inbox.process(message(1), careful)
            assert await inbox.seen("m1")
    finally:
        drop_schema(schema)


async def test_consumer_names_have_separate_inboxes(backend: Backend) -> None:
    """The same message is applied once per consumer name."""
    async with backend.inbox("billing") as billing, backend.inbox("shipping") as shipping:
        assert await billing.process(message(1), backend.handler)
        assert await shipping.process(message(1), backend.handler)
        assert not await shipping.process(message(1), backend.handler)
    assert len(backend.effects()) == 2


async def test_purge_forgets_old_ids_so_a_late_duplicate_applies_again(
    backend: Backend, inbox: Inbox[Any]
) -> None:
    """Ids older than the limit are purged (documented limit: a later duplicate re-applies)."""
    await inbox.process(message(1), backend.handler)
    assert await inbox.purge(older_than=3600) == 0
    await asyncio.sleep(0.01)
    assert await inbox.purge(older_than=0) == 1
    assert not await inbox.seen("m1")
    assert await inbox.process(message(1), backend.handler)
    assert len(backend.effects()) == 2


async def test_many_messages_over_a_few_keys_are_applied_once_in_key_order(
    backend: Backend, inbox: Inbox[Any]
) -> None:
    """consume() with concurrency, duplicates and failures: each key applied once, in order."""
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="billing")
    backend.fail.update({"m3": 1, "m10": 2})
    for n in range(20):
        await broker.publish(message(n, key=f"o{n % 3}"))
        if n % 4 == 0:
            await broker.publish(message(n, key=f"o{n % 3}"))  # a duplicate
    await drain(broker, "orders.paid", "billing", inbox, backend.handler)
    effects = backend.effects()  # in the order they were applied
    assert sorted(n for _, n in effects) == list(range(20))
    for key in range(3):
        ns = [n for _, n in effects if n % 3 == key]
        assert ns == sorted(ns)


async def test_a_broker_outage_while_handling_loses_and_doubles_nothing(
    backend: Backend, inbox: Inbox[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The broker drops while a message is being handled: everything is applied once after."""
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="billing")
    for n in range(10):
        await broker.publish(message(n, key=f"o{n % 2}"))
    loop = asyncio.get_running_loop()
    handler = backend.handler

    triggered: list[bool] = []
    went_down = threading.Event()

    def outage() -> None:
        broker.down()  # the deliveries in hand can no longer be acked
        went_down.set()
        loop.call_later(0.05, broker.up)

    if backend.kind == "postgres":

        async def wrapped(m: Message, conn: Any) -> None:
            if m.id == "m4" and not triggered:
                triggered.append(True)
                outage()
            await handler(m, conn)

    else:

        def wrapped(m: Message, conn: Any) -> None:  # type: ignore[misc]
            if m.id == "m4" and not triggered:
                triggered.append(True)
                loop.call_soon_threadsafe(outage)
                went_down.wait(WAIT)
            handler(m, conn)

    await drain(broker, "orders.paid", "billing", inbox, wrapped)
    assert "cannot settle message 'm4'" in caplog.text  # its ack failed: it came again
    effects = backend.effects()
    assert sorted(n for _, n in effects) == list(range(10))
    for key in range(2):
        ns = [n for _, n in effects if n % 2 == key]
        assert ns == sorted(ns)


async def test_cancelling_consume_gives_back_what_it_held(
    backend: Backend, inbox: Inbox[Any]
) -> None:
    """Cancelled mid-handler, consume() raises CancelledError; the message is applied once later."""
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="billing")
    await broker.publish(message(1, key="o1"))
    backend.pause = 0.3
    task = asyncio.create_task(
        consume(broker, "orders.paid", group="billing", inbox=inbox, handler=backend.handler)
    )
    await asyncio.sleep(0.1)  # the handler is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert broker.unacked("orders.paid", group="billing") == 1
    backend.pause = 0.0
    await drain(broker, "orders.paid", "billing", inbox, backend.handler)
    assert backend.effects() == [("m1", 1)]


async def test_stopping_does_not_wait_out_a_retry_delay(
    backend: Backend, inbox: Inbox[Any]
) -> None:
    """stop= set while a failed message waits to be retried: it is nacked and consume returns."""
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="billing")
    await broker.publish(message(1))
    backend.fail["m1"] = 1
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(
            broker,
            "orders.paid",
            group="billing",
            inbox=inbox,
            handler=backend.handler,
            retry_delay=5.0,
            stop=stop,
        )
    )
    await eventually(lambda: backend.calls == 1)
    stop.set()
    async with asyncio.timeout(2.0):
        await task
    assert broker.unacked("orders.paid", group="billing") == 1
    assert backend.effects() == []


async def test_a_message_failing_over_a_thousand_times_is_still_retried(tmp_path: Path) -> None:
    """The backoff does not overflow however often a message fails: it is retried until applied."""
    broker = MemoryBroker()
    await broker.declare("orders.paid", group="billing")
    await broker.publish(message(1, key="o1"))
    calls: list[int] = []

    def flaky(message: Message, conn: sqlite3.Connection) -> None:
        calls.append(1)
        if len(calls) <= 1100:
            raise RuntimeError("not yet")

    logging.getLogger("statesaga.messaging").disabled = True  # 1,100 tracebacks
    try:
        async with SQLiteInbox(tmp_path / "x.db", consumer="c") as inbox:
            stop = asyncio.Event()
            task = asyncio.create_task(
                consume(
                    broker,
                    "orders.paid",
                    group="billing",
                    inbox=inbox,
                    handler=flaky,
                    retry_delay=1e-300,
                    max_retry_delay=1e-300,
                    stop=stop,
                )
            )
            await eventually(lambda: not broker.unacked("orders.paid", group="billing"))
            stop.set()
            await task
            assert await inbox.seen("m1")
    finally:
        logging.getLogger("statesaga.messaging").disabled = False
    assert len(calls) == 1101


# -- with a real broker ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
async def test_real_broker_redeliveries_and_duplicates_reach_postgres_once(
    kind: str, tmp_path: Path
) -> None:
    """A real broker + PostgreSQL: a duplicate publish and a failing handler still apply once
    each, in order."""
    require_server()
    tag = uuid.uuid4().hex[:10]
    broker: RabbitMQBroker | RedisBroker
    if kind == "rabbitmq":
        require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
        broker = RabbitMQBroker(AMQP_URL, exchange=f"statesaga_test_{tag}")
    else:
        require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
        broker = RedisBroker(REDIS_URL, stream_prefix=f"test_{tag}", poll_interval=0.02)
    backend = Backend("postgres", tmp_path)
    backend.setup()
    topic, group = f"t{tag}.paid", "billing"
    backend.fail["m2"] = 2
    try:
        await broker.declare(topic, group=group)
        for n in (1, 2, 2, 3):
            await broker.publish(Message(id=f"m{n}", topic=topic, payload={"n": n}, key="o1"))
        async with backend.inbox() as inbox:
            stop = asyncio.Event()
            task = asyncio.create_task(
                consume(
                    broker,
                    topic,
                    group=group,
                    inbox=inbox,
                    handler=backend.handler,
                    retry_delay=0.01,
                    stop=stop,
                )
            )
            await eventually(lambda: len(backend.effects()) >= 3 and backend.calls >= 5)
            stop.set()
            await task
        assert backend.effects() == [("m1", 1), ("m2", 2), ("m3", 3)]
    finally:
        await broker.close()
        backend.teardown()
        if isinstance(broker, RabbitMQBroker):
            await remove_rabbitmq(broker, f"statesaga_test_{tag}", topic, group)
        else:
            await remove_redis(f"test_{tag}")


# -- setting up ----------------------------------------------------------------------------------


async def test_a_schema_in_the_url_holds_the_inbox_table() -> None:
    """postgresql://...?schema=NAME creates the schema and its table there, idempotently."""
    require_server()
    schema = new_schema()
    try:
        for _ in range(2):
            async with inbox_for(f"{URL}?schema={schema}", consumer="c") as inbox:
                await inbox.process(message(1), _nothing)
                assert await inbox.seen("m1")
        rows = admin(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        )
        assert rows == [("statesaga_inbox",)]
    finally:
        drop_schema(schema)


@pytest.mark.parametrize("odd", ['100%"; DROP TABLE x; --', "50%s", "a%%b"])
async def test_any_schema_name_holds_the_inbox_table_as_written(odd: str) -> None:
    """Quotes, '%' and SQL in a schema name are data: the table lands in exactly that schema."""
    require_server()
    schema = new_schema() + odd
    try:
        async with PostgresInbox(URL, consumer="c", schema=schema) as inbox:
            assert await inbox.process(message(1), _nothing)
            assert await inbox.seen("m1")
            assert await inbox.purge(older_than=3600) == 0
        found = "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s"
        assert admin(found, (schema,)) == [(1,)]
        assert admin(found, (schema.replace("%", "%%"),)) == [(0,)]
    finally:
        for name in (schema, schema.replace("%", "%%")):
            with psycopg.connect(URL, autocommit=True) as conn:
                drop = psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                conn.execute(drop.format(psycopg.sql.Identifier(name)))


def test_an_unusable_schema_name_is_refused_up_front() -> None:
    """An empty, NUL-holding or over-long schema name is an InboxError before connecting."""
    for bad in ("", "a\x00b", "s" * 64):
        with pytest.raises(InboxError, match="not a usable PostgreSQL schema name"):
            PostgresInbox("postgresql://u@h/db", consumer="c", schema=bad)
    with pytest.raises(InboxError, match="not a usable"):
        inbox_for("postgresql://u@h/db?schema=", consumer="c")


async def _nothing(message: Message, conn: Any) -> None:
    return None


def test_inbox_urls_pick_the_database(tmp_path: Path) -> None:
    """URLs and stores pick their inbox; anything else is refused with the choices."""
    pg = inbox_for("postgresql://u@h/db?schema=s&sslmode=disable", consumer="c")
    assert isinstance(pg, PostgresInbox)
    assert (pg.schema, pg.url) == ("s", "postgresql://u@h/db?sslmode=disable")
    lite = inbox_for(f"sqlite:///{tmp_path}/x.db", consumer="c")
    assert isinstance(lite, SQLiteInbox)
    assert lite.path == f"{tmp_path}/x.db"
    beside = inbox_for(SQLiteStore(tmp_path / "runs.db"), consumer="c")
    assert isinstance(beside, SQLiteInbox)
    assert beside.path == str(tmp_path / "runs.db")
    in_schema = inbox_for(PostgresStore("postgresql://u@h/db", schema="runs"), consumer="c")
    assert isinstance(in_schema, PostgresInbox)
    assert in_schema.schema == "runs"
    with pytest.raises(InboxError, match=r"postgresql://.*sqlite:///"):
        inbox_for("mysql://h/db", consumer="c")


async def test_an_unreachable_database_is_reported_with_what_to_check() -> None:
    """Opening an inbox on a dead port raises InboxError naming the URL, password hidden."""
    inbox = PostgresInbox("postgresql://u:s3cret@127.0.0.1:1/db", consumer="c")
    with pytest.raises(InboxError, match=r"cannot connect.*127\.0\.0\.1") as caught:
        await inbox.open()
    assert "s3cret" not in str(caught.value)


async def test_a_postgres_url_with_several_hosts_is_accepted_and_hidden() -> None:
    """libpq's host list (failover) builds an inbox; errors name it with the password hidden."""
    url = "postgresql://u:s3cret@127.0.0.1:1,127.0.0.1:2/db?connect_timeout=1"
    inbox = inbox_for(url, consumer="c")
    assert "s3cret" not in repr(inbox)
    with pytest.raises(InboxError, match="cannot connect") as caught:
        await inbox.open()
    assert "s3cret" not in str(caught.value)


async def test_a_sqlite_handler_may_not_commit_the_inbox_transaction(tmp_path: Path) -> None:
    """A SQLite handler that commits is refused, so id and writes stay one commit."""

    def commits(message: Message, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    async with SQLiteInbox(tmp_path / "x.db", consumer="c") as inbox:
        with pytest.raises(InboxError, match="leave that to the inbox"):
            await inbox.process(message(1), commits)


async def test_an_async_handler_is_refused_by_the_sqlite_inbox(tmp_path: Path) -> None:
    """An async def handler given to a SQLite inbox is refused: the id is not recorded."""

    async def not_plain(message: Message, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE never (n INT)")

    async with SQLiteInbox(tmp_path / "x.db", consumer="c") as inbox:
        with pytest.raises(InboxError, match="plain functions"):
            await inbox.process(message(1), not_plain)  # type: ignore[arg-type]
        assert not await inbox.seen("m1")
