"""The Redis Streams broker's own behaviour, against a real Redis (6.2 or later).

The shared broker contract runs in ``test_brokers.py``; these tests cover what only Redis does:
claiming what a dead consumer held, one pending entry per shard, trimming by age, and its URLs
and errors. They skip when Redis is unreachable, except under ``CI=true`` (see ``_services``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _services import REDIS_URL, free_port, remove_redis, require

from statesaga.messaging import BrokerError, Delivery, Message
from statesaga.messaging.brokers import broker_from_url
from statesaga.messaging.brokers.redis import RedisBroker

WAIT = 10.0


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A stream prefix no other test uses; its streams are deleted afterwards."""
    require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
    name = f"test_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        await remove_redis(name)


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    """A plain redis-py client on the test server, to look at what the broker wrote."""
    require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
    import redis.asyncio

    plain = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield plain
    finally:
        await plain.aclose()


def message(topic: str, n: int, key: str | None = None) -> Message:
    return Message(id=f"m{n}", topic=topic, payload={"n": n}, key=key)


def broker(prefix: str, **options: Any) -> RedisBroker:
    options.setdefault("poll_interval", 0.02)
    return RedisBroker(REDIS_URL, stream_prefix=prefix, **options)


async def take(deliveries: AsyncIterator[Delivery], within: float = WAIT) -> Delivery:
    async with asyncio.timeout(within):
        return await anext(deliveries)


CONSUMER_THAT_DIES = """
import asyncio, sys
from statesaga.messaging.brokers.redis import RedisBroker

async def main() -> None:
    broker = RedisBroker(sys.argv[1], stream_prefix=sys.argv[2], claim_after=float(sys.argv[5]),
                         poll_interval=0.02)
    deliveries = broker.consume(sys.argv[3], group=sys.argv[4])
    delivery = await anext(deliveries)
    print(delivery.message.id, flush=True)
    await asyncio.sleep(3600)  # holding it, unacked, until killed

asyncio.run(main())
"""


async def test_what_a_killed_consumer_held_is_claimed_after_claim_after(prefix: str) -> None:
    """A consumer SIGKILLed while holding a message: another gets it only after claim_after."""
    claim_after = 1.5
    owner = broker(prefix, claim_after=claim_after)
    topic, group = "orders.paid", "billing"
    try:
        await owner.declare(topic, group=group)
        await owner.publish(message(topic, 1, key="k"))
        argv = [sys.executable, "-c", CONSUMER_THAT_DIES, REDIS_URL, prefix, topic, group]
        child = subprocess.Popen(  # noqa: ASYNC220 (started once; read in a thread)
            [*argv, str(claim_after)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), WAIT)
            assert line.strip() == "m1"
            await asyncio.sleep(claim_after)  # it is being refreshed: nobody else may take it
            os.kill(child.pid, signal.SIGKILL)
            killed = time.monotonic()
        finally:
            child.kill()
            child.wait()
        async with contextlib.aclosing(owner.consume(topic, group=group)) as deliveries:
            delivery = await take(deliveries)
            waited = time.monotonic() - killed
            assert delivery.message.id == "m1"
            assert delivery.redelivered
            await delivery.ack()
        # Its last refresh was at most claim_after / 3 before the kill.
        assert claim_after * 2 / 3 - 0.1 <= waited <= claim_after + 2.0
    finally:
        await owner.close()


async def test_a_held_message_is_not_claimed_while_its_handler_runs(prefix: str) -> None:
    """Held for three times claim_after: the holder refreshes it; another consumer waits."""
    first, second = broker(prefix, claim_after=0.6), broker(prefix, claim_after=0.6)
    topic, group = "orders.paid", "billing"
    try:
        await first.declare(topic, group=group)
        await first.publish(message(topic, 1, key="k"))
        async with (
            contextlib.aclosing(first.consume(topic, group=group)) as held,
            contextlib.aclosing(second.consume(topic, group=group)) as waiting,
        ):
            delivery = await take(held)
            with pytest.raises(TimeoutError):
                await take(waiting, within=1.8)
            await delivery.ack()
    finally:
        await first.close()
        await second.close()


