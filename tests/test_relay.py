"""The relay: backoff, dead letters, per-key order, several relays, a broker that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import pytest
from _services import AMQP_URL, Proxy, remove_rabbitmq, require

from statesaga import Retry
from statesaga.messaging.broker import BrokerError
from statesaga.messaging.brokers.memory import MemoryBroker
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
from statesaga.messaging.message import Message
from statesaga.messaging.relay import Relay
from statesaga.messaging.stats import OutboxStats
from statesaga.store import Commit, MemoryStore, RunRecord, SagaStore, StoreError
from statesaga.store.sqlite import SQLiteStore
from statesaga.testing import FakeClock

FAST = Retry(attempts=3, delay=1.0, backoff=2.0, max_delay=60.0, jitter=0.0)


class Watched(MemoryBroker):
    """A memory broker that records publishes, can refuse some, and notices overlaps."""

    def __init__(
        self, *, delay: float = 0.0, refuse: Callable[[Message], bool] = lambda m: False
    ) -> None:
        super().__init__()
        self.delay = delay
        self.refuse = refuse
        self.published: list[Message] = []
        self.inflight: set[str] = set()
        self.overlaps: list[str] = []

    async def publish(self, message: Message) -> None:
        marks = {message.id, f"key:{message.key}"} if message.key else {message.id}
        if marks & self.inflight:
            self.overlaps.append(message.id)
        self.inflight |= marks
        try:
            if self.delay:
                await asyncio.sleep(random.random() * self.delay)
            if self.refuse(message):
                raise BrokerError(f"refused {message.id}")
            await super().publish(message)
            self.published.append(message)
        finally:
            self.inflight -= marks


def messages(count: int, keys: int, run_id: str = "r1") -> list[Message]:
    """``count`` messages over ``keys`` keys, numbered in the order they are committed."""
    now = time.time()
    return [
        Message(
            id=f"{run_id}:s:{n}",
            topic="orders",
            payload={"n": n},
            key=f"k{n % keys}",
            saga_id=run_id,
            step="s",
            created_at=now,
        )
        for n in range(count)
    ]


async def seed(store: SagaStore, batch: Iterable[Message], run_id: str = "r1") -> None:
    """Commit ``batch`` to the outbox of a new run, unclaimed (as with no broker)."""
    now = time.time()
    run = RunRecord(
        run_id, "S", "m:S", "f", {}, "running", {"saga": "saga.running"}, 0, "w", now + 60, now, now
    )
    commit = Commit(run_id, 0, "w", "running", {"saga": "saga.running"}, [], [], now, create=run)
    await store.commit(attrs.evolve(commit, messages=list(batch)))


def in_key_order(published: list[Message]) -> bool:
    """Whether, counting first publishes only, each key's messages went out in order."""
    seen: set[str] = set()
    by_key: dict[str | None, list[int]] = {}
    for message in published:
        if message.id not in seen:
            seen.add(message.id)
            by_key.setdefault(message.key, []).append(message.payload["n"])
    return all(ns == sorted(ns) for ns in by_key.values())


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SagaStore]:
    """An open, empty store (the claim rules themselves are in the store contract tests)."""
    backend: SagaStore = (
        MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "relay.db")
    )
    await backend.open()
    yield backend
    await backend.close()


async def test_relay_publishes_and_marks_sent(store: SagaStore) -> None:
    """Pending messages are published in order and marked sent; a second round finds none."""
    await seed(store, messages(6, keys=2))
    broker, stats = Watched(), OutboxStats()
    relay = Relay(store, broker, stats=stats)
    done = await relay.run_once()
    assert (done.claimed, done.sent, done.failed) == (6, 6, 0)
    assert [m.payload["n"] for m in broker.published if m.key == "k0"] == [0, 2, 4]
    assert {r.status for r in await store.outbox_list()} == {"sent"}
    assert (await relay.run_once()).claimed == 0
    assert stats.relay_sent == 6


