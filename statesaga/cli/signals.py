"""``statesaga runs signal|cancel``: deliver a signal to a stored run, or ask it to stop."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..durable.resources import shutdown
from ..durable.waiting import request_cancel, signal
from ..json_data import json_object
from ._common import command_store, store_option


def _payload(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json_object(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command("signal")
@store_option
@click.argument("run_id")
@click.argument("event")
@click.option(
    "--data",
    "payload",
    metavar="JSON",
    callback=_payload,
    help="The payload, a JSON object: the wait's result (default {}).",
)
@click.option(
    "--id",
    "signal_id",
    metavar="SIGNAL_ID",
    help="Makes the signal idempotent: the same id again is reported as a duplicate.",
)
def signal_run(
    store_url: str, run_id: str, event: str, payload: dict[str, Any] | None, signal_id: str | None
) -> None:
    """Deliver the signal EVENT to RUN_ID's wait of that name.

    It is committed before the command returns; a run that has not reached its wait yet
    takes it when it gets there, and a waiting run is driven on by the process that follows
    it or by a worker. Exit 0 when accepted or a duplicate of an accepted one (--id), 1 when
    refused (no such wait, the wait is over, the run ended, the id was used with another
    payload), 2 for bad arguments.
    """
    accepted = asyncio.run(_signal(store_url, run_id, event, payload, signal_id))
    click.echo(
        f"{run_id}: signal {event!r} "
        + ("accepted" if accepted else "was a duplicate: it had been accepted before")
    )


async def _signal(
    url: str, run_id: str, event: str, payload: dict[str, Any] | None, signal_id: str | None
) -> bool:
    store = await command_store(url, create=False)
    try:
        return await signal(store, run_id, event, payload, signal_id=signal_id)
    finally:
        await shutdown()
        await store.close()


@click.command("cancel")
@store_option
@click.argument("run_id")
def cancel_run(store_url: str, run_id: str) -> None:
    """Ask RUN_ID to stop: a waiting run is compensated when it is next driven (at once by
    the process following it, or by a worker); a run being driven elsewhere stops when it
    next waits or is resumed."""
    asked = asyncio.run(_cancel(store_url, run_id))
    click.echo(f"{run_id}: " + ("cancellation requested" if asked else "already requested"))


async def _cancel(url: str, run_id: str) -> bool:
    store = await command_store(url, create=False)
    try:
        return await request_cancel(store, run_id)
    finally:
        await shutdown()
        await store.close()
