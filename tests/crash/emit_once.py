"""Run one saga whose step emits a message, durably, with a broker, and die: the process
kills itself once the commit that carries the message is durable and before anything is
published.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Sequence
from typing import Any

from statesaga import Saga, Step
from statesaga.context import Context
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker
from statesaga.store import Commit, SagaStore, store_from_url


class DiesAfterMessages:
    """A store that SIGKILLs this process as soon as a commit carrying messages is durable."""

    def __init__(self, store: SagaStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def commit(self, commit: Commit) -> Awaitable[Sequence[str] | None]:
        written = self._store.commit(commit)
        if not commit.messages:
            return written

        async def then_die() -> Sequence[str] | None:
            await written
            os.kill(os.getpid(), signal.SIGKILL)
            raise AssertionError("not killed")

        return then_die()


async def pay(ctx: Context) -> dict[str, int]:
    ctx.emit(ctx.data["topic"], {"account": "acct-1", "amount": 5}, key="acct-1")
    return {"paid": 5}


async def notify(ctx: Context) -> None:
    return None


class Payment(Saga):
    steps = (Step("pay", pay), Step("notify", notify))


async def main(store_url: str, amqp_url: str, exchange: str, topic: str, run_id: str) -> None:
    broker = RabbitMQBroker(amqp_url, exchange=exchange)
    store = DiesAfterMessages(store_from_url(store_url))
    await Payment(topic=topic).execute(store=store, broker=broker, saga_id=run_id)  # type: ignore[arg-type]
    print("not killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
