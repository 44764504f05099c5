"""``statesaga relay``: publish the outbox messages not sent right after their commit."""

from __future__ import annotations

import asyncio
import logging

import attrs
import click

from ..messaging.relay import BACKOFF, Relay
from ..store import hide_password
from ._common import command_store, required_broker_option, store_option, until_signalled


@click.command()
@store_option
@required_broker_option
@click.option("--batch", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.01, 3600))
@click.option(
    "--max-attempts",
    default=40,
    show_default=True,
    type=click.IntRange(1),
    help="Attempts at one message before it is dead.",
)
@click.option("--once", is_flag=True, help="Publish what is due now, then exit.")
def relay(
    store_url: str, broker_url: str, batch: int, poll: float, max_attempts: int, once: bool
) -> None:
    """Publish the outbox messages that were not sent right after their commit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"relay from {hide_password(store_url)} to {hide_password(broker_url)}")
    sent = asyncio.run(_relay(store_url, broker_url, batch, poll, max_attempts, once))
    if once:
        click.echo(f"published {sent} message{'s' if sent != 1 else ''}")


async def _relay(
    store_url: str, broker_url: str, batch: int, poll: float, max_attempts: int, once: bool
) -> int:
    backoff = attrs.evolve(BACKOFF, attempts=max_attempts)
    # The relay closes the broker it opens from the URL, then the command closes its store.
    async with (
        await command_store(store_url) as store,
        Relay(store, broker_url, batch=batch, poll=poll, backoff=backoff) as relay,
    ):
        sent = 0
        if once:
            while (done := await relay.run_once()).claimed:
                sent += done.sent
                if done.failed:
                    break  # the broker is failing: what is left waits for its backoff
            return sent
        # First signal: finish the round in hand. Second: stop now (claims run out).
        await until_signalled(relay.run)
        return sent
