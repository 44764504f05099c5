"""Consumer inbox throughput on PostgreSQL: messages applied per second, with and without it.

The handler does one small insert. With the inbox, each message is one transaction that also
inserts its id (and checks it was not there); without it, the same insert in a transaction of
its own. Both run with the same number of concurrent workers, each on its own connection, in the
same run, rounds alternating; the median round is reported.

Run alone: ``.venv/bin/python tests/benchmarks/inbox.py [--messages N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from postgres import URL, reachable  # tests/benchmarks/postgres.py, beside this script

from statesaga.messaging import Message
from statesaga.messaging.inbox_postgres import PostgresInbox

CONCURRENCY = (1, 4)


@dataclass
class InboxResult:
    """Messages per second at one concurrency, through the inbox and without it (medians)."""

    concurrency: int
    messages: int
    inbox_per_s: float
    plain_per_s: float
    inbox_rounds: list[float] = field(default_factory=list)
    plain_rounds: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Plain throughput over inbox throughput (the inbox's cost; 1.0 means free)."""
        return self.plain_per_s / self.inbox_per_s


def _handler(table: str) -> Any:
    async def handler(message: Message, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(
            f"INSERT INTO {table} (order_id, amount) VALUES (%s, %s)",
            (message.payload["order"], message.payload["amount"]),
        )

    return handler


def _messages(count: int, tag: str) -> list[Message]:
    return [
        Message(id=f"{tag}:{n}", topic="orders.paid", payload={"order": f"o{n}", "amount": n * 1.5})
        for n in range(count)
    ]


async def _through_inbox(schema: str, table: str, count: int, workers: int) -> float:
    batch = _messages(count, uuid.uuid4().hex)
    handler = _handler(table)
    async with PostgresInbox(URL, consumer="bench", schema=schema, pool_size=workers) as inbox:
        todo = iter(batch)
        warm = _messages(workers, f"warm-{uuid.uuid4().hex}")  # open every connection first
        await asyncio.gather(*(inbox.process(message, handler) for message in warm))

        async def worker() -> None:
            for message in todo:
                await inbox.process(message, handler)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return count / (time.perf_counter() - began)


async def _plain(table: str, count: int, workers: int) -> float:
    batch = _messages(count, uuid.uuid4().hex)
    handler = _handler(table)
    conns = [await psycopg.AsyncConnection.connect(URL, autocommit=True) for _ in range(workers)]
    try:
        todo = iter(batch)

        async def worker(conn: psycopg.AsyncConnection[Any]) -> None:
            for message in todo:
                async with conn.transaction():
                    await handler(message, conn)

        began = time.perf_counter()
        await asyncio.gather(*(worker(conn) for conn in conns))
        return count / (time.perf_counter() - began)
    finally:
        for conn in conns:
            await conn.close()


async def _bench(messages: int, rounds: int) -> list[InboxResult]:
    schema = f"statesaga_bench_{uuid.uuid4().hex[:10]}"
    table = f'"{schema}".payments'
    async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f"CREATE TABLE {table} (order_id text, amount double precision)")
    try:
        results = []
        for workers in CONCURRENCY:
            inbox_rounds, plain_rounds = [], []
            for _ in range(rounds):  # alternating, so drift hits both alike
                inbox_rounds.append(await _through_inbox(schema, table, messages, workers))
                plain_rounds.append(await _plain(table, messages, workers))
            results.append(
                InboxResult(
                    workers,
                    messages,
                    statistics.median(inbox_rounds),
                    statistics.median(plain_rounds),
                    inbox_rounds,
                    plain_rounds,
                )
            )
        return results
    finally:
        async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def bench_inbox(messages: int, rounds: int) -> list[InboxResult]:
    """Inbox-processed and plain messages per second at each of ``CONCURRENCY`` workers."""
    return asyncio.run(_bench(messages, rounds))


async def _from_rabbitmq(messages: int, amqp_url: str) -> float:
    """Messages per second from RabbitMQ through ``consume`` and the inbox into PostgreSQL."""
    import aio_pika

    from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
    from statesaga.messaging.inbox import consume

    tag = uuid.uuid4().hex[:10]
    schema, exchange, topic = f"statesaga_bench_{tag}", f"statesaga_bench_{tag}", f"b{tag}.paid"
    table = f'"{schema}".payments'
    async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f"CREATE TABLE {table} (order_id text, amount double precision)")
    broker = RabbitMQBroker(amqp_url, exchange=exchange)
    try:
        await broker.declare(topic, group="bench")
        for n, message in enumerate(_messages(messages, tag)):
            await broker.publish(Message(message.id, topic, message.payload, key=f"k{n % 64}"))
        applied = 0
        done = asyncio.Event()
        insert = _handler(table)

        async def handler(message: Message, conn: psycopg.AsyncConnection[Any]) -> None:
            nonlocal applied
            await insert(message, conn)
            applied += 1
            if applied == messages:
                done.set()

        async with PostgresInbox(URL, consumer="bench", schema=schema) as inbox:
            began = time.perf_counter()
            task = asyncio.create_task(
                consume(broker, topic, group="bench", inbox=inbox, handler=handler, stop=done)
            )
            await task
            return messages / (time.perf_counter() - began)
    finally:
        await broker.close()
        async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel()
            for shard in range(broker.shards):
                await channel.queue_delete(broker.queue_name(topic, "bench", shard))
            await channel.exchange_delete(exchange)


def bench_rabbitmq_to_inbox(messages: int, amqp_url: str) -> float:
    """Messages per second consumed from RabbitMQ (4 shards) and applied through the inbox."""
    return asyncio.run(_from_rabbitmq(messages, amqp_url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    why = reachable()
    if why is not None:
        raise SystemExit(f"PostgreSQL at {URL} is unreachable: {why}")
    print(
        f"PostgreSQL inbox, {args.messages} messages, handler = one insert, median of "
        f"{args.rounds} rounds"
    )
    print(f"{'workers':>8} {'inbox msg/s':>12} {'plain msg/s':>12} {'plain/inbox':>12}")
    for r in bench_inbox(args.messages, args.rounds):
        print(f"{r.concurrency:>8} {r.inbox_per_s:>12.0f} {r.plain_per_s:>12.0f} {r.ratio:>12.2f}")
    amqp = os.environ.get("STATESAGA_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    try:
        per_s = bench_rabbitmq_to_inbox(args.messages, amqp)
    except Exception as error:  # RabbitMQ is optional here
        print(f"RabbitMQ -> inbox: skipped ({error})")
    else:
        print(f"RabbitMQ -> consume() -> inbox, 4 shards, 64 keys: {per_s:.0f} msg/s")


if __name__ == "__main__":
    main()
