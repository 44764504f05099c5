"""The chaos scenario and the throughput measurement, on a fresh PostgreSQL schema and fresh
RabbitMQ queues: set up, drive, read back, clean up."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import attrs
import psycopg

from statesaga.messaging import consume, inbox_for
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
from statesaga.messaging.message import Message
from statesaga.store import store_from_url
from statesaga.store.base import SagaStore

from .checks import Execution, Interruption, Observed
from .cluster import LEASE_SECONDS, Cluster, Process, create_runs, via
from .saga import EFFECTS_TABLE, STEPS

GROUP = "chaos"
#: Seconds between looks at the leases of an interrupted worker's runs: a takeover is seen
#: at most this (and one query) after it happened.
WATCH = 0.02
#: How long after an interruption its runs' leases are watched.
WATCH_FOR = 15.0


@attrs.frozen
class Settings:
    """How big the scenario is."""

    runs: int
    chaos_seconds: float
    seed: int = 17
    drain_seconds: float = 120.0


@attrs.define
class Harness:
    """One schema, one topic, a proxy in front of RabbitMQ, a consumer applying through the
    inbox, and a cluster of workers and relays."""

    postgres: str  # without ?schema=
    amqp: str
    folder: Path
    schema: str = attrs.field(factory=lambda: f"statesaga_chaos_{uuid.uuid4().hex[:10]}")
    topic: str = attrs.field(factory=lambda: f"chaos{uuid.uuid4().hex[:10]}")
    proxy: Any = None
    store: SagaStore | None = None
    cluster: Cluster | None = None
    admin: psycopg.AsyncConnection[Any] | None = None
    #: What went wrong while the chaos went on (besides what the checks find afterwards).
    problems: list[str] = attrs.field(factory=list)

    @property
    def store_url(self) -> str:
        return f"{self.postgres}?schema={self.schema}"

    async def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        assert self.admin is not None
        cursor = await self.admin.execute(query.replace("{s}", f'"{self.schema}"'), params)
        return await cursor.fetchall() if cursor.description is not None else []

    async def apply(self, message: Message, conn: psycopg.AsyncConnection[Any]) -> None:
        """The consumer's handler: record the message, in the order applied."""
        await conn.execute(
            f'INSERT INTO "{self.schema}".chaos_applied (message_id, run_id, step)'
            " VALUES (%s, %s, %s)",
            (message.id, message.payload["run"], message.payload["step"]),
        )

    async def completed(self) -> int:
        return int(
            (await self.sql("SELECT count(*) FROM {s}.statesaga_runs WHERE status = 'completed'"))[
                0
            ][0]
        )

    async def applied(self) -> int:
        return int(
            (await self.sql("SELECT count(DISTINCT message_id) FROM {s}.chaos_applied"))[0][0]
        )

    async def held_by(self, pid: int) -> tuple[str, ...]:
        rows = await self.sql(
            "SELECT run_id FROM {s}.statesaga_runs WHERE lease_owner LIKE %s"
            " AND status NOT IN ('completed', 'compensated', 'failed')",
            (f"%:{pid}:%",),
        )
        return tuple(r[0] for r in rows)

    async def settle(self, runs: int, seconds: float) -> None:
        """Wait until every run completed and every message was applied (at most ``seconds``)."""
        deadline = time.monotonic() + seconds
        while (await self.completed(), await self.applied()) != (runs, runs * len(STEPS)):
            if time.monotonic() > deadline:
                return  # the checks say what is missing
            await asyncio.sleep(0.5)

    async def observe(self) -> Observed:
        statuses = dict(await self.sql("SELECT run_id, status FROM {s}.statesaga_runs"))
        transitions: dict[tuple[str, str], list[float]] = defaultdict(list)
        for run_id, trigger, at in await self.sql(
            'SELECT run_id, "trigger", at FROM {s}.statesaga_history'
        ):
            transitions[(run_id, trigger)].append(at)
        executions = [
            Execution(*row)
            for row in await self.sql(
                "SELECT run_id, step, idem_key, attempt, pid, started_at FROM {s}.chaos_effects"
            )
        ]
        applied = await self.sql(
            "SELECT message_id, run_id, step FROM {s}.chaos_applied ORDER BY seq"
        )
        return Observed(statuses, dict(transitions), executions, applied)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def harness(postgres: str, amqp: str, folder: Path, workers: int) -> AsyncIterator[Harness]:
    """Everything up: tables, queues, consumer, ``workers`` workers and two relays."""
    from tests._services import Proxy

    h = Harness(postgres, amqp, folder)
    h.admin = await psycopg.AsyncConnection.connect(postgres, autocommit=True)
    h.proxy = Proxy(urlsplit(amqp).port or 5672)
    await h.proxy.start()
    consumer_broker = RabbitMQBroker(amqp)
    stop = asyncio.Event()
    consumer: asyncio.Task[None] | None = None
    try:
        h.store = store_from_url(h.store_url)
        await h.store.open()  # creates the schema and statesaga's tables
        await h.sql(f'SET search_path TO "{h.schema}"; {EFFECTS_TABLE}')
        await h.sql(
            "CREATE TABLE {s}.chaos_applied (seq bigserial PRIMARY KEY, message_id text NOT NULL,"
            " run_id text NOT NULL, step text NOT NULL, applied_at timestamptz DEFAULT now())"
        )
        await consumer_broker.declare(h.topic, group=GROUP)
        inbox = inbox_for(h.store_url, consumer=GROUP)
        async with inbox:
            consumer = asyncio.create_task(
                consume(
                    consumer_broker,
                    h.topic,
                    group=GROUP,
                    inbox=inbox,
                    handler=h.apply,
                    concurrency=8,
                    retry_delay=0.05,
                    max_retry_delay=1.0,
                    stop=stop,
                )
            )
            h.cluster = Cluster(h.store_url, via(amqp, h.proxy.port), folder)
            for _ in range(workers):
                h.cluster.add_worker()
            for _ in range(2):
                h.cluster.add_relay()
            yield h
            stop.set()
            await asyncio.wait_for(consumer, 30)
    finally:
        if consumer is not None and not consumer.done():
            consumer.cancel()
            await asyncio.wait([consumer])
        if h.cluster is not None:
            await h.cluster.stop()
        await h.proxy.stop()
        if h.store is not None:
            await h.store.close()
        await consumer_broker.close()
        await remove_queues(amqp, consumer_broker, h.topic)
        await h.sql(f'DROP SCHEMA IF EXISTS "{h.schema}" CASCADE')
        await h.admin.close()