async def test_each_key_stays_in_one_shard_and_a_shard_holds_one_message_at_a_time(
    prefix: str, client: Any
) -> None:
    """Keys land in stream crc32(key) % shards; two consumers never hold two of one shard."""
    shards, topic, group = 3, "orders.paid", "billing"
    a, b = broker(prefix, shards=shards), broker(prefix, shards=shards)
    keys = [f"key-{n}" for n in range(7)]
    try:
        await a.declare(topic, group=group)
        for n in range(42):
            await a.publish(message(topic, n, key=keys[n % len(keys)]))
        for shard in range(shards):
            entries = await client.xrange(a.stream_name(topic, shard))
            found = {fields[b"statesaga-key"].decode() for _, fields in entries}
            assert found == {k for k in keys if zlib.crc32(k.encode()) % shards == shard}
        holding: dict[int, str] = {}
        handled: list[Message] = []
        overlaps: list[str] = []
        done = asyncio.Event()

        async def run(consumer: RedisBroker) -> None:
            async with contextlib.aclosing(consumer.consume(topic, group=group)) as deliveries:
                async for delivery in deliveries:
                    shard = zlib.crc32((delivery.message.key or "").encode()) % shards
                    if shard in holding:
                        overlaps.append(f"{delivery.message.id} beside {holding[shard]}")
                    holding[shard] = delivery.message.id
                    await asyncio.sleep(0.005)
                    handled.append(delivery.message)
                    del holding[shard]
                    await delivery.ack()
                    if len(handled) >= 42:
                        done.set()

        tasks = [asyncio.create_task(run(consumer)) for consumer in (a, b)]
        try:
            async with asyncio.timeout(WAIT):
                await done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert overlaps == []
        assert sorted(m.payload["n"] for m in handled) == list(range(42))
        for key in keys:
            ns = [m.payload["n"] for m in handled if m.key == key]
            assert ns == sorted(ns)
    finally:
        await a.close()
        await b.close()


async def test_entries_older_than_max_age_are_trimmed(prefix: str, client: Any) -> None:
    """Adding a message drops its stream's entries older than max_age; a late group misses them."""
    old = broker(prefix, shards=1, max_age=0.5)
    topic = "orders.paid"
    stream = old.stream_name(topic, 0)
    try:
        for n in range(3):
            await old.publish(message(topic, n))
        assert await client.xlen(stream) == 3
        await asyncio.sleep(0.7)
        await old.publish(message(topic, 3))
        assert await client.xlen(stream) == 1
        async with contextlib.aclosing(old.consume(topic, group="late")) as deliveries:
            delivery = await take(deliveries)
            assert delivery.message.id == "m3"
            await delivery.ack()
    finally:
        await old.close()


async def test_without_max_age_nothing_is_trimmed(prefix: str, client: Any) -> None:
    """max_age=None keeps every entry, however old."""
    keep = broker(prefix, shards=1, max_age=None)
    try:
        await keep.publish(message("orders", 1))
        await asyncio.sleep(0.3)
        await keep.publish(message("orders", 2))
        assert await client.xlen(keep.stream_name("orders", 0)) == 2
    finally:
        await keep.close()


async def test_an_entry_written_by_another_program_is_delivered(prefix: str, client: Any) -> None:
    """No statesaga fields: the id is the stream and entry id, the fields arrive as headers."""
    reader = broker(prefix, shards=1)
    try:
        await reader.declare("orders", group="g")
        stream = reader.stream_name("orders", 0)
        entry = (await client.xadd(stream, {"body": "not json", "source": "legacy"})).decode()
        async with contextlib.aclosing(reader.consume("orders", group="g")) as deliveries:
            delivery = await take(deliveries)
            assert delivery.message.id == f"{stream}:{entry}"
            assert delivery.message.payload == "not json"
            assert delivery.message.headers == {"source": "legacy"}
            await delivery.ack()
    finally:
        await reader.close()


async def test_a_message_header_named_body_does_not_replace_the_payload(prefix: str) -> None:
    """The payload's field is ``body``: a header of that name is not sent."""
    b = broker(prefix, shards=1)
    try:
        await b.declare("orders", group="g")
        await b.publish(Message(id="m1", topic="orders", payload=[1], headers={"body": "x"}))
        async with contextlib.aclosing(b.consume("orders", group="g")) as deliveries:
            delivery = await take(deliveries)
            assert (delivery.message.payload, delivery.message.headers) == ([1], {})
            await delivery.ack()
    finally:
        await b.close()


async def test_stopped_consumers_that_hold_nothing_are_forgotten(prefix: str, client: Any) -> None:
    """Starting to consume drops consumers idle past claim_after that hold nothing, only those."""
    b = broker(prefix, shards=1, claim_after=0.3)
    stream = b.stream_name("orders", 0)
    try:
        await b.declare("orders", group="g")
        await b.publish(message("orders", 1))
        await client.xreadgroup("g", "holds-one", {stream: ">"}, count=1)
        await client.execute_command("XGROUP", "CREATECONSUMER", stream, "g", "holds-nothing")
        await asyncio.sleep(0.4)
        async with contextlib.aclosing(b.consume("orders", group="g")) as deliveries:
            delivery = await take(deliveries)  # claimed from the stopped one
            assert delivery.message.id == "m1"
            names = {c["name"] for c in await client.xinfo_consumers(stream, "g")}
            assert b"holds-one" in names  # it held m1 when consuming started
            assert b"holds-nothing" not in names
            await delivery.ack()
    finally:
        await b.close()


