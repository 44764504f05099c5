"""``statesaga worker``: drive unfinished runs to the end, taking over those whose worker died."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import click

from ..durable.resources import shutdown
from ..observe.metrics import MetricsServer, WaitingRuns, start_metrics_server
from ..worker import Worker
from ._common import (
    broker_option,
    command_store,
    counted,
    drive_all,
    shown,
    store_option,
    wait_option,
)


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
    help="Serve Prometheus metrics, the store's waiting runs among them, on "
    "http://0.0.0.0:PORT/metrics (0: off).",
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

    \b
    Exit codes:
      0  stopped when asked; with --once, every run it found was resumed
         (runs other workers hold leases on are not counted)
      1  with --once, a run it found was not resumed (it failed to resume, its
         saga could not be imported, another worker took it first, or a second
         Ctrl-C left it); or the store or metrics port could not be opened
      2  usage error: a bad option, such as a --broker URL naming no usable broker
    """
    if wait and not once:
        raise click.UsageError("--wait goes with --once (without it the worker waits anyway)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"worker on {shown(store_url)} (concurrency {concurrency})")
    server = None
    if metrics_port:
        try:
            server = start_metrics_server(metrics_port)
        except OSError as error:
            message = f"cannot serve metrics on port {metrics_port}: {error}"
            raise click.ClickException(message) from None
        click.echo(f"metrics on http://0.0.0.0:{server.port}/metrics")
    try:
        failed = asyncio.run(_work(store_url, concurrency, poll, once, broker_url, wait, server))
    finally:
        if server is not None:
            server.close()
    if failed:
        raise SystemExit(1)


async def _work(
    url: str,
    concurrency: int,
    poll: float,
    once: bool,
    broker: str | None = None,
    wait: bool = False,
    metrics: MetricsServer | None = None,
) -> bool:
    """Work until stopped, or with ``once`` drive what is there; whether a run it found (with
    ``once``) was not resumed. With ``metrics``, its endpoint also counts the store's waiting
    runs, asked on this loop at each scrape."""
    store = await command_store(url)
    waiting = None
    if metrics is not None:
        observer = metrics.observer
        waiting = WaitingRuns(store, namespace=observer.namespace, labels=observer.labels)
        observer.registry.register(waiting)
    stop = asyncio.Event()
    # With --once each outcome is printed, failures too: the worker does not log them again.
    w = Worker(store, concurrency=concurrency, poll=poll, broker=broker, log_failures=not once)
    nothing = "nothing to recover"
    task = asyncio.ensure_future(drive_all(w, wait, nothing=nothing) if once else w.run(stop))
    abandoned = 0

    def on_signal() -> None:
        # First signal: take no new runs, let the ones in hand finish. Second: stop now; the
        # runs in hand stay resumable and their leases are released.
        nonlocal abandoned
        if stop.is_set():
            abandoned = len(w.in_hand)
            click.echo(
                f"stopping now: {counted(abandoned, 'run')} left for any worker to resume",
                err=True,
            )
            task.cancel()
            return
        stop.set()
        w.stop_taking()
        click.echo(stopping_text(sorted(w.in_hand)), err=True)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            return bool(await task) or (once and abandoned > 0)
        return once and abandoned > 0
    finally:
        # What runs opened in this loop (senders, lease keepers, a broker by URL) goes first:
        # the senders mark what they sent in the command's store.
        await shutdown()
        if metrics is not None and waiting is not None:
            metrics.observer.registry.unregister(waiting)
        await store.close()


def stopping_text(hand: Sequence[str]) -> str:
    """What the first Ctrl-C says: the runs in ``hand`` (the first five named) that the worker
    waits for, and that a second Ctrl-C leaves them resumable."""
    if not hand:
        return "stopping: no run in hand"
    named = ", ".join(hand[:5]) + (", ..." if len(hand) > 5 else "")
    they = "it stays" if len(hand) == 1 else "they stay"
    return (
        f"stopping: taking no new runs; waiting for {counted(len(hand), 'run')} in hand to "
        f"finish ({named}). Press Ctrl-C again to stop at once: {they} resumable."
    )
