"""``statesaga runs ...`` and ``statesaga worker``: look at stored runs and drive them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from .durable import resume
from .loader import unimportable
from .resources import shutdown
from .result import SagaResult
from .store import DEFAULT_URL, ENV_VAR, SagaStore, hide_password, store_from_url
from .store.base import TERMINAL, LeaseHeld, RunRecord, RunSnapshot
from .worker import Worker


async def command_store(url: str, *, create: bool = True) -> SagaStore:
    """A store of its own for one command, which closes it; with ``create=False``, one that
    must exist already (``StoreNotFound``): a command that only reads or changes what is
    stored finds a wrong URL, rather than an empty store it made."""
    store = store_from_url(url)
    await store.open(create=create)
    return store


STATUSES = ("pending", "running", "compensating", *sorted(TERMINAL))


def _store_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter(
            f"names no store: give a store URL (sqlite:///file.db, postgresql://...), or leave "
            f"out --store and unset ${ENV_VAR} for {DEFAULT_URL}"
        )
    return value


store_option = click.option(
    "--store",
    "store_url",
    envvar=ENV_VAR,
    default=DEFAULT_URL,
    show_default=True,
    callback=_store_url,
    help=f"Store URL (sqlite:///file.db, postgresql://..., memory://); ${ENV_VAR} sets it.",
)


def _shown(url: str) -> str:
    """``url`` for messages: no password, and a relative SQLite path also resolved (the file
    is found from the current folder)."""
    text = hide_password(url)
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "sqlite" and rest.startswith("/") and not rest.startswith("//"):
        text += f" ({Path(rest[1:]).resolve()})"
    return text


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


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
        click.echo(f"no runs {wanted + ' ' if wanted else ''}in {_shown(store_url)}")
        return
    problems = _import_problems(records)
    rows = [
        [
            r.run_id,
            r.saga,
            r.status,
            r.failed_step or "-",
            _when(r.created_at),
            _when(r.updated_at),
            "cannot be resumed here (see below)" if r.saga_path in problems else "",
        ]
        for r in records
    ]
    headers = ["RUN", "SAGA", "STATUS", "FAILED STEP", "STARTED", "UPDATED", "NOTE"]
    if not problems:
        headers.pop()
        rows = [row[:-1] for row in rows]
    click.echo(_table(headers, rows))
    if more:
        click.echo(f"(the newest {limit} shown; --limit shows more)")
    for reference, why in problems.items():
        click.echo(
            f"\n{reference}: cannot be imported here ({why}). Run workers and `statesaga runs "
            "resume` where it can be imported (module names are found from the current "
            "folder), or resume in code with resume(store, run_id, saga=TheSagaClass)."
        )


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
    snap = asyncio.run(_load(store_url, run_id))
    run = snap.run
    click.echo(f"run       {run.run_id}")
    click.echo(f"saga      {run.saga} ({run.saga_path}, definition {run.fingerprint})")
    click.echo(f"status    {run.status}")
    if run.failed_step:
        click.echo(f"failed    {run.failed_step}: {run.error}")
    click.echo(f"input     {json.dumps(run.input, sort_keys=True)}")
    click.echo(f"started   {_when(run.created_at)}   updated {_when(run.updated_at)}")
    if run.lease_owner and not run.finished:
        click.echo(f"lease     {run.lease_owner} until {_when(run.lease_expires)} UTC")
    why = None if run.status in ("completed", "compensated") else unimportable(run.saga_path)
    if why is not None:
        click.echo(
            f"note      its saga cannot be imported here ({why}): resume it where it can, or "
            "in code with resume(store, run_id, saga=TheSagaClass)"
        )
    click.echo("")
    steps = [[s.step, s.phase, str(s.attempt), s.error or ""] for s in snap.steps.values()]
    if steps:
        click.echo(_table(["STEP", "PHASE", "ATTEMPT", "LAST ERROR"], steps))
        click.echo("")
    history = [
        [
            str(t.seq),
            _when(t.at),
            t.trigger,
            f"{t.source} -> {t.dest}",
            str(t.attempt or ""),
            t.error or "",
        ]
        for t in snap.history
    ]
    click.echo(_table(["#", "AT", "TRIGGER", "TRANSITION", "ATTEMPT", "ERROR"], history))


async def _load(url: str, run_id: str) -> RunSnapshot:
    store = await command_store(url, create=False)
    try:
        return await store.load(run_id)
    finally:
        await store.close()


broker_option = click.option(
    "--broker",
    "broker_url",
    envvar="STATESAGA_BROKER",
    help="Publish emitted messages right after each commit to this broker (amqp://...); "
    "$STATESAGA_BROKER sets it. Without one they wait in the outbox for `statesaga relay`.",
)


wait_option = click.option(
    "--wait",
    is_flag=True,
    help="Also wait for the leases other workers hold on unfinished runs, and take each run "
    "over when its lease runs out (a run whose lease is renewed meanwhile is left to its live "
    "worker).",
)


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
            result = await _resume_one(store, run_id, allow_changed, broker, wait)
            click.echo(f"{run_id}: {result.status.value}")
            return False
        worker = Worker(store, allow_changed_definition=allow_changed, broker=broker)
        return await _drive_all(worker, wait, nothing="no unfinished runs to resume")
    finally:
        await store.close()
        await shutdown()


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
                f"{_when(held.expires)} UTC); Ctrl-C stops"
            )
            await asyncio.sleep(max(0.0, held.expires - time.time()) + 0.05)


async def _drive_all(worker: Worker, wait: bool, *, nothing: str) -> bool:
    """Drive what is free now (with ``wait``, also what other leases hold), printing each
    outcome and what is left; whether a run could not be driven."""
    if wait:
        recovered, left = await worker.run_waiting(_say_waiting)
    else:
        recovered, left = await worker.run_once(), await worker.leased_elsewhere()
    waited = wait and worker.taking  # not cut short by Ctrl-C
    for item in recovered:
        if item.result is not None:
            text = item.result.status.value
        elif item.finished_elsewhere:
            text = "finished meanwhile by another worker"
        else:
            text = f"not resumed: {item.error}"
        click.echo(f"{item.run_id}: {text}")
    if not recovered and not left:
        click.echo(nothing)
    if left:
        click.echo(_leased_text(left, waited=waited))
    return any(item.error is not None for item in recovered)


def _say_waiting(records: Sequence[RunRecord]) -> None:
    last = max(r.lease_expires or 0.0 for r in records)
    click.echo(
        f"waiting for {_count(len(records), 'lease')} to run out (the last at {_when(last)} "
        "UTC); Ctrl-C stops"
    )


def _leased_text(records: Sequence[RunRecord], *, waited: bool) -> str:
    owners = Counter(r.lease_owner or "?" for r in records)
    last = max(r.lease_expires or 0.0 for r in records)
    by = ", ".join(f"{owner} ({n})" for owner, n in owners.most_common())
    runs = _count(len(records), "unfinished run")
    if waited:
        return f"{runs} left to live workers, which renewed their leases: {by}"
    return (
        f"{runs} leased by other workers until {_when(last)} UTC at the latest ({by}): they "
        "are being driven, or their worker stopped and they can be taken over when the leases "
        "run out; run this again then, or add --wait"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@click.command()
@store_option
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.01, 3600))
@click.option("--once", is_flag=True, help="Recover what is unfinished now, then exit.")
@wait_option
@broker_option
@click.option(
    "--metrics-port",
    default=0,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve Prometheus metrics on http://0.0.0.0:PORT/metrics (0: off).",
)
def worker(
    store_url: str,
    concurrency: int,
    poll: float,
    once: bool,
    wait: bool,
    metrics_port: int,
    broker_url: str | None = None,
) -> None:
    """Drive unfinished runs to the end, taking over those whose worker died.

    A run is taken over once its lease runs out (30 s by default). The first Ctrl-C (or
    SIGTERM) takes no new run and lets the runs in hand finish, saying which; a second one
    stops at once, leaving those runs resumable by any worker.
    """
    if wait and not once:
        raise click.UsageError("--wait goes with --once (without it the worker waits anyway)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"worker on {_shown(store_url)} (concurrency {concurrency})")
    server = None
    if metrics_port:
        from .observe.metrics import start_metrics_server

        try:
            server = start_metrics_server(metrics_port)
        except OSError as error:
            message = f"cannot serve metrics on port {metrics_port}: {error}"
            raise click.ClickException(message) from None
        click.echo(f"metrics on http://0.0.0.0:{server.port}/metrics")
    try:
        asyncio.run(_work(store_url, concurrency, poll, once, broker_url, wait))
    finally:
        if server is not None:
            server.close()


async def _work(
    url: str,
    concurrency: int,
    poll: float,
    once: bool,
    broker: str | None = None,
    wait: bool = False,
) -> None:
    store = await command_store(url)
    stop = asyncio.Event()
    w = Worker(store, concurrency=concurrency, poll=poll, broker=broker)
    nothing = "nothing to recover"
    task = asyncio.ensure_future(_drive_all(w, wait, nothing=nothing) if once else w.run(stop))

    def on_signal() -> None:
        # First signal: take no new runs, let the ones in hand finish. Second: stop now; the
        # runs in hand stay resumable and their leases are released.
        if stop.is_set():
            click.echo(
                f"stopping now: {_count(len(w.in_hand), 'run')} left for any worker to resume",
                err=True,
            )
            task.cancel()
            return
        stop.set()
        w.stop_taking()
        hand = sorted(w.in_hand)
        if not hand:
            click.echo("stopping: no run in hand", err=True)
            return
        shown = ", ".join(hand[:5]) + (", ..." if len(hand) > 5 else "")
        click.echo(
            f"stopping: taking no new runs; waiting for {_count(len(hand), 'run')} in hand to "
            f"finish ({shown}). Press Ctrl-C again to stop at once: "
            "they stay resumable.",
            err=True,
        )

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await store.close()
        await shutdown()