# -- URLs and errors ----------------------------------------------------------------------------


def test_redis_urls_choose_the_database_shards_and_seconds() -> None:
    """redis:// and rediss:// give a RedisBroker; db, shards, claim_after and max_age are read."""
    made = broker_from_url("redis://:pw@h:6379/3?shards=2&claim_after=12.5&max_age=60")
    assert isinstance(made, RedisBroker)
    assert (made.db, made.shards, made.claim_after, made.max_age) == (3, 2, 12.5, 60.0)
    assert made.url == "redis://:pw@h:6379/3"
    tls = broker_from_url("rediss://h:6380")
    assert isinstance(tls, RedisBroker)
    assert (tls.db, tls.claim_after, tls.max_age) == (0, 30.0, 7 * 86400.0)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://:s3cret@h:6379/orders", r"database 'orders' .* is not a number"),
        ("redis://:s3cret@h:6379/-1", r"database '-1' .* is not a number"),
        ("redis://:s3cret@h/0?claim_after=soon", r"claim_after='soon' .* positive number"),
        ("redis://:s3cret@h/0?max_age=0", r"max_age='0' .* positive number"),
        ("redis://:s3cret@h/0?shards=0", "positive integer"),
    ],
)
def test_bad_redis_urls_say_what_is_wrong_without_the_password(url: str, says: str) -> None:
    """A database that is not a number, or bad seconds or shards: BrokerError, password hidden."""
    with pytest.raises(BrokerError, match=says) as caught:
        broker_from_url(url)
    assert "s3cret" not in str(caught.value)


def test_bad_options_are_refused_when_the_broker_is_made() -> None:
    """A negative claim_after or a non-Redis URL is refused by the class itself."""
    with pytest.raises(BrokerError, match="claim_after must be a positive number"):
        RedisBroker(claim_after=-1)
    with pytest.raises(BrokerError, match="not a Redis URL"):
        RedisBroker("amqp://guest:s3cret@h/")


async def test_a_database_the_server_lacks_is_a_clear_error() -> None:
    """A database number past the server's count fails at connect, naming the problem."""
    require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
    base = REDIS_URL.rsplit("/", 1)[0]
    b = RedisBroker(f"{base}/9999", timeout=2.0)
    with pytest.raises(BrokerError, match=r"cannot connect to Redis at .*/9999: .*DB index"):
        await b.connect()
    await b.close()


async def test_a_refused_connection_is_a_clear_error_without_the_password() -> None:
    """Nothing listens: BrokerError at once, naming the address, the password hidden."""
    port = free_port()
    b = RedisBroker(f"redis://user:s3cret@127.0.0.1:{port}/0", timeout=2.0)
    began = time.monotonic()
    with pytest.raises(
        BrokerError, match=f"cannot connect to Redis at .*127.0.0.1:{port}"
    ) as caught:
        await b.publish(message("orders", 1))
    assert time.monotonic() - began < 1.5
    assert "s3cret" not in str(caught.value)
    assert "user:***@" in str(caught.value)
    assert "connection refused" in str(caught.value)


async def test_a_wrong_password_is_refused_without_showing_it() -> None:
    """Redis refuses the password (none is set, or another): the error does not repeat it."""
    require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
    host = REDIS_URL.split("://", 1)[1].rsplit("@", 1)[-1]
    b = RedisBroker(f"redis://nobody:wr0ng-pw@{host}", timeout=2.0)
    with pytest.raises(BrokerError, match="cannot connect to Redis") as caught:
        await b.connect()
    assert "wr0ng-pw" not in str(caught.value)
    await b.close()


async def test_a_closed_broker_connects_again_on_the_next_publish() -> None:
    """Closing twice changes nothing; publishing after close connects again."""
    require(REDIS_URL, "Redis", "STATESAGA_TEST_REDIS")
    prefix = f"test_{uuid.uuid4().hex[:10]}"
    b = broker(prefix, shards=1)
    try:
        await b.publish(message("orders", 1))
        await b.close()
        await b.close()
        await b.publish(message("orders", 2))
    finally:
        await b.close()
        await remove_redis(prefix)


def test_choosing_a_redis_broker_does_not_import_redis_py() -> None:
    """broker_from_url('redis://...') makes the broker; redis-py is imported when it connects."""
    code = textwrap.dedent(
        """
        import sys
        from statesaga.messaging.brokers import broker_from_url
        broker_from_url("redis://127.0.0.1:6379/0")
        print("redis" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
