"""One contract for every broker: memory, RabbitMQ, NATS JetStream and Redis (real servers).

Real-server tests skip when the server is unreachable, except under ``CI=true``, where they fail
(see ``tests/_services.py``). Each test uses its own exchange, topics and groups, removed after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from _services import AMQP_URL, NATS_URL, REDIS_URL, Proxy, free_port, remove_redis, require

from statesaga.messaging import Broker, BrokerError, Delivery, Message
from statesaga.messaging.brokers import MemoryBroker, broker_from_url, check_broker_url
from statesaga.messaging.brokers.nats import NatsBroker
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
from statesaga.messaging.brokers.redis import RedisBroker

KINDS = ["memory", "rabbitmq", "nats", "redis"]
WAIT = 10.0  # seconds a test waits for a delivery before failing


class Harness:
    """Builds brokers of one kind with names unique to the test, and removes what they made."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tag = uuid.uuid4().hex[:10]
        self.memory = MemoryBroker()
        self.made: list[Broker] = []
        self.groups: list[tuple[str, str]] = []

    def topic(self, name: str = "events") -> str:
        """A topic (and, on NATS and Redis, streams) no other test uses."""
        return f"t{self.tag}.{name}"

    def group(self, name: str = "g") -> str:
        return f"{name}-{self.tag}"

    def broker(self, url: str | None = None, *, timeout: float = 5.0) -> Broker:
        """A broker of this kind; ``url`` points a real one elsewhere (a proxy, a dead port)."""
        broker: Broker
        if self.kind == "memory":
            broker = self.memory
        elif self.kind == "rabbitmq":
            broker = RabbitMQBroker(
                url or AMQP_URL, exchange=f"statesaga_test_{self.tag}", timeout=timeout
            )
        elif self.kind == "redis":
            broker = RedisBroker(
                url or REDIS_URL,
                stream_prefix=f"test_{self.tag}",
                timeout=timeout,
                claim_after=2.0,
                poll_interval=0.02,
            )
        else:
            broker = NatsBroker(
                url or NATS_URL, stream_prefix=f"test_{self.tag}", timeout=timeout, ack_wait=2.0
            )
        self.made.append(broker)
        return broker

    async def declare(self, broker: Broker, topic: str, group: str) -> None:
        self.groups.append((topic, group))
        await broker.declare(topic, group=group)

    async def cleanup(self) -> None:
        for broker in self.made:
            with contextlib.suppress(Exception):
                await broker.close()
        if self.kind == "rabbitmq":
            await _remove_rabbitmq(self.tag, self.groups)
        elif self.kind == "nats":
            await _remove_nats(self.tag)
        elif self.kind == "redis":
            await remove_redis(f"test_{self.tag}")


async def _remove_rabbitmq(tag: str, groups: list[tuple[str, str]]) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        probe = RabbitMQBroker(exchange=f"statesaga_test_{tag}")
        for topic, group in groups:
            for shard in range(probe.shards):
                await channel.queue_delete(probe.queue_name(topic, group, shard))
        await channel.exchange_delete(f"statesaga_test_{tag}")


async def _remove_nats(tag: str) -> None:
    import nats

    client = await nats.connect(NATS_URL)
    try:
        js = client.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(f"test_{tag}_"):
                await js.delete_stream(info.config.name)
    finally:
        await client.close()


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    kind: str = request.param
    if kind == "rabbitmq":
        require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    elif kind == "nats":
        require(NATS_URL, "NATS", "STATESAGA_TEST_NATS")
    elif kind == "redis":
        require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
    h = Harness(kind)
    try:
        yield h
    finally:
        await h.cleanup()


def message(topic: str, n: int, key: str | None = None, **fields: Any) -> Message:
    return Message(id=f"m{n}", topic=topic, payload={"n": n}, key=key, **fields)


async def take(deliveries: AsyncIterator[Delivery], count: int) -> list[Delivery]:
    """The next ``count`` deliveries, failing if they do not come within ``WAIT`` seconds."""
    out = []
    async with asyncio.timeout(WAIT):
        for _ in range(count):
            out.append(await anext(deliveries))
    return out


