"""``statesaga relay``: publish the outbox messages not sent right after their commit."""

from __future__ import annotations

import asyncio
import logging

import attrs
import click

from ..messaging.relay import BACKOFF, Relay, RelayRound
from ..observe.health import broker_check, store_check
from ..store import OUTBOX_STATUSES, hide_password
from ._common import (
    counted,
    required_broker_option,
    serving_store,
    store_option,
    store_unless_stopped,
    until_signalled,
)
from ._health import Endpoints, health_port_option, metrics_port_option

log = logging.getLogger("statesaga.relay")


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
@metrics_port_option
@health_port_option
def relay(
    store_url: str,
    broker_url: str,
    batch: int,
    poll: float,
    max_attempts: int,
    once: bool,
    metrics_port: int = 0,
    health_port: int = 0,
) -> None:
    """Publish the outbox messages that were not sent right after their commit.

    The first SIGTERM (or Ctrl-C) finishes the batch being published and exits 0 (/readyz
    answers 503 meanwhile); a second one stops at once (its claims run out for another relay).

    \b
    Exit codes:
      0  stopped when asked; with --once, every message due was published
      1  with --once, a message could not be published (it went dead, or it
         waits to be tried again); or the store could not be opened
      2  usage error: a bad option, such as a --broker URL naming no broker
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"relay from {hide_password(store_url)} to {hide_password(broker_url)}")
    options = (batch, poll, max_attempts, once, (metrics_port, health_port))
    done = asyncio.run(_relay(store_url, broker_url, *options))
    if once:
        click.echo(_summary(done))
        if done.failed or done.waiting:  # a cron job or a Kubernetes Job sees it
            raise SystemExit(1)


def _summary(done: RelayRound) -> str:
    """What ``relay --once`` did, in a line: published, given up on, to be tried again."""
    text = f"published {counted(done.sent, 'message')}"
    if done.dead:
        text += (
            f"; gave up on {done.dead} (dead: `statesaga outbox list --status dead` shows them, "
            "`statesaga outbox retry` requeues them)"
        )
    if done.failed > done.dead:
        text += f"; {counted(done.failed - done.dead, 'failed attempt')}, tried again later"
    if done.waiting:
        text += f"; {counted(done.waiting, 'message')} failed before and wait for their backoff"
    return text


async def _relay(
    store_url: str,
    broker_url: str,
    batch: int,
    poll: float,
    max_attempts: int,
    once: bool,
    ports: tuple[int, int] = (0, 0),
) -> RelayRound:
    backoff = attrs.evolve(BACKOFF, attempts=max_attempts)
    stop = asyncio.Event()
    # --once is not stopped by a signal (it ends by itself); a relay that runs on is.
    store = await (
        serving_store(store_url, "relay")
        if once
        else store_unless_stopped(store_url, stop, "relay")
    )
    if store is None:
        return RelayRound()
    # The relay closes the broker it opens from the URL, then the command closes its store.
    async with (
        store,
        Relay(store, broker_url, batch=batch, poll=poll, backoff=backoff) as relay,
    ):
        total = RelayRound()
        if once:
            while (done := await relay.run_once()).claimed:
                total = RelayRound(
                    *(a + b for a, b in zip(attrs.astuple(total), attrs.astuple(done), strict=True))
                )
                if done.failed:
                    break  # the broker is failing: what is left waits for its backoff
            # Messages that failed before and wait for their backoff count as not published,
            # also when none was due in this round (an outage longer than the backoff).
            pending = await store.outbox_list(status=OUTBOX_STATUSES[0], limit=10_000)
            return attrs.evolve(total, waiting=sum(1 for r in pending if r.attempts))
        checks = {"store": store_check(store), "broker": broker_check(broker_url)}
        served = Endpoints(*ports, lambda: relay.beaten_at, poll, checks)

        def stopping() -> None:
            if served.health is not None:
                served.health.draining = True
            log.info("stopping: finishing the batch in hand (a second signal stops at once)")

        try:
            # First signal: finish the round in hand. Second: stop now (claims run out).
            await until_signalled(relay.run, stopping, stop)
        finally:
            served.close()
        log.info("relay stopped")
        return total
