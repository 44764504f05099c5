"""A process SIGKILLed between the commit of a step's messages and their publishing.

The relay delivers the message to RabbitMQ once the dead process's claim runs out, and a
consumer reading through the inbox applies it once, even when it is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from _services import AMQP_URL, remove_rabbitmq, require

from statesaga import SagaStatus, resume
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
from statesaga.messaging.inbox import Outcome
from statesaga.messaging.inbox_sqlite import SQLiteInbox
from statesaga.messaging.message import Message
from statesaga.messaging.relay import Relay
from statesaga.store.sqlite import SQLiteStore
from tests.crash.emit_once import Payment

ROOT = Path(__file__).resolve().parent.parent


async def test_killed_after_commit_relay_delivers_and_inbox_applies_once(tmp_path: Path) -> None:
    """SIGKILL after the commit: nothing published; the relay sends it; applied exactly once."""
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    tag = uuid.uuid4().hex[:10]
    exchange, topic, group = f"statesaga_test_{tag}", f"t{tag}.payments", f"ledger-{tag}"
    db = tmp_path / "runs.db"
    consumer = RabbitMQBroker(AMQP_URL, exchange=exchange)
    publisher = RabbitMQBroker(AMQP_URL, exchange=exchange)
    try:
        await consumer.declare(topic, group=group)  # RabbitMQ refuses unroutable messages
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.crash.emit_once",
            f"sqlite:///{db}",
            AMQP_URL,
            exchange,
            topic,
            "pay-1",
            cwd=ROOT,
            env={
                **os.environ,
                "STATESAGA_LEASE_SECONDS": "1",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), 30)
        assert child.returncode == -signal.SIGKILL, (out + err).decode()

        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT id, status, claim_owner FROM statesaga_outbox").fetchall()
        [(message_id, status, owner)] = rows
        assert (message_id, status) == ("pay-1:pay:1", "pending")
        assert owner is not None  # claimed by the dead process for its optimistic publish

        async with SQLiteStore(db) as store:
            relay = Relay(store, publisher, poll=0.1)
            async with asyncio.timeout(10):
                while True:
                    if (await relay.run_once()).sent:
                        break
                    await asyncio.sleep(0.1)  # the dead process's claim runs out after 1 s
            [record] = await store.outbox_list()
            assert record.status == "sent"
            # The run itself is resumed: the step is not run again, nothing is emitted again.
            result = await resume(store, "pay-1", saga=Payment, broker=publisher)
            assert result.status is SagaStatus.COMPLETED
            assert len(await store.outbox_list()) == 1
            # Published once more, as a relay whose confirm was lost would.
            await publisher.publish(record.message)

        applied: list[str] = []

        def apply(message: Message, conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS ledger (account TEXT, amount INTEGER)")
            conn.execute("INSERT INTO ledger VALUES (?, ?)", ("acct-1", message.payload["amount"]))
            applied.append(message.id)

        outcomes = []
        async with SQLiteInbox(tmp_path / "ledger.db", consumer="ledger") as inbox:
            deliveries = consumer.consume(topic, group=group)
            async with contextlib.aclosing(deliveries), asyncio.timeout(10):
                for _ in range(2):
                    outcomes.append(await inbox.handle(await anext(deliveries), apply))
        assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE]
        assert applied == ["pay-1:pay:1"]
        with sqlite3.connect(tmp_path / "ledger.db") as conn:
            assert conn.execute("SELECT sum(amount) FROM ledger").fetchone() == (5,)
    finally:
        await publisher.close()
        await consumer.close()
        with contextlib.suppress(Exception):
            await remove_rabbitmq(consumer, exchange, topic, group)


pytestmark = pytest.mark.timeout(60)