async def apply_all(
    deliveries: AsyncIterator[Delivery],
    count: int,
    settle: Callable[[Delivery], Awaitable[bool]] | None = None,
) -> list[Message]:
    """Handle deliveries until ``count`` distinct messages were handled, in handling order.

    ``settle`` may refuse one (returns False: it is nacked). An ack that fails still counts as
    handled, as with an inbox the handler's work is committed before the ack; the message may
    come again, and is listed again.
    """
    handled: list[Message] = []
    async with asyncio.timeout(WAIT):
        while len({m.id for m in handled}) < count:
            delivery = await anext(deliveries)
            if settle is None or await settle(delivery):
                handled.append(delivery.message)
                with contextlib.suppress(BrokerError):
                    await delivery.ack()
            else:
                await delivery.nack()
    return handled


def first_seen(messages: list[Message]) -> list[Message]:
    """``messages`` without repeats, each where it first appeared."""
    seen: set[str] = set()
    return [m for m in messages if not (m.id in seen or seen.add(m.id))]  # type: ignore[func-returns-value]


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """The port of a server that accepts connections and never says a word."""
    writers: list[asyncio.StreamWriter] = []  # held: from 3.13 a collected writer hangs up

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()


# -- the contract ------------------------------------------------------------------------------


async def test_a_published_message_arrives_with_every_field(harness: Harness) -> None:
    """Publish, then consume: id, topic, payload, key, headers and origin come back unchanged."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    await harness.declare(broker, topic, group)
    sent = Message(
        id="run-1:pay:0",
        topic=topic,
        payload={"amount": 12.5, "items": ["a", "é"], "ok": True},
        key="order-1",
        headers={"trace": "abc"},
        saga_id="run-1",
        step="pay",
        created_at=1_700_000_000.25,
    )
    await broker.publish(sent)
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        (delivery,) = await take(deliveries, 1)
        assert delivery.message == sent
        assert not delivery.redelivered
        await delivery.ack()


async def test_async_with_connects_the_broker_and_closes_it(harness: Harness) -> None:
    """``async with broker:`` connects it on entry and closes it at the end: nothing of its
    connection is left running."""
    topic, group = harness.topic(), harness.group()
    before = asyncio.all_tasks()
    async with harness.broker() as broker:
        await harness.declare(broker, topic, group)
        await broker.publish(message(topic, 1))
    await asyncio.sleep(0.2)  # a closing client's own tasks wind down
    assert asyncio.all_tasks() - before == set()
    if harness.kind == "memory":
        harness.memory.down()
        with pytest.raises(BrokerError, match="down"):
            async with harness.broker():
                pass  # never reached: entering connects, which fails


async def test_an_acked_message_is_not_delivered_again(harness: Harness) -> None:
    """After an ack, a new consumer of the group starts with the next message."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    await harness.declare(broker, topic, group)
    await broker.publish(message(topic, 1, key="k"))
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        (first,) = await take(deliveries, 1)
        await first.ack()
    await broker.publish(message(topic, 2, key="k"))
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        (second,) = await take(deliveries, 1)
        assert second.message.id == "m2"
        await second.ack()


async def test_a_nacked_message_is_delivered_again(harness: Harness) -> None:
    """A nack returns the message; it comes again, marked redelivered."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    await harness.declare(broker, topic, group)
    await broker.publish(message(topic, 1, key="k"))
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        (first,) = await take(deliveries, 1)
        await first.nack()
        (again,) = await take(deliveries, 1)
        assert again.message == first.message
        assert again.redelivered
        await again.ack()


async def test_settling_twice_changes_nothing(harness: Harness) -> None:
    """A second ack (or a nack after an ack) is ignored: the message is not delivered again."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    await harness.declare(broker, topic, group)
    await broker.publish(message(topic, 1, key="k"))
    await broker.publish(message(topic, 2, key="k"))
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        (first,) = await take(deliveries, 1)
        await first.ack()
        await first.ack()
        await first.nack()
        (second,) = await take(deliveries, 1)
        assert second.message.id == "m2"
        await second.ack()


async def test_an_unsettled_delivery_returns_when_its_consumer_stops(harness: Harness) -> None:
    """A consumer that stops without settling gives its delivery back to the group."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    await harness.declare(broker, topic, group)
    await broker.publish(message(topic, 1, key="k"))
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        await take(deliveries, 1)
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        (again,) = await take(deliveries, 1)
        assert again.message.id == "m1"
        await again.ack()


async def test_each_key_is_delivered_in_order(harness: Harness) -> None:
    """Messages of one key arrive in publication order, keys interleaved."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    await harness.declare(broker, topic, group)
    keys = ["a", "b", "c", "d", "e"]
    for n in range(30):
        await broker.publish(message(topic, n, key=keys[n % len(keys)]))
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        got = await apply_all(deliveries, 30)
    for key in keys:
        ns = [m.payload["n"] for m in got if m.key == key]
        assert ns == sorted(ns)
        assert len(ns) == 6


