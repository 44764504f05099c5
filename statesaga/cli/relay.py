"""``statesaga relay``: publish the outbox messages not sent right after their commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import attrs
import click

from ..messaging.relay import BACKOFF, Relay
from ..store import hide_password
from ._common import BROKER_ENV_VAR, checked_broker_url, command_store, store_option


@click.command()
@store_option
@click.option(
    "--broker",
    "broker_url",
    envvar=BROKER_ENV_VAR,
    required=True,
    callback=checked_broker_url,
    help=f"Broker URL (amqp://..., nats://..., redis://..., memory://); ${BROKER_ENV_VAR} sets it.",
)
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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(relay.run(stop))

        def on_signal() -> None:
            # First signal: finish the round in hand. Second: stop now (claims run out).
            if stop.is_set():
                task.cancel()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return sent
