"""``statesaga outbox list|retry|purge``: look at the outbox, requeue or purge its messages."""

from __future__ import annotations

import asyncio
import json
import math
import time

import click

from ..store import OUTBOX_STATUSES, OutboxRecord, SagaStore, hide_password
from ._common import command_store, store_option, table, when

PENDING, SENT, DEAD = OUTBOX_STATUSES


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
    click.echo(table([*headers, "PAYLOAD"] if show_payload else headers, rows))


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
        when(record.message.created_at),
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
    for message_id, why in missed.items():
        click.echo(f"error: {message_id} not requeued: {_in(why, store_url)}", err=True)
    if missed:
        raise SystemExit(1)


def _in(why: str, url: str) -> str:
    return f"{why} in {hide_password(url)}" if why == NO_SUCH_MESSAGE else why


async def _retry(url: str, ids: list[str] | None) -> tuple[int, dict[str, str]]:
    """How many messages were requeued, and why each of ``ids`` that was not was not."""
    store = await command_store(url, create=False)
    try:
        now = time.time()
        if ids is None:
            return await store.outbox_retry(None, now), {}
        missed = {
            message_id: not_requeued(await find_message(store, message_id))
            for message_id in ids
            if not await store.outbox_retry([message_id], now)
        }
        return len(ids) - len(missed), missed
    finally:
        await store.close()


# -- why a message was not requeued or deleted ----------------------------------------------

#: Messages of one run, or of one status, that ``find_message`` looks through.
FIND_LIMIT = 10_000

#: What ``not_requeued`` and ``not_purged`` say of an id no message has.
NO_SUCH_MESSAGE = "no such message"


async def find_message(
    store: SagaStore, message_id: str, run_id: str | None = None
) -> OutboxRecord | None:
    """The outbox message ``message_id`` in any status, or ``None`` if none is found.

    It is looked for among the messages of run ``run_id`` (without one, of the runs its id
    may name: an emitted message's id is ``<run id>:<step>:<n>``), then among the pending and
    the dead messages; a sent message whose id names no run of it is not found.
    """
    if run_id is not None:
        runs = [run_id]
    else:
        parts = message_id.split(":")
        runs = [":".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]
    for run in runs:
        for record in await store.outbox_of_run(run, limit=FIND_LIMIT):
            if record.id == message_id:
                return record
    for status in (PENDING, DEAD):
        for record in await store.outbox_list(status=status, limit=FIND_LIMIT):
            if record.id == message_id:
                return record
    return None


def not_requeued(record: OutboxRecord | None) -> str:
    """Why a retry left the message ``record`` (``None``: none found) as it was."""
    if record is None:
        return NO_SUCH_MESSAGE
    if record.status == SENT:
        return f"it was sent already, at {when(record.sent_at)} UTC"
    return f"it is {record.status}"  # retried or sent meanwhile by someone else


def not_purged(record: OutboxRecord | None, status: str, days: float | None = None) -> str:
    """Why a purge of ``status`` messages (older than ``days``, if given) left the message
    ``record`` (``None``: none found) in place."""
    if record is None:
        return NO_SUCH_MESSAGE
    if record.status == PENDING:
        return "it is pending, still to be delivered (pending messages are never deleted)"
    if record.status == SENT and status != SENT:
        return (
            f"it was sent at {when(record.sent_at)} UTC, it is not dead (sent messages are "
            "deleted with `statesaga outbox purge --sent`)"
        )
    if record.status != status:
        return f"it is {record.status}, not {status} (without --sent, dead messages are deleted)"
    if days is None:
        return f"it is {record.status}"  # it changed meanwhile
    return f"it is not older than {days:g} days (created {when(record.message.created_at)} UTC)"


@outbox.command("purge")
@store_option
@click.argument("message_ids", nargs=-1)
@click.option("--sent", is_flag=True, help="Delete sent messages.")
@click.option("--dead", is_flag=True, help="Delete dead messages (their keys move on).")
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(0),
    callback=lambda ctx, param, days: finite_days(days),
    metavar="DAYS",
    help="Only messages created more than DAYS days ago (needed without MESSAGE_IDS).",
)
def purge_messages(
    store_url: str, message_ids: tuple[str, ...], sent: bool, dead: bool, days: float | None
) -> None:
    """Delete sent (or dead) messages older than DAYS days, or the messages MESSAGE_IDS.

    MESSAGE_IDS are dead messages (with --sent, sent ones) to delete whatever their age,
    unless --older-than is given too. Pending messages are never deleted.
    """
    if sent == dead and (sent or not message_ids):  # both would have meant the last one given
        raise click.UsageError("say which messages to delete: --sent or --dead (one of the two)")
    if days is None and not message_ids:
        raise click.UsageError("say which messages to delete: MESSAGE_IDS or --older-than DAYS")
    status = "sent" if sent else "dead"
    before = math.inf if days is None else time.time() - days * 86_400
    wanted = list(dict.fromkeys(message_ids)) if message_ids else None
    count, missed = asyncio.run(_purge(store_url, status, before, wanted))
    click.echo(f"deleted {count} {status} message{'s' if count != 1 else ''}")
    for message_id, record in missed.items():
        why = not_purged(record, status, days)
        click.echo(f"error: {message_id} not deleted: {_in(why, store_url)}", err=True)
    if missed:
        raise SystemExit(1)


def finite_days(days: float | None) -> float | None:
    """``days`` unless it is not finite (``inf``, ``nan``): a number of days must be one."""
    if days is not None and not math.isfinite(days):
        raise click.BadParameter(f"{days} is not a number of days: give a finite one, 0 or more")
    return days


async def _purge(
    url: str, status: str, before: float, ids: list[str] | None
) -> tuple[int, dict[str, OutboxRecord | None]]:
    """How many messages were deleted, and each of ``ids`` that was not, as found."""
    store = await command_store(url, create=False)
    try:
        if ids is None:
            return await store.outbox_purge(status, before), {}
        missed = [i for i in ids if not await store.outbox_purge(status, before, [i])]
        return len(ids) - len(missed), {i: await find_message(store, i) for i in missed}
    finally:
        await store.close()