async def test_a_failing_message_backs_off_then_is_dead(store: SagaStore) -> None:
    """Each failure pushes the next attempt back; after the last one the message is dead."""
    await seed(store, messages(1, keys=1))
    clock = FakeClock(start=time.time())
    broker, stats = Watched(refuse=lambda m: True), OutboxStats()
    relay = Relay(store, broker, backoff=FAST, clock=clock, stats=stats)
    waits = []
    for _ in range(FAST.attempts):
        assert (await relay.run_once()).failed == 1
        [record] = await store.outbox_list()
        waits.append(record.retry_at - clock.now)
        assert (await relay.run_once()).claimed == 0  # not due yet
        clock.now = record.retry_at
    assert waits[:2] == [1.0, 2.0]
    assert (record.status, record.attempts, record.last_error) == (
        "dead",
        3,
        "BrokerError: refused r1:s:0",
    )
    assert (stats.relay_failed, stats.dead) == (3, 1)


async def test_a_dead_message_holds_its_key_until_it_is_retried(store: SagaStore) -> None:
    """Later messages of a dead message's key wait; other keys flow; retry frees the key."""
    await seed(store, messages(6, keys=2))
    clock = FakeClock(start=time.time())
    broken = {"r1:s:2"}
    broker = Watched(refuse=lambda m: m.id in broken)
    relay = Relay(store, broker, backoff=attrs.evolve(FAST, attempts=1), clock=clock)
    assert (await relay.run_once()).dead == 1
    clock.now += 3600
    await relay.run_once()
    assert [m.payload["n"] for m in broker.published] == [0, 1, 3, 5]
    broken.clear()
    assert await store.outbox_retry(["r1:s:2"], clock.now) == 1
    await relay.run_once()
    assert [m.payload["n"] for m in broker.published if m.key == "k0"] == [0, 2, 4]


async def test_keys_stay_in_order_through_random_failures(store: SagaStore) -> None:
    """With a third of the publishes failing, every message arrives and each key stays in order."""
    await seed(store, messages(60, keys=4))
    clock = FakeClock(start=time.time())
    rng = random.Random(7)
    broker = Watched(refuse=lambda m: rng.random() < 0.33)
    relay = Relay(store, broker, batch=16, backoff=attrs.evolve(FAST, attempts=50), clock=clock)
    for _ in range(500):
        await relay.run_once()
        if not await store.outbox_list(status="pending", limit=1):
            break
        clock.now += 1.0
    assert sorted(m.payload["n"] for m in broker.published) == list(range(60))
    assert in_key_order(broker.published)
    assert not broker.overlaps


async def test_broker_down_then_back_loses_nothing(store: SagaStore) -> None:
    """While the broker is down every attempt fails; once it is back everything goes, in order."""
    await seed(store, messages(20, keys=3))
    clock = FakeClock(start=time.time())
    broker = Watched()
    relay = Relay(store, broker, backoff=attrs.evolve(FAST, attempts=40), clock=clock)
    broker.down()
    for _ in range(5):
        assert (await relay.run_once()).sent == 0
        clock.now += 60
    broker.up()
    for _ in range(20):
        if not (await relay.run_once()).claimed:
            break
    assert sorted(m.payload["n"] for m in broker.published) == list(range(20))
    assert in_key_order(broker.published)


