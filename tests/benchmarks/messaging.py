"""Messages per second from ``ctx.emit`` through commit and optimistic publish to RabbitMQ.

Engine: N concurrent 4-step chains on SQLite (WAL, synchronous=FULL); every step emits one
message (keyed by the run), which is committed with the step's success, published by the
optimistic sender right after the commit (persistent, mandatory, publisher confirms) and marked
sent. A run counts as done when its messages are confirmed and marked, so the figure covers the
whole path.

Raw: the same number of messages published with aio-pika alone on one confirming channel, all
at once (``asyncio.gather``), persistent and mandatory, to a durable queue: what RabbitMQ and the
client can do without any saga, store or outbox.

"Commit only" runs the engine's sagas without a broker (messages wait in the outbox for a
relay): the share of the time that the store takes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statesaga import Saga, SagaStatus, Step
from statesaga.store.sqlite import SQLiteStore

AMQP_URL = os.environ.get("STATESAGA_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
STEPS = ("a", "b", "c", "d")


async def emit(ctx: Any) -> None:
    """A step that emits one message and does nothing else."""
    ctx.emit(ctx.data["topic"], {"run": ctx.saga_id, "step": ctx.step}, key=ctx.saga_id)


class EmitBench(Saga):
    """4-step chain, one message per step."""

    steps = tuple(Step(name, emit) for name in STEPS)


@dataclass
class MessagingResult:
    """Messages per second (medians over rounds)."""

    messages: int
    rounds: int
    engine_per_s: float
    raw_per_s: float
    commit_only_per_s: float
    fallback: int
    engine_rounds: list[float] = field(default_factory=list)
    raw_rounds: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Engine throughput as a share of raw aio-pika's."""
        return self.engine_per_s / self.raw_per_s


def reachable() -> str | None:
    """None if RabbitMQ answers, else why not."""

    async def probe() -> None:
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
        return None
    except Exception as error:
        return " ".join(str(error).split()) or type(error).__name__


async def _engine_round(folder: Path, sagas: int, broker: Any, topic: str) -> float:
    path = folder / f"{uuid.uuid4().hex}.db"
    async with SQLiteStore(path) as store:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(EmitBench(topic=topic).execute(store=store, broker=broker) for _ in range(sagas))
        )
        elapsed = time.perf_counter() - started
        assert all(r.status is SagaStatus.COMPLETED for r in results)
    return sagas * len(STEPS) / elapsed


async def _raw_round(exchange: Any, count: int, topic: str) -> float:
    import aio_pika

    body = b'{"run":"0123456789abcdef0123456789abcdef","step":"a"}'
    started = time.perf_counter()
    await asyncio.gather(
        *(
            exchange.publish(
                aio_pika.Message(
                    body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(n),
                    content_type="application/json",
                ),
                routing_key=f"{topic}.raw",
                mandatory=True,
            )
            for n in range(count)
        )
    )
    return count / (time.perf_counter() - started)


async def bench_messaging_async(sagas: int, rounds: int) -> MessagingResult:
    import aio_pika

    from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
    from statesaga.messaging.stats import OUTBOX_STATS

    tag = uuid.uuid4().hex[:10]
    exchange_name, topic, group = f"statesaga_bench_{tag}", f"bench{tag}", f"g{tag}"
    broker = RabbitMQBroker(AMQP_URL, exchange=exchange_name)
    connection = await aio_pika.connect_robust(AMQP_URL)
    folder = Path(tempfile.mkdtemp(prefix="statesaga-messaging-bench-"))
    try:
        await broker.declare(topic, group=group)
        channel = await connection.channel(publisher_confirms=True)
        raw_exchange = await channel.declare_exchange(
            f"{exchange_name}_raw", aio_pika.ExchangeType.TOPIC, durable=True
        )
        raw_queue = await channel.declare_queue(f"{exchange_name}_raw", durable=True)
        await raw_queue.bind(raw_exchange, routing_key=f"{topic}.raw")
        count = sagas * len(STEPS)
        await _engine_round(folder, sagas // 4 or 1, broker, topic)  # warm up
        await _raw_round(raw_exchange, count // 4 or 1, topic)
        fallback_before = OUTBOX_STATS.fallback
        engine, raw = [], []
        for _ in range(rounds):  # alternating, so drift hits both alike
            raw.append(await _raw_round(raw_exchange, count, topic))
            engine.append(await _engine_round(folder, sagas, broker, topic))
        fallback = OUTBOX_STATS.fallback - fallback_before
        commit_only = await _engine_round(folder, sagas, None, topic)
        await raw_queue.delete(if_unused=False, if_empty=False)
        await raw_exchange.delete()
        await _remove_bench_queues(channel, broker, exchange_name, topic, group)
        return MessagingResult(
            messages=count,
            rounds=rounds,
            engine_per_s=statistics.median(engine),
            raw_per_s=statistics.median(raw),
            commit_only_per_s=commit_only,
            fallback=fallback,
            engine_rounds=engine,
            raw_rounds=raw,
        )
    finally:
        await broker.close()
        await connection.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _remove_bench_queues(
    channel: Any, broker: Any, exchange: str, topic: str, group: str
) -> None:
    for shard in range(broker.shards):
        await channel.queue_delete(broker.queue_name(topic, group, shard))
    await channel.exchange_delete(exchange)


def bench_messaging(sagas: int, rounds: int) -> MessagingResult:
    """Run the messaging benchmark (RabbitMQ must be reachable: see ``reachable``)."""
    return asyncio.run(bench_messaging_async(sagas, rounds))
