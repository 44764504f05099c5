"""``statesaga runs list|show|resume``: look at stored runs and drive them to the end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import click

from ..durable.drive import resume
from ..durable.resources import shutdown
from ..errors import RunWaiting
from ..loader import unimportable
from ..result import SagaResult
from ..store import SagaStore
from ..store.base import TERMINAL, LeaseHeld, RunRecord
from ..store.browse import steps_in_run_order
from ..vocabulary import WAITING_STATUS
from ..worker import Worker
from ._common import (
    broker_option,
    command_store,
    drive_all,
    load_run,
    shown,
    store_option,
    table,
    wait_option,
    waits_of,
    when,
)

#: What ``runs list --status`` accepts.
STATUSES = ("pending", "running", "waiting", "compensating", *sorted(TERMINAL))


@click.group()
def runs() -> None:
    """List, inspect and resume stored runs."""


@runs.command("list")
@store_option
@click.option("--status", type=click.Choice(STATUSES), help="Only runs in this status.")
@click.option("--saga", "saga_name", metavar="NAME", help="Only runs of this saga.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def list_runs(store_url: str, status: str | None, saga_name: str | None, limit: int) -> None:
    """List runs, newest first.

    An unfinished run whose saga cannot be imported here (started from an interactive
    session, or its module or file missing) is marked: no worker can resume it as it is.
    """
    records = asyncio.run(_list(store_url, status, saga_name, limit + 1))
    more = len(records) > limit
    records = records[:limit]
    if not records:
        wanted = " ".join(
            part
            for part in (
                f"with status {status!r}" if status else "",
                f"of saga {saga_name!r} (names match exactly)" if saga_name else "",
            )
            if part
        )
        click.echo(f"no runs {wanted + ' ' if wanted else ''}in {shown(store_url)}")
        return
    problems = _import_problems(records)
    rows = [
        [
            r.run_id,
            r.saga,
            r.status,
            r.failed_step or "-",
            when(r.created_at),
            when(r.updated_at),
            _waits_text(r),
            "cannot be resumed here (see below)" if r.saga_path in problems else "",
        ]
        for r in records
    ]
    headers = ["RUN", "SAGA", "STATUS", "FAILED STEP", "STARTED", "UPDATED", "WAITS FOR", "NOTE"]
    for column in ((7,) if not problems else ()) + ((6,) if not any(r[6] for r in rows) else ()):
        del headers[column]
        for row in rows:
            del row[column]
    click.echo(table(headers, rows))
    if more:
        click.echo(f"(the newest {limit} shown; --limit shows more)")
    for reference, why in problems.items():
        click.echo(
            f"\n{reference}: cannot be imported here ({why}). Run workers and `statesaga runs "
            "resume` where it can be imported (module names are found from the current "
            "folder), or resume in code with resume(store, run_id, saga=TheSagaClass)."
        )


def _waits_text(record: RunRecord) -> str:
    """What a waiting run waits for, and when it gives up (empty for another run)."""
    if record.status != WAITING_STATUS:
        return ""
    if record.wake_at is None:
        until = "no timeout"
    elif record.wake_at <= time.time():
        until = "due now: a signal came or its time is up"
    else:
        until = f"gives up {when(record.wake_at)} UTC"
    return f"{', '.join(waits_of(record))} ({until})"


def _import_problems(records: Sequence[RunRecord]) -> dict[str, str]:
    """Why the sagas of unfinished (or failed) runs cannot be imported here, by reference."""
    problems: dict[str, str] = {}
    checked: set[str] = set()
    for record in records:
        if record.status in ("completed", "compensated") or record.saga_path in checked:
            continue
        checked.add(record.saga_path)
        why = unimportable(record.saga_path)
        if why is not None:
            problems[record.saga_path] = why
    return problems


async def _list(url: str, status: str | None, saga: str | None, limit: int) -> list[RunRecord]:
    store = await command_store(url, create=False)
    try:
        return await store.list_runs(status=status, saga=saga, limit=limit)
    finally:
        await store.close()


@runs.command("show")
@store_option
@click.argument("run_id")
def show_run(store_url: str, run_id: str) -> None:
    """Show one run: its input, steps and history."""
    snap = asyncio.run(load_run(store_url, run_id))
    run = snap.run
    click.echo(f"run       {run.run_id}")
    click.echo(f"saga      {run.saga} ({run.saga_path}, definition {run.fingerprint})")
    click.echo(f"status    {run.status}")
    if run.failed_step:
        click.echo(f"failed    {run.failed_step}: {run.error}")
    click.echo(f"input     {json.dumps(run.input, sort_keys=True)}")
    click.echo(f"started   {when(run.created_at)}   updated {when(run.updated_at)}")
    if run.lease_owner and not run.finished:
        expired = (run.lease_expires or 0.0) < time.time()
        gone = " (expired: any worker may take the run)" if expired else ""
        click.echo(f"lease     {run.lease_owner} until {when(run.lease_expires)} UTC{gone}")
    if run.status == WAITING_STATUS:
        click.echo(f"waits for {_waits_text(run)}")
    why = None if run.status in ("completed", "compensated") else unimportable(run.saga_path)
    if why is not None:
        click.echo(
            f"note      its saga cannot be imported here ({why}): resume it where it can, or "
            "in code with resume(store, run_id, saga=TheSagaClass)"
        )
    click.echo("")
    steps = [[s.step, s.phase, str(s.attempt), s.error or ""] for s in steps_in_run_order(snap)]
    if steps:
        click.echo(table(["STEP", "PHASE", "ATTEMPT", "LAST ERROR"], steps))
        click.echo("")
    history = [
        [
            str(t.seq),
            when(t.at),
            t.trigger,
            f"{t.source} -> {t.dest}",
            str(t.attempt or ""),
            t.error or "",
        ]
        for t in snap.history
    ]
    click.echo(table(["#", "AT", "TRIGGER", "TRANSITION", "ATTEMPT", "ERROR"], history))
    if snap.signals:
        waiting = waits_of(run)
        signals = [
            [
                sig.event,
                sig.signal_id,
                when(sig.at),
                "taken" if sig.event in snap.steps and sig.event not in waiting else "pending",
                json.dumps(sig.payload, sort_keys=True),
            ]
            for sig in snap.signals.values()
        ]
        click.echo("")
        click.echo(table(["SIGNAL", "ID", "AT", "STATE", "PAYLOAD"], signals))


@runs.command("resume")
@store_option
@broker_option
@click.argument("run_id", required=False)
@click.option("--all", "resume_all", is_flag=True, help="Resume every unfinished run.")
@wait_option
@click.option(
    "--allow-changed",
    is_flag=True,
    help="Resume even if the saga's definition changed since the run started.",
)
def resume_runs(
    store_url: str,
    broker_url: str | None,
    run_id: str | None,
    resume_all: bool,
    wait: bool,
    allow_changed: bool,
) -> None:
    """Drive RUN_ID (or, with --all, every unfinished run) to a terminal state.

    Runs whose lease another worker holds are not touched: they are being driven, or their
    worker died and they can be taken over once the lease runs out (30 s by default). The
    command says how many there are and until when; --wait waits for them (for RUN_ID too).
    """
    if bool(run_id) == resume_all:
        raise click.UsageError("give a RUN_ID or --all, not both and not neither")
    failed = asyncio.run(_resume(store_url, run_id, allow_changed, broker_url, wait))
    if failed:
        raise SystemExit(1)


async def _resume(
    url: str, run_id: str | None, allow_changed: bool, broker: str | None, wait: bool
) -> bool:
    store = await command_store(url, create=False)
    try:
        if run_id is not None:
            try:
                result = await _resume_one(store, run_id, allow_changed, broker, wait)
            except RunWaiting as waits:
                click.echo(f"{run_id}: waiting for {', '.join(waits.events)}")
                return False
            click.echo(f"{run_id}: {result.status.value}")
            return False
        worker = Worker(
            store, allow_changed_definition=allow_changed, broker=broker, log_failures=False
        )
        return await drive_all(worker, wait, nothing="no unfinished runs to resume")
    finally:
        # What runs opened in this loop (senders, lease keepers, a broker by URL) goes first:
        # the senders mark what they sent in the command's store.
        await shutdown()
        await store.close()


async def _resume_one(
    store: SagaStore, run_id: str, allow_changed: bool, broker: str | None, wait: bool
) -> SagaResult:
    """Resume ``run_id``; with ``wait``, first wait (once) for the lease another driver holds
    on it to run out. A lease renewed meanwhile has a live driver: that is an error."""
    waited_for: float | None = None
    while True:
        try:
            return await resume(
                store,
                run_id,
                allow_changed_definition=allow_changed,
                abandon_on_cancel=True,
                broker=broker,
            )
        except LeaseHeld as held:
            if not wait or (waited_for is not None and held.expires > waited_for):
                raise
            waited_for = held.expires
            click.echo(
                f"waiting for the lease {held.owner} holds on {run_id} to run out (at "
                f"{when(held.expires)} UTC); Ctrl-C stops"
            )
            await asyncio.sleep(max(0.0, held.expires - time.time()) + 0.05)