async def test_two_relays_on_postgres_never_publish_one_message_twice(
    request: pytest.FixtureRequest,
) -> None:
    """Two relays, each with its own connections, share the work; no message goes out twice."""
    from test_store_postgres import URL, postgres_store

    from statesaga.store.postgres import PostgresStore

    first = postgres_store(request)
    second = PostgresStore(URL, schema=first.schema)
    await first.open()
    await second.open()
    try:
        await seed(first, messages(200, keys=10))
        broker = Watched(delay=0.002)
        relays = [
            Relay(s, broker, batch=20, owner=name)
            for s, name in ((first, "relay-a"), (second, "relay-b"))
        ]

        async def drain(relay: Relay) -> None:
            while True:
                done = await relay.run_once()
                if not done.claimed and not await first.outbox_list(status="pending", limit=1):
                    return
                await asyncio.sleep(0)  # the other relay holds the rest: let it go on

        async with asyncio.timeout(30):
            await asyncio.gather(*(drain(r) for r in relays))
    finally:
        await second.close()
        await first.close()
    ids = [m.id for m in broker.published]
    assert len(ids) == len(set(ids)) == 200
    assert not broker.overlaps  # never the same message, nor two of one key, at once
    assert in_key_order(broker.published)


async def test_rabbitmq_down_then_back_relay_delivers_everything_in_key_order(
    tmp_path: Path,
) -> None:
    """Real RabbitMQ behind a cut connection: the relay delivers all once it is back."""
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    tag = uuid.uuid4().hex[:10]
    exchange, topic, group = f"statesaga_test_{tag}", f"t{tag}.orders", f"g-{tag}"
    proxy = Proxy(urlsplit(AMQP_URL).port or 5672)
    await proxy.start()
    via_proxy = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    publisher = RabbitMQBroker(via_proxy, exchange=exchange, timeout=1.0)
    consumer = RabbitMQBroker(AMQP_URL, exchange=exchange)
    batch = [attrs.evolve(m, topic=topic) for m in messages(30, keys=3)]
    try:
        async with SQLiteStore(tmp_path / "rabbit.db") as store:
            await consumer.declare(topic, group=group)
            await seed(store, batch)
            clock = FakeClock(start=time.time())
            relay = Relay(
                store,
                publisher,
                batch=10,
                publish_timeout=2.0,
                backoff=attrs.evolve(FAST, attempts=100),
                clock=clock,
            )
            await relay.run_once()  # some go out while the broker is there
            await proxy.stop()
            for _ in range(3):
                assert (await relay.run_once()).sent == 0
                clock.now += 60
            await proxy.start()
            async with asyncio.timeout(20):
                while await store.outbox_list(status="pending", limit=1):
                    if not (await relay.run_once()).sent:
                        await asyncio.sleep(0.2)  # the client is reconnecting
                    clock.now += 60
            received: list[Message] = []
            async with contextlib.aclosing(consumer.consume(topic, group=group)) as deliveries:
                async with asyncio.timeout(10):
                    while len({m.id for m in received}) < len(batch):
                        delivery = await anext(deliveries)
                        received.append(delivery.message)
                        await delivery.ack()
    finally:
        await proxy.stop()
        await publisher.close()
        await consumer.close()
        await remove_rabbitmq(consumer, exchange, topic, group)
    assert sorted({m.payload["n"] for m in received}) == list(range(30))
    assert in_key_order(received)


