"""The signal bridge: a topic's messages become signals, each applied once, on real brokers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as signals
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _services import AMQP_URL, remove_rabbitmq, require

from statesaga import Saga, SagaStatus, Step, Wait
from statesaga.bridge import SignalInbox, bridge
from statesaga.context import Context
from statesaga.durable import open_store, shutdown
from statesaga.messaging import Broker, Message
from statesaga.messaging.brokers import MemoryBroker
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker

SHIPPED: list[Any] = []


async def reserve(ctx: Context) -> None:
    pass


async def ship(ctx: Context) -> dict[str, Any]:
    SHIPPED.append(ctx.results["paid"])
    return {}


class Paid(Saga):
    steps = (Step("reserve", reserve), Wait("paid", timeout=60), Step("ship", ship))


@pytest.fixture(autouse=True)
async def _clean() -> AsyncIterator[None]:
    SHIPPED.clear()
    yield
    await shutdown()


@pytest.fixture(params=["memory", "rabbitmq"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    if request.param == "memory":
        async with MemoryBroker() as memory:
            yield memory
        return
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    exchange = f"test-bridge-{uuid.uuid4().hex[:8]}"
    async with RabbitMQBroker(AMQP_URL, shards=2, exchange=exchange) as rabbit:
        yield rabbit


def message(run_id: str | None, amount: int, message_id: str, topic: str) -> Message:
    return Message(id=message_id, topic=topic, payload={"amount": amount}, key=run_id)


async def test_messages_become_signals_once_even_when_delivered_twice(
    broker: Broker, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    topic = f"payments-{uuid.uuid4().hex[:8]}"
    group = f"bridge-{uuid.uuid4().hex[:8]}"
    await broker.declare(topic, group=group)
    runs = [await Paid(order=n).start(store=url) for n in range(3)]
    inbox = SignalInbox(url, "paid")
    stop = asyncio.Event()
    task = asyncio.create_task(
        bridge(url, broker, topic, "paid", group=group, stop=stop, inbox=inbox)
    )
    try:
        for n, run in enumerate(runs):
            sent = message(run.saga_id, n, f"msg-{n}", topic)
            await broker.publish(sent)
            await broker.publish(sent)  # the broker delivers it twice
        results = [await asyncio.wait_for(run.result(), 20) for run in runs]
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        if isinstance(broker, RabbitMQBroker):
            await remove_rabbitmq(broker, broker.exchange_name, topic, group)
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 3
    assert sorted(r.results["paid"]["amount"] for r in results) == [0, 1, 2]
    assert sorted(p["amount"] for p in SHIPPED) == [0, 1, 2]  # each applied once
    store = await open_store(url)
    snapshot = await store.load(runs[0].saga_id)
    assert snapshot.signals["paid"].signal_id == "msg-0"
    assert inbox.refused.count == 0


async def test_messages_a_run_cannot_take_are_acknowledged_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    run = await Paid().start(store=url)
    async with MemoryBroker() as broker:
        await broker.declare("payments", group="g")
        inbox = SignalInbox(url, "paid")
        stop = asyncio.Event()
        task = asyncio.create_task(
            bridge(url, broker, "payments", "paid", group="g", stop=stop, inbox=inbox)
        )
        await broker.publish(message("no-such-run", 1, "m-1", "payments"))
        await broker.publish(message(None, 1, "m-2", "payments"))
        await broker.publish(message(run.saga_id, 7, "m-3", "payments"))
        result = await asyncio.wait_for(run.result(), 10)
        await broker.publish(message(run.saga_id, 8, "m-4", "payments"))  # run has ended
        for _ in range(100):
            if inbox.refused.count == 3:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert result.results["paid"] == {"amount": 7}
    assert inbox.refused.count == 3
    assert "the run has finished" in (inbox.refused.last or "")
    assert "no run 'no-such-run'" in caplog.text
    assert "names no run" in caplog.text


async def _remove_queues(broker: RabbitMQBroker, topic: str, group: str) -> None:
    """Delete the queues the test declared on the shared exchange (left in place)."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for shard in range(broker.shards):
            await channel.queue_delete(broker.queue_name(topic, group, shard))


def _cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "statesaga.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_the_bridge_command_on_rabbitmq(tmp_path: Path) -> None:
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    topic = f"payments-{uuid.uuid4().hex[:8]}"
    group = f"bridge-{uuid.uuid4().hex[:8]}"
    async with RabbitMQBroker(AMQP_URL) as broker:
        await broker.declare(topic, group=group)
        run = await Paid().start(store=url)
        process = _cli(
            "bridge",
            "--store",
            url,
            "--broker",
            AMQP_URL,
            "--topic",
            topic,
            "--event",
            "paid",
            "--group",
            group,
            cwd=tmp_path,
        )
        try:
            await broker.publish(message(run.saga_id, 42, "pay-42", topic))
            result = await asyncio.wait_for(run.result(), 30)
        finally:
            process.send_signal(signals.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
            await _remove_queues(broker, topic, group)
    assert result.status == SagaStatus.COMPLETED
    assert result.results["paid"] == {"amount": 42}
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, output
    assert "as signal 'paid'" in output
