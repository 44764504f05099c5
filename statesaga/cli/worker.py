"""``statesaga worker``: drive unfinished runs to the end, taking over those whose worker died."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import click

from .._urls import hide_credentials
from ..durable.leases import LEASE_SECONDS
from ..durable.resources import shutdown
from ..observe.collectors import WaitingRuns
from ..observe.health import broker_check, store_check
from ..worker import Worker
from ._common import (
    broker_option,
    counted,
    drive_all,
    shown,
    store_option,
    store_unless_stopped,
    wait_option,
)
from ._health import Endpoints, health_port_option, metrics_port_option


@click.command()
@store_option
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.01, 3600))
@click.option("--once", is_flag=True, help="Recover what is unfinished now, then exit.")
@wait_option
@broker_option
@metrics_port_option
@health_port_option
@click.option(
    "--drain-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0, 86_400),
    metavar="SECONDS",
    help="On SIGTERM or Ctrl-C, how long the runs in hand may take to finish the steps they "
    "are running (no new step starts) before the worker stops anyway.",
)
def worker(
    store_url: str,
    concurrency: int,
    poll: float,
    once: bool,
    wait: bool,
    metrics_port: int,
    health_port: int = 0,
    drain_timeout: float = 30.0,
    broker_url: str | None = None,
) -> None:
    """Drive unfinished runs to the end, taking over those whose worker died.

    Runs are taken as the concurrency frees up, and the store is looked at every --poll
    seconds, busy or not: a run is taken over once its lease runs out (30 s by default,
    $STATESAGA_LEASE_SECONDS) and within one poll. Several workers may share a PostgreSQL
    store; a run is driven by one at a time.

    The first SIGTERM (or Ctrl-C) drains: the worker takes no new run, /readyz answers 503,
    each run in hand finishes the steps it is running and starts no new one, is committed and
    its lease released (any worker goes on with it at once), and the worker exits 0. After
    --drain-timeout seconds, or on a second signal, it stops at once: the runs still in hand
    stay resumable by any worker.

    \b
    Exit codes:
      0  stopped when asked; with --once, every run it found was resumed
         (runs other workers hold leases on are not counted)
      1  with --once, a run it found was not resumed (it failed to resume, its
         saga could not be imported, another worker took it first, or a second
         Ctrl-C left it); or the store or a port could not be opened
      2  usage error: a bad option, such as a --broker URL naming no usable broker
    """
    if wait and not once:
        raise click.UsageError("--wait goes with --once (without it the worker waits anyway)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sending = f", publishing to {hide_credentials(broker_url, tokens=True)}" if broker_url else ""
    click.echo(
        f"worker on {shown(store_url)} (concurrency {concurrency}, poll {poll:g} s, lease "
        f"{LEASE_SECONDS:g} s{sending})"
    )
    ports = (metrics_port, health_port)
    failed = asyncio.run(
        _work(store_url, concurrency, poll, once, broker_url, wait, ports, drain_timeout)
    )
    if failed:
        raise SystemExit(1)


async def _work(
    url: str,
    concurrency: int,
    poll: float,
    once: bool,
    broker: str | None = None,
    wait: bool = False,
    ports: tuple[int, int] = (0, 0),
    drain_timeout: float = 30.0,
) -> bool:
    """Work until stopped, or with ``once`` drive what is there; whether a run it found (with
    ``once``) was not resumed. With a metrics port, its endpoint also counts the store's
    waiting runs, asked on this loop at each scrape."""
    stop = asyncio.Event()
    store = await store_unless_stopped(url, stop, "worker")
    if store is None:
        return False
    # With --once each outcome is printed, failures too: the worker does not log them again.
    w = Worker(store, concurrency=concurrency, poll=poll, broker=broker, log_failures=not once)
    checks = {"store": store_check(store)}
    if broker is not None:
        checks["broker"] = broker_check(broker)
    try:
        served = Endpoints(*ports, lambda: w.beaten_at, poll, checks)
    except BaseException:
        await store.close()
        raise
    waiting = None
    if served.observer is not None:
        observer = served.observer
        waiting = WaitingRuns(store, namespace=observer.namespace, labels=observer.labels)
        observer.registry.register(waiting)
    if stop.is_set():  # told to stop as the store opened: take nothing
        w.stop_taking()
    nothing = "nothing to recover"
    task = asyncio.ensure_future(
        drive_all(w, wait, nothing=nothing) if once else w.run(stop, drain_timeout=drain_timeout)
    )
    abandoned = 0

    def on_signal() -> None:
        # First signal: take no new runs, let the ones in hand settle. Second: stop now; the
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
        if served.health is not None:
            served.health.draining = True
        click.echo(stopping_text(sorted(w.in_hand), None if once else drain_timeout), err=True)

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
        served.close()
        if served.observer is not None and waiting is not None:
            served.observer.registry.unregister(waiting)
        await store.close()
        if not once:
            click.echo("worker stopped", err=True)


def stopping_text(hand: Sequence[str], drain: float | None = None) -> str:
    """What the first Ctrl-C says: the runs in ``hand`` (the first five named) that the worker
    waits for (with ``drain``, for at most that many seconds, each to finish its running
    steps), and that a second Ctrl-C leaves them resumable."""
    if not hand:
        return "stopping: no run in hand"
    named = ", ".join(hand[:5]) + (", ..." if len(hand) > 5 else "")
    they = "it stays" if len(hand) == 1 else "they stay"
    what = "to finish" if drain is None else f"to finish their running steps (at most {drain:g} s)"
    return (
        f"stopping: taking no new runs; waiting for {counted(len(hand), 'run')} in hand {what} "
        f"({named}). Press Ctrl-C again to stop at once: {they} resumable."
    )