async def remove_queues(amqp: str, broker: RabbitMQBroker, topic: str) -> None:
    connection = await aio_pika.connect(amqp)
    async with connection:
        channel = await connection.channel()
        for shard in range(broker.shards):
            await channel.queue_delete(broker.queue_name(topic, GROUP, shard))


async def chaos(h: Harness, settings: Settings) -> list[Interruption]:
    """Create the runs over the chaos phase while workers are SIGKILLed every 2 to 5 s and
    restarted, one is SIGTERMed once, and the broker is cut once; then let it settle."""
    assert h.cluster is not None
    assert h.store is not None
    rng = random.Random(settings.seed)
    ids = [f"run{n:05d}" for n in range(settings.runs)]
    creating = asyncio.create_task(
        create_runs(h.store, ids, settings.seed, h.topic, over=settings.chaos_seconds * 0.8)
    )
    interruptions: list[Interruption] = []
    began = time.monotonic()
    end = began + settings.chaos_seconds
    term_at, cut_at = began + settings.chaos_seconds * 0.5, began + settings.chaos_seconds * 0.3
    cut = termed = False
    cutting: asyncio.Task[None] | None = None
    watching: list[asyncio.Task[None]] = []
    while True:
        await asyncio.sleep(rng.uniform(2.0, 5.0))
        if time.monotonic() > end:
            break
        if not cut and time.monotonic() >= cut_at:
            cut = True
            cutting = asyncio.create_task(cut_broker(h, rng.uniform(3.0, 5.0)))
        if not termed and time.monotonic() >= term_at:
            worker = await busiest(h)
        else:
            worker = await holding(h, rng)
        pid = worker.pid
        held = await h.held_by(pid)
        if not termed and time.monotonic() >= term_at:
            termed = True
            catches = catches_sigterm(pid)
            worker.signal(signal.SIGTERM)
            interruptions.append(Interruption("term", pid, time.time(), held))
            watching.append(asyncio.create_task(watch_leases(h, interruptions[-1])))
            code = await worker.wait(30)
            if code != 0:
                h.problems.append(
                    f"the SIGTERMed worker (pid {pid}, handling SIGTERM when sent: {catches}) "
                    f"exited {code}, not 0 after its drain"
                )
        else:
            # Timed once the signal is sent: the killed process runs nothing after that (a step
            # it started just before is not one started after its death).
            worker.signal(signal.SIGKILL)
            interruptions.append(Interruption("kill", pid, time.time(), held))
            watching.append(asyncio.create_task(watch_leases(h, interruptions[-1])))
            await worker.wait(10)
        worker.start()
    await creating
    await asyncio.gather(*watching)
    if cutting is not None:
        await cutting
    await h.settle(settings.runs, settings.drain_seconds)
    return interruptions


