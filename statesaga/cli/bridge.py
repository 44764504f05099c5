"""``statesaga bridge``: deliver a topic's messages as signals to the runs they name."""

from __future__ import annotations

import asyncio
import logging

import click

from ..bridge import bridge as run_bridge
from ..durable.resources import shutdown
from ..messaging.brokers import broker_from_url
from ..store import hide_password
from ._common import command_store, required_broker_option, store_option, until_signalled


@click.command()
@store_option
@required_broker_option
@click.option("--topic", required=True, help="The topic whose messages become signals.")
@click.option("--event", required=True, help="The signal each message becomes (a wait's name).")
@click.option(
    "--group",
    help="The consumer group; bridges sharing it share the messages "
    "(default statesaga-bridge-EVENT).",
)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 1000))
def bridge(
    store_url: str,
    broker_url: str,
    topic: str,
    event: str,
    group: str | None,
    concurrency: int,
) -> None:
    """Deliver TOPIC's messages as the signal EVENT to the runs their keys name.

    Each message's id is its signal's id, so a message delivered twice is applied once. A
    message the run cannot take (no such run, no wait for EVENT, the wait is over, the run
    ended, no key) is logged and acknowledged. Ctrl-C (or SIGTERM) finishes the messages in
    hand and stops; a second one stops at once (those come again).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(
        f"bridge from {hide_password(broker_url)} topic {topic!r} to {hide_password(store_url)}"
        f" as signal {event!r}"
    )
    asyncio.run(_bridge(store_url, broker_url, topic, event, group, concurrency))


async def _bridge(
    store_url: str,
    broker_url: str,
    topic: str,
    event: str,
    group: str | None,
    concurrency: int,
) -> None:
    broker = broker_from_url(broker_url)
    # The runs it signals are in the store already: a store that is not there is a wrong URL.
    async with await command_store(store_url, create=False) as store:
        try:
            await until_signalled(
                lambda stop: run_bridge(
                    store, broker, topic, event, group=group, concurrency=concurrency, stop=stop
                )
            )
        finally:
            await broker.close()
            await shutdown()