async def test_a_nacked_message_comes_before_later_ones_of_its_key(harness: Harness) -> None:
    """Nacking every first delivery still yields each key's messages in order."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    await harness.declare(broker, topic, group)
    for n in range(12):
        await broker.publish(message(topic, n, key=f"k{n % 3}"))

    async def first_time_no(delivery: Delivery) -> bool:
        return delivery.redelivered

    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        got = await apply_all(deliveries, 12, first_time_no)
    for key in ("k0", "k1", "k2"):
        ns = [m.payload["n"] for m in got if m.key == key]
        assert ns == sorted(ns)


async def test_two_consumers_of_one_group_keep_each_key_in_order(harness: Harness) -> None:
    """Two consumers sharing a group: every message once, each key in order."""
    broker, topic, group = harness.broker(), harness.topic(), harness.group()
    other = harness.broker()
    await harness.declare(broker, topic, group)
    for n in range(24):
        await broker.publish(message(topic, n, key=f"k{n % 4}"))
    seen: list[tuple[float, Message]] = []
    done = asyncio.Event()

    async def run(b: Broker) -> None:
        async with contextlib.aclosing(b.consume(topic, group=group)) as deliveries:
            async for delivery in deliveries:
                seen.append((time.monotonic(), delivery.message))
                await asyncio.sleep(0.001)
                await delivery.ack()
                if len(seen) >= 24:
                    done.set()

    tasks = [asyncio.create_task(run(b)) for b in (broker, other)]
    try:
        async with asyncio.timeout(WAIT):
            await done.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    got = [m for _, m in sorted(seen, key=lambda pair: pair[0])]
    assert sorted(m.payload["n"] for m in got) == list(range(24))
    for key in ("k0", "k1", "k2", "k3"):
        ns = [m.payload["n"] for m in got if m.key == key]
        assert ns == sorted(ns)


async def test_every_group_gets_every_message(harness: Harness) -> None:
    """Two groups on one topic each receive all of its messages."""
    broker, topic = harness.broker(), harness.topic()
    groups = [harness.group("x"), harness.group("y")]
    for group in groups:
        await harness.declare(broker, topic, group)
    for n in range(5):
        await broker.publish(message(topic, n, key="k"))
    for group in groups:
        async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
            got = await apply_all(deliveries, 5)
        assert [m.payload["n"] for m in got] == list(range(5))


async def test_publishing_to_an_unreachable_broker_raises_quickly(harness: Harness) -> None:
    """No broker at the address: publish raises BrokerError within the timeout, never hangs."""
    if harness.kind == "memory":
        broker = harness.broker()
        harness.memory.down()
    else:
        scheme = {"rabbitmq": "amqp://guest:guest@", "nats": "nats://", "redis": "redis://"}
        broker = harness.broker(f"{scheme[harness.kind]}127.0.0.1:{free_port()}/", timeout=1.0)
    began = time.monotonic()
    with pytest.raises(BrokerError, match=r"127\.0\.0\.1|down"):
        await broker.publish(message(harness.topic(), 1))
    assert time.monotonic() - began < 3.0


async def test_nothing_is_lost_while_the_broker_is_down(harness: Harness) -> None:
    """Broker down, then back: publishes fail meanwhile, then everything arrives, keys in order."""
    proxy = None
    if harness.kind == "memory":
        broker = harness.broker()

        async def cut() -> None:
            harness.memory.down()

        async def restore() -> None:
            harness.memory.up()
    else:
        real = {"rabbitmq": AMQP_URL, "nats": NATS_URL, "redis": REDIS_URL}[harness.kind]
        proxy = Proxy(urlsplit(real).port or 0)
        await proxy.start()
        creds = "guest:guest@" if harness.kind == "rabbitmq" else ""
        scheme = urlsplit(real).scheme
        broker = harness.broker(f"{scheme}://{creds}127.0.0.1:{proxy.port}/", timeout=1.0)
        cut, restore = proxy.stop, proxy.start
    topic, group = harness.topic(), harness.group()
    try:
        await harness.declare(broker, topic, group)
        for n in range(6):
            await broker.publish(message(topic, n, key=f"k{n % 2}"))
        async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
            got = await apply_all(deliveries, 2)
            held = (await take(deliveries, 1))[0]  # being handled when the broker goes away
            got.append(held.message)
            await cut()
            with pytest.raises(BrokerError):
                await broker.publish(message(topic, 6, key="k0"))
            with pytest.raises(BrokerError):
                await held.ack()
            await restore()
            async with asyncio.timeout(WAIT):  # the client reconnects by itself
                while True:
                    try:  # sent again, as an outbox relay would, with the same id
                        await broker.publish(message(topic, 6, key="k0"))
                        break
                    except BrokerError:
                        await asyncio.sleep(0.2)
            # The held message may come again (its ack failed), or not (the ack had landed).
            while len({m.id for m in got}) < 7:
                got += await apply_all(deliveries, 1)
    finally:
        if proxy is not None:
            await proxy.stop()
    once = first_seen(got)
    assert sorted(m.id for m in once) == [f"m{n}" for n in range(7)]
    for key in ("k0", "k1"):
        ns = [m.payload["n"] for m in once if m.key == key]
        assert ns == sorted(ns)


# -- per-broker details --------------------------------------------------------------------------


async def test_rabbitmq_refuses_a_message_no_group_would_receive() -> None:
    """RabbitMQ: publishing to a topic no group was declared on raises instead of dropping it."""
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    h = Harness("rabbitmq")
    try:
        with pytest.raises(BrokerError, match="no queue is bound"):
            await h.broker().publish(message(h.topic(), 1))
    finally:
        await h.cleanup()


async def test_rabbitmq_closes_what_a_failed_connect_opened() -> None:
    """A connect that fails after the connection opened (exchange of another type) leaks nothing."""
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    import aio_pika

    h = Harness("rabbitmq")
    name = f"statesaga_test_{h.tag}"
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT)
        try:
            before = asyncio.all_tasks()
            with pytest.raises(BrokerError, match="inequivalent arg 'type'"):
                await h.broker().connect()
            await asyncio.sleep(0.2)
            assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
        finally:
            await channel.exchange_delete(name)


async def test_rabbitmq_leaves_nothing_running_after_an_unanswered_connect() -> None:
    """A server that accepts but never speaks AMQP: BrokerError in time, no reconnect loop left."""
    async with silent_server() as port:
        broker = RabbitMQBroker(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=0.5)
        before = asyncio.all_tasks()
        began = time.monotonic()
        with pytest.raises(BrokerError, match=r"no answer within 0\.5 s"):
            await broker.publish(message("orders", 1))
        assert time.monotonic() - began < 2.0
        await asyncio.sleep(0.2)
        assert asyncio.all_tasks() - before == set()


async def test_rabbitmq_raises_when_a_queue_refuses_the_message() -> None:
    """RabbitMQ nacks a message a full queue rejects: publish raises, it does not return."""
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    import aio_pika

    h = Harness("rabbitmq")
    broker, topic = h.broker(), h.topic()
    assert isinstance(broker, RabbitMQBroker)
    full = f"statesaga_test_{h.tag}_full"
    try:
        await broker.connect()
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(  # exclusive: gone with its connection
                full,
                exclusive=True,
                arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
            )
            for shard in range(broker.shards):
                await queue.bind(broker.exchange_name, routing_key=f"{topic}.{shard}")
            with pytest.raises(BrokerError, match="was not confirmed"):
                await broker.publish(message(topic, 1, key="k"))
    finally:
        await h.cleanup()


async def test_nats_raises_when_the_stream_refuses_the_message() -> None:
    """A stream of the user's that holds the subjects and refuses more: publish raises."""
    require(NATS_URL, "NATS", "STATESAGA_TEST_NATS")
    import nats
    import nats.js.api

    h = Harness("nats")
    broker, topic = h.broker(), h.topic()
    client = await nats.connect(NATS_URL)
    try:
        js = client.jetstream()
        await js.add_stream(
            name=f"test_{h.tag}_mine",
            subjects=[f"{topic.split('.')[0]}.>"],
            max_msgs=1,
            discard=nats.js.api.DiscardPolicy.NEW,
        )
        await broker.publish(message(topic, 1, key="k"))
        with pytest.raises(BrokerError, match="was not stored"):
            await broker.publish(message(topic, 2, key="k"))
    finally:
        await client.close()
        await h.cleanup()


