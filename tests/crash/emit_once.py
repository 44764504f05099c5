"""Run one saga whose step emits a message, durably, with a broker (the process a test kills).

Started with ``STATESAGA_CRASH_AT=after-outbox-commit``, it kills itself once the commit that
carries the message is durable and before anything is published.
"""

from __future__ import annotations

import asyncio
import sys

from statesaga import Saga, Step
from statesaga.context import Context
from statesaga.messaging.brokers.rabbitmq import RabbitMQBroker


async def pay(ctx: Context) -> dict[str, int]:
    ctx.emit(ctx.data["topic"], {"account": "acct-1", "amount": 5}, key="acct-1")
    return {"paid": 5}


async def notify(ctx: Context) -> None:
    return None


class Payment(Saga):
    steps = (Step("pay", pay), Step("notify", notify))


async def main(store_url: str, amqp_url: str, exchange: str, topic: str, run_id: str) -> None:
    broker = RabbitMQBroker(amqp_url, exchange=exchange)
    await Payment(topic=topic).execute(store=store_url, broker=broker, saga_id=run_id)
    print("not killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
