"""``statesaga runs ...`` and ``statesaga worker``: look at stored runs and drive them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Sequence
from datetime import UTC, datetime

import click

from .durable import resume
from .store import DEFAULT_URL, ENV_VAR, SagaStore, hide_password, store_from_url
from .store.base import TERMINAL, RunRecord, RunSnapshot
from .worker import Worker


async def open_store(url: str) -> SagaStore:
    """A fresh store for one command (closed by the command)."""
    store = store_from_url(url)
    await store.open()
    return store


STATUSES = ("pending", "running", "compensating", *sorted(TERMINAL))

store_option = click.option(
    "--store",
    "store_url",
    envvar=ENV_VAR,
    default=DEFAULT_URL,
    show_default=True,
    help=f"Store URL (sqlite:///file.db, postgresql://..., memory://); ${ENV_VAR} sets it.",
)


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
    """List runs, newest first."""
    records = asyncio.run(_list(store_url, status, saga_name, limit))
    if not records:
        click.echo(f"no runs in {hide_password(store_url)}")
        return
    rows = [
        [r.run_id, r.saga, r.status, r.failed_step or "-", _when(r.created_at), _when(r.updated_at)]
        for r in records
    ]
    click.echo(_table(["RUN", "SAGA", "STATUS", "FAILED STEP", "STARTED", "UPDATED"], rows))


async def _list(url: str, status: str | None, saga: str | None, limit: int) -> list[RunRecord]:
    store = await open_store(url)
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
        click.echo(f"lease     {run.lease_owner} until {_when(run.lease_expires)}")
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
    store = await open_store(url)
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


@runs.command("resume")
@store_option
@broker_option
@click.argument("run_id", required=False)
@click.option("--all", "resume_all", is_flag=True, help="Resume every unfinished run.")
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
    allow_changed: bool,
) -> None:
    """Drive RUN_ID (or, with --all, every unfinished run) to a terminal state."""
    if bool(run_id) == resume_all:
        raise click.UsageError("give a RUN_ID or --all, not both and not neither")
    failed = asyncio.run(_resume(store_url, run_id, allow_changed, broker_url))
    if failed:
        raise SystemExit(1)


async def _resume(url: str, run_id: str | None, allow_changed: bool, broker: str | None) -> bool:
    store = await open_store(url)
    try:
        if run_id is not None:
            result = await resume(
                store,
                run_id,
                allow_changed_definition=allow_changed,
                abandon_on_cancel=True,
                broker=broker,
            )
            click.echo(f"{run_id}: {result.status.value}")
            return False
        worker = Worker(store, allow_changed_definition=allow_changed, broker=broker)
        recovered = await worker.run_once()
        for item in recovered:
            if item.result is not None:
                text = item.result.status.value
            elif item.finished_elsewhere:
                text = "finished meanwhile by another worker"
            else:
                text = f"not resumed: {item.error}"
            click.echo(f"{item.run_id}: {text}")
        if not recovered:
            click.echo("no unfinished runs to resume")
        return any(item.error is not None for item in recovered)
    finally:
        await store.close()


@click.command()
@store_option
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.01, 3600))
@click.option("--once", is_flag=True, help="Recover what is unfinished now, then exit.")
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
    metrics_port: int,
    broker_url: str | None = None,
) -> None:
    """Drive unfinished runs to the end, taking over those whose worker died."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"worker on {hide_password(store_url)} (concurrency {concurrency})")
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
        asyncio.run(_work(store_url, concurrency, poll, once, broker_url))
    finally:
        if server is not None:
            server.close()


async def _work(
    url: str, concurrency: int, poll: float, once: bool, broker: str | None = None
) -> None:
    store = await open_store(url)
    stop = asyncio.Event()
    w = Worker(store, concurrency=concurrency, poll=poll, broker=broker)
    task = asyncio.ensure_future(w.run_once() if once else w.run(stop))

    def on_signal() -> None:
        # First signal: take no new runs, finish the ones in hand. Second (or --once): stop
        # now; the runs in hand stay resumable and their leases are released.
        if stop.is_set() or once:
            task.cancel()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await store.close()