class FailsToMarkFailed:
    """A store whose first ``outbox_mark_failed`` raises (its connection dropped)."""

    def __init__(self, inner: SagaStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.failures = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def outbox_mark_failed(self, *args: object, **kwargs: object) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("connection lost")
        await self.inner.outbox_mark_failed(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_failing_store_write_does_not_unmark_what_other_keys_sent(
    store: SagaStore,
) -> None:
    """A chain whose store write fails: what the round published is still marked sent."""
    await seed(store, messages(4, keys=4))
    broker = Watched(delay=0.01, refuse=lambda m: m.payload["n"] == 0)
    relay = Relay(FailsToMarkFailed(store), broker)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="connection lost"):
        await relay.run_once()
    assert sorted(m.payload["n"] for m in broker.published) == [1, 2, 3]
    by_n = {r.message.payload["n"]: r.status for r in await store.outbox_list()}
    assert by_n == {0: "pending", 1: "sent", 2: "sent", 3: "sent"}


async def test_the_empty_key_is_a_key(store: SagaStore) -> None:
    """Messages with key "" go out one at a time, in order, like any other key's."""
    await seed(store, [attrs.evolve(m, key="") for m in messages(6, keys=1)])
    concurrent: list[int] = []
    inflight = 0

    class Counting(Watched):
        async def publish(self, message: Message) -> None:
            nonlocal inflight
            inflight += 1
            concurrent.append(inflight)
            try:
                await asyncio.sleep(0.005 * (6 - message.payload["n"]))  # later ones are quicker
                await super().publish(message)
            finally:
                inflight -= 1

    broker = Counting()
    assert (await Relay(store, broker).run_once()).sent == 6
    assert max(concurrent) == 1
    assert [m.payload["n"] for m in broker.published] == list(range(6))


async def test_no_publish_starts_so_late_that_clock_skew_could_end_the_claim(
    store: SagaStore,
) -> None:
    """Within CLOCK_SKEW of the last moment a publish could finish in its claim, none starts."""
    await seed(store, messages(2, keys=1))
    clock = FakeClock(start=time.time())
    claimed_at = clock.now

    class Slow(Watched):
        async def publish(self, message: Message) -> None:
            await super().publish(message)
            # Confirmed 1 s before the last start allowed without any allowance for skew.
            clock.now = claimed_at + 60.0 - 5.0 - 1.0

    broker = Slow()
    done = await Relay(store, broker, lease=60.0, publish_timeout=5.0, clock=clock).run_once()
    assert (done.claimed, done.sent) == (2, 1)
    assert [m.payload["n"] for m in broker.published] == [0]
    [second] = await store.outbox_list(status="pending")
    assert (second.message.payload["n"], second.claim_owner) == (1, None)


async def test_a_damaged_row_is_dead_and_holds_only_its_key(tmp_path: Path) -> None:
    """A row whose payload is not JSON any more is dead-lettered; other keys still flow."""
    import sqlite3

    async with SQLiteStore(tmp_path / "damaged.db") as store:
        await seed(store, messages(6, keys=2))
        with sqlite3.connect(tmp_path / "damaged.db") as conn:
            conn.execute("UPDATE statesaga_outbox SET payload = '{oops' WHERE id = 'r1:s:0'")
        broker = Watched()
        relay = Relay(store, broker)
        done = await relay.run_once()
        assert (done.claimed, done.sent) == (3, 3)
        assert [m.payload["n"] for m in broker.published] == [1, 3, 5]
        assert (await relay.run_once()).claimed == 0  # k0 waits behind its dead head
        with sqlite3.connect(tmp_path / "damaged.db") as conn:
            status, error = conn.execute(
                "SELECT status, last_error FROM statesaga_outbox WHERE id = 'r1:s:0'"
            ).fetchone()
        assert status == "dead"
        assert "not valid JSON" in error
        await store.outbox_purge("dead", before=time.time() + 1)
        await relay.run_once()
        assert [m.payload["n"] for m in broker.published] == [1, 3, 5, 2, 4]


class Closing(MemoryBroker):
    """A memory broker that counts how often it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1


async def test_a_relay_closes_the_broker_it_opened_and_no_other(
    store: SagaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``async with Relay(store, URL)`` closes the broker that URL opened at its end; a broker
    passed as an object is the caller's and stays open."""
    from statesaga.messaging import relay as relay_module

    made: list[Closing] = []

    def from_url(url: str) -> Closing:
        made.append(Closing())
        return made[-1]

    monkeypatch.setattr(relay_module, "broker_from_url", from_url)
    await seed(store, messages(2, keys=1))
    async with Relay(store, "memory://") as relay:
        assert (await relay.run_once()).sent == 2
        assert made[0].closes == 0
    assert made[0].closes == 1
    mine = Closing()
    async with Relay(store, mine) as relay:
        await relay.run_once()
    assert mine.closes == 0