async def watch_leases(h: Harness, interruption: Interruption) -> None:
    """Fill ``interruption.taken``: when each run it held was first seen leased to another
    worker, or finished (looked at every ``WATCH`` s, on a connection of its own)."""
    mine = f"%:{interruption.pid}:%"
    left = set(interruption.held)
    until = time.monotonic() + WATCH_FOR
    async with await psycopg.AsyncConnection.connect(h.postgres, autocommit=True) as conn:
        cursor = await conn.execute(
            f'SELECT run_id, lease_expires FROM "{h.schema}".statesaga_runs'
            " WHERE run_id = ANY(%s) AND lease_owner LIKE %s",
            (list(left), mine),
        )
        interruption.expires.update(await cursor.fetchall())
        while left and time.monotonic() < until:
            cursor = await conn.execute(
                f'SELECT run_id, lease_owner, lease_expires FROM "{h.schema}".statesaga_runs'
                " WHERE run_id = ANY(%s)"
                " AND ((lease_owner IS NOT NULL AND lease_owner NOT LIKE %s)"
                " OR status IN ('completed', 'compensated', 'failed'))",
                (list(left), mine),
            )
            seen = time.time()
            for run_id, owner, expires in await cursor.fetchall():
                interruption.taken[run_id] = seen
                if expires is not None:
                    interruption.leased_at[run_id] = expires - LEASE_SECONDS
                interruption.takers[run_id] = None if owner is None else int(owner.split(":")[1])
                left.discard(run_id)
            await asyncio.sleep(WATCH)


async def holding(h: Harness, rng: random.Random) -> Process:
    """A random worker among those holding runs (waiting up to 1 s for one to): a worker
    killed with nothing in hand would test no takeover."""
    assert h.cluster is not None
    until = time.monotonic() + 1.0
    while True:
        held = [w for w in h.cluster.workers if await h.held_by(w.pid)]
        if held or time.monotonic() > until:
            return rng.choice(held or h.cluster.workers)
        await asyncio.sleep(0.02)


async def busiest(h: Harness) -> Process:
    """The worker that holds the most runs among those that handle SIGTERM already (a worker
    still starting, before its event loop installs its handler, dies of it), waiting up to
    1 s for one that holds any."""
    assert h.cluster is not None
    until = time.monotonic() + 1.0
    while True:
        ready = [w for w in h.cluster.workers if catches_sigterm(w.pid)]
        counts = [len(await h.held_by(w.pid)) for w in ready]
        if ready and (max(counts) > 0 or time.monotonic() > until):
            return ready[counts.index(max(counts))]
        await asyncio.sleep(0.02)


def catches_sigterm(pid: int) -> bool | None:
    """Whether process ``pid`` has a handler for SIGTERM now (Linux's /proc; None elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


async def cut_broker(h: Harness, seconds: float) -> None:
    """The broker goes away for ``seconds`` (every connection through the proxy cut)."""
    await h.proxy.stop()
    await asyncio.sleep(seconds)
    await h.proxy.start()


async def throughput(
    postgres: str, amqp: str, folder: Path, workers: int, settings: Settings
) -> float:
    """Runs completed per second by ``workers`` workers, no chaos: the runs are created first,
    then timed from the first step's start to the last run's completion."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    async with harness(postgres, amqp, folder, 0) as h:
        assert h.store is not None
        assert h.cluster is not None
        ids = [f"run{n:05d}" for n in range(settings.runs)]
        await create_runs(h.store, ids, settings.seed, h.topic)
        for _ in range(workers):
            h.cluster.add_worker()
        await h.settle(settings.runs, settings.drain_seconds)
        assert await h.completed() == settings.runs, h.cluster.logs()
        ((first, last),) = await h.sql(
            "SELECT (SELECT min(started_at) FROM {s}.chaos_effects),"
            " (SELECT max(updated_at) FROM {s}.statesaga_runs)"
        )
        return settings.runs / (last - first)