@pytest.mark.parametrize("kind", ["rabbitmq", "nats", "redis"])
async def test_concurrent_publishes_to_a_silent_broker_each_fail_within_the_timeout(
    kind: str,
) -> None:
    """Publishes waiting on one unanswered connect all raise within ``timeout``, not in turn."""
    async with silent_server() as port:
        broker: Broker
        if kind == "rabbitmq":
            broker = RabbitMQBroker(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=0.5)
        elif kind == "redis":
            broker = RedisBroker(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        else:
            broker = NatsBroker(f"nats://127.0.0.1:{port}", timeout=0.5)
        began = time.monotonic()

        async def publish(n: int) -> float:
            with pytest.raises(BrokerError):
                await broker.publish(message("orders", n))
            return time.monotonic() - began

        try:
            took = await asyncio.gather(*(publish(n) for n in range(4)))
            assert max(took) < 1.5, took
        finally:
            await broker.close()


async def test_nats_does_not_let_a_message_header_steer_jetstream() -> None:
    """A message's own Nats-* header is not sent: it cannot make JetStream refuse the message."""
    require(NATS_URL, "NATS", "STATESAGA_TEST_NATS")
    h = Harness("nats")
    broker, topic, group = h.broker(), h.topic(), h.group()
    try:
        await h.declare(broker, topic, group)
        sent = message(topic, 1, key="k", headers={"Nats-Expected-Last-Sequence": "999", "a": "b"})
        await broker.publish(sent)
        async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
            (delivery,) = await take(deliveries, 1)
            assert delivery.message.headers == {"a": "b"}
            await delivery.ack()
    finally:
        await h.cleanup()


def test_broker_urls_pick_the_broker_and_its_shards() -> None:
    """memory://, amqp://, nats:// and redis:// build the right broker; ?shards= is read."""
    assert isinstance(broker_from_url("memory://"), MemoryBroker)
    rabbit = broker_from_url("amqp://guest:guest@127.0.0.1:5672/?shards=8")
    assert isinstance(rabbit, RabbitMQBroker)
    assert rabbit.shards == 8
    assert "shards" not in rabbit.url
    nats_broker = broker_from_url("nats://127.0.0.1:4222")
    assert isinstance(nats_broker, NatsBroker)
    assert nats_broker.shards == 4
    redis_broker = broker_from_url("redis://127.0.0.1:6379/2?shards=3")
    assert isinstance(redis_broker, RedisBroker)
    assert (redis_broker.shards, redis_broker.db) == (3, 2)
    assert isinstance(broker_from_url("rediss://h:6380/0"), RedisBroker)


def test_bad_broker_urls_say_what_is_understood() -> None:
    """An unknown scheme lists the known ones; a bad shard count is refused."""
    with pytest.raises(BrokerError, match=r"amqp://.*nats://.*redis://.*rediss://"):
        broker_from_url("kafka://h:9092")
    with pytest.raises(BrokerError, match="positive integer"):
        broker_from_url("nats://127.0.0.1:4222?shards=0")


@pytest.mark.parametrize(
    "url",
    [
        "",
        " ",
        "kafka://h:9092",
        "nats://h:4222?shards=0",
        "memory://?shards=x",
        "redis://127.0.0.1:6379/abc",
    ],
)
def test_check_broker_url_refuses_what_broker_from_url_refuses(url: str) -> None:
    """check_broker_url raises the very error broker_from_url would, for every scheme."""
    with pytest.raises(BrokerError) as built:
        broker_from_url(url)
    with pytest.raises(BrokerError) as checked:
        check_broker_url(url)
    assert str(checked.value) == str(built.value)


def test_check_broker_url_takes_usable_urls() -> None:
    """Usable URLs pass the check, nothing built or connected (nothing listens on port 1)."""
    for url in ("memory://", "amqp://guest:guest@127.0.0.1:1/?shards=8", "tls://127.0.0.1:1"):
        check_broker_url(url)


def test_broker_urls_pass_other_query_values_through_unchanged() -> None:
    """?shards= is taken out; the other values reach the client still encoded."""
    rabbit = broker_from_url("amqp://guest:guest@h/?name=a%26b%3Dc&shards=2")
    assert isinstance(rabbit, RabbitMQBroker)
    assert rabbit.url == "amqp://guest:guest@h/?name=a%26b%3Dc"


def test_broker_urls_are_checked_scheme_first_and_shards_strictly() -> None:
    """An unknown scheme is named even beside a bad shard count; '4_0' is not a shard count."""
    with pytest.raises(BrokerError, match="unknown broker URL scheme 'kafka'"):
        broker_from_url("kafka://h:9092?shards=x")
    for bad in ("4_0", "+4", " 4", "-1"):
        with pytest.raises(BrokerError, match="positive integer"):
            broker_from_url(f"nats://127.0.0.1:4222?shards={bad}")


async def test_nats_errors_hide_tokens_and_every_password_of_a_cluster() -> None:
    """A NATS token, and each password of a comma-separated cluster URL, stay out of errors."""
    token = NatsBroker(f"nats://s3cr3t-token@127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(BrokerError, match="cannot connect") as caught:
        await token.connect()
    assert "s3cr3t-token" not in str(caught.value)
    cluster = NatsBroker(
        f"nats://u:first-pw@127.0.0.1:{free_port()},nats://u:second-pw@127.0.0.1:{free_port()}",
        timeout=0.5,
    )
    with pytest.raises(BrokerError, match="cannot connect") as caught:
        await cluster.connect()
    assert "first-pw" not in str(caught.value)
    assert "second-pw" not in str(caught.value)
    with pytest.raises(BrokerError, match="unknown broker URL scheme") as caught:
        broker_from_url("natz://s3cr3t-token@h:4222")
    assert "s3cr3t-token" not in str(caught.value)


async def test_bad_topics_and_payloads_are_refused_before_sending() -> None:
    """A wildcard topic or a payload that is not JSON raises BrokerError naming the problem."""
    broker = RabbitMQBroker(f"amqp://guest:guest@127.0.0.1:{free_port()}/", timeout=1.0)
    with pytest.raises(BrokerError, match="not a usable topic"):
        await broker.publish(Message(id="1", topic="orders.*", payload=None))
    with pytest.raises(BrokerError, match="not JSON"):
        await broker.publish(Message(id="1", topic="orders", payload={1, 2}))


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


async def test_rabbitmq_queues_are_classic_whatever_the_vhost_default() -> None:
    """A vhost defaulting to quorum queues still gets classic ones: no delivery limit drops a
    message whose handler keeps failing."""
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        message = "needs the server's rabbitmqctl, as root, to make a vhost for this test"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    vhost = f"statesaga_test_{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost, "--default-queue-type", "quorum")
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        base = AMQP_URL.rstrip("/")
        broker = RabbitMQBroker(f"{base}/{vhost}", shards=1)
        try:
            await broker.declare("orders", group="billing")
        finally:
            await broker.close()
        listing = _rabbitmqctl("list_queues", "-p", vhost, "name", "type")
        assert "statesaga.billing.orders.0\tclassic" in listing
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.mark.parametrize("kind", ["rabbitmq", "nats", "redis"])
async def test_a_publisher_with_more_shards_than_a_group_is_refused(kind: str) -> None:
    """Publishers and consumers that disagree on ``shards``: a message on a shard the group was
    not declared with raises, rather than being kept where no consumer reads it."""
    h = Harness(kind)
    if kind == "rabbitmq":
        require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    elif kind == "nats":
        require(NATS_URL, "NATS", "STATESAGA_TEST_NATS")
    else:
        require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
    topic, group = h.topic(), h.group()
    try:
        consumer, publisher = h.broker(), h.broker()
        assert isinstance(consumer, RabbitMQBroker | NatsBroker | RedisBroker)
        assert isinstance(publisher, RabbitMQBroker | NatsBroker | RedisBroker)
        consumer.shards, publisher.shards = 2, 8
        await h.declare(consumer, topic, group)
        from statesaga.messaging.brokers import _wire

        keys = [f"k{i}" for i in range(40)]
        inside = next(k for k in keys if _wire.shard(message(topic, 0, key=k), 8) < 2)
        outside = next(k for k in keys if _wire.shard(message(topic, 0, key=k), 8) >= 2)
        await publisher.publish(message(topic, 1, key=inside))
        with pytest.raises(BrokerError, match=r"shard|no queue is bound"):
            await publisher.publish(message(topic, 2, key=outside))
    finally:
        await h.cleanup()


@pytest.mark.parametrize(
    ("url", "package"),
    [("amqp://guest:guest@h/", "aio_pika"), ("nats://h:4222", "nats"), ("redis://h/0", "redis")],
)
def test_a_broker_whose_client_is_not_installed_is_refused_up_front(
    url: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the ``messaging`` extra a broker URL is refused when it is checked (a command's
    start), naming the install, rather than every publish failing as an outage."""
    import statesaga.messaging.brokers as brokers

    real = brokers.find_spec
    monkeypatch.setattr(brokers, "find_spec", lambda name: None if name == package else real(name))
    with pytest.raises(BrokerError, match=r"not installed: pip install 'statesaga\[messaging\]'"):
        check_broker_url(url)
    check_broker_url("memory://")  # needs nothing
