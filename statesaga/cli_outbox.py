"""``statesaga outbox ...`` and ``statesaga relay``: look at the outbox and deliver it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time

import click

from .cli_runs import _table, _when, command_store, store_option
from .store import OUTBOX_STATUSES, OutboxRecord, hide_password

#: Environment variable naming the broker of the CLI's ``relay`` and ``worker`` commands.
BROKER_ENV_VAR = "STATESAGA_BROKER"

broker_option = click.option(
    "--broker",
    "broker_url",
    envvar=BROKER_ENV_VAR,
    required=True,
    help=f"Broker URL (amqp://..., nats://..., memory://); ${BROKER_ENV_VAR} sets it.",
)


@click.group()
def outbox() -> None:
    """Inspect the outbox and requeue or purge its messages."""


@outbox.command("list")
@store_option
@click.option("--status", type=click.Choice(OUTBOX_STATUSES), help="Only messages in this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--payload", "show_payload", is_flag=True, help="Show each message's payload.")
def list_messages(store_url: str, status: str | None, limit: int, show_payload: bool) -> None:
    """List messages, newest first."""
    records = asyncio.run(_list(store_url, status, limit))
    if not records:
        click.echo(f"no {status or ''} messages in {hide_password(store_url)}".replace("  ", " "))
        return
    rows = [_row(r, show_payload) for r in records]
    headers = ["MESSAGE", "TOPIC", "KEY", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"]
    click.echo(_table([*headers, "PAYLOAD"] if show_payload else headers, rows))


def _row(record: OutboxRecord, show_payload: bool) -> list[str]:
    status = record.status
    if status == "pending" and record.claim_owner and (record.claim_until or 0) >= time.time():
        status = "sending"  # claimed by a sender or relay right now
    row = [
        record.id,
        record.message.topic,
        record.message.key or "-",
        status,
        str(record.attempts),
        _when(record.message.created_at),
        record.last_error or "",
    ]
    if show_payload:
        row.append(json.dumps(record.message.payload, sort_keys=True))
    return row


async def _list(url: str, status: str | None, limit: int) -> list[OutboxRecord]:
    store = await command_store(url, create=False)
    try:
        return await store.outbox_list(status=status, limit=limit)
    finally:
        await store.close()


@outbox.command("retry")
@store_option
@click.argument("message_ids", nargs=-1)
@click.option("--dead", "all_dead", is_flag=True, help="Requeue every dead message.")
def retry_messages(store_url: str, message_ids: tuple[str, ...], all_dead: bool) -> None:
    """Make MESSAGE_IDS (or, with --dead, every dead message) pending again, due now.

    Their attempts start again from zero; a relay publishes them on its next round.
    """
    if bool(message_ids) == all_dead:
        raise click.UsageError("give MESSAGE_IDS or --dead, not both and not neither")
    wanted = None if all_dead else list(dict.fromkeys(message_ids))
    count, missed = asyncio.run(_retry(store_url, wanted))
    click.echo(f"requeued {count} message{'s' if count != 1 else ''}")
    if missed:
        click.echo(
            f"error: not requeued (no such message in {hide_password(store_url)}, or already "
            f"sent): {', '.join(missed)}",
            err=True,
        )
        raise SystemExit(1)


async def _retry(url: str, ids: list[str] | None) -> tuple[int, list[str]]:
    """How many messages were requeued, and which of ``ids`` were not."""
    store = await command_store(url, create=False)
    try:
        now = time.time()
        if ids is None:
            return await store.outbox_retry(None, now), []
        missed = [
            message_id for message_id in ids if not await store.outbox_retry([message_id], now)
        ]
        return len(ids) - len(missed), missed
    finally:
        await store.close()


@outbox.command("purge")
@store_option
@click.option("--sent", is_flag=True, help="Delete sent messages.")
@click.option("--dead", is_flag=True, help="Delete dead messages (their keys move on).")
@click.option(
    "--older-than",
    "days",
    required=True,
    type=click.FloatRange(0),
    metavar="DAYS",
    help="Only messages created more than DAYS days ago.",
)
def purge_messages(store_url: str, sent: bool, dead: bool, days: float) -> None:
    """Delete sent (or dead) messages older than DAYS days."""
    if sent == dead:  # both would silently have meant the last one given
        raise click.UsageError("say which messages to delete: --sent or --dead, not both")
    status = "sent" if sent else "dead"
    count = asyncio.run(_purge(store_url, status, time.time() - days * 86_400))
    click.echo(f"deleted {count} {status} message{'s' if count != 1 else ''}")


async def _purge(url: str, status: str, before: float) -> int:
    store = await command_store(url, create=False)
    try:
        return await store.outbox_purge(status, before)
    finally:
        await store.close()


@click.command()
@store_option
@broker_option
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
    import attrs

    from .messaging.relay import BACKOFF, Relay

    store = await command_store(store_url)
    relay = Relay(
        store,
        broker_url,
        batch=batch,
        poll=poll,
        backoff=attrs.evolve(BACKOFF, attempts=max_attempts),
    )
    sent = 0
    try:
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
    finally:
        await relay.close()
        await store.close()
