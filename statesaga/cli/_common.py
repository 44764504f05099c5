"""What several commands share: the ``--store``, ``--broker`` and ``--wait`` options, a store
opened for one command, driving unfinished runs once, and how tables, times, store URLs and
leases are shown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..errors import RunWaiting, StatesagaError, StoreNotFound
from ..messaging.brokers import check_broker_url
from ..store import DEFAULT_URL, ENV_VAR, SagaStore, hide_password, store_from_url
from ..store.base import RunRecord, RunSnapshot
from ..vocabulary import WAITING, parse_name
from ..worker import Worker

#: Environment variable naming the broker of the ``relay``, ``worker`` and ``runs resume``
#: commands.
BROKER_ENV_VAR = "STATESAGA_BROKER"


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


def checked_broker_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``--broker`` callback: a URL that names no usable broker is a usage error (exit code
    2), refused before the command starts rather than found out by each run it drives."""
    if value is not None:
        try:
            check_broker_url(value)
        except StatesagaError as error:
            raise click.BadParameter(str(error)) from None
    return value


#: The broker a command reads from or publishes to, which it cannot do without.
required_broker_option = click.option(
    "--broker",
    "broker_url",
    envvar=BROKER_ENV_VAR,
    required=True,
    callback=checked_broker_url,
    help=f"Broker URL (amqp://..., nats://..., redis://...); ${BROKER_ENV_VAR} sets it. memory:// "
    "is a broker inside this process only, for trying things out: what it is sent is lost.",
)


async def until_signalled(
    run: Callable[[asyncio.Event], Awaitable[Any]],
    stopping: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``run(stop)`` until it returns. Ctrl-C or SIGTERM sets ``stop`` (finish what is in
    hand; ``stopping`` is called then); a second one cancels it (stop now). A ``stop`` given
    may be set already (a signal that came while the command started)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(run(stop))

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        elif stopping is not None:
            stopping()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    with contextlib.suppress(asyncio.CancelledError):
        await task


#: The broker a command that drives runs publishes their emitted messages to.
broker_option = click.option(
    "--broker",
    "broker_url",
    envvar=BROKER_ENV_VAR,
    callback=checked_broker_url,
    help="Publish emitted messages right after each commit to this broker (amqp://...); "
    f"${BROKER_ENV_VAR} sets it. Without one they wait in the outbox for `statesaga relay`.",
)

wait_option = click.option(
    "--wait",
    is_flag=True,
    help="Also wait for the leases other workers hold on unfinished runs, and take each run "
    "over when its lease runs out (a run whose lease is renewed meanwhile is left to its live "
    "worker).",
)


async def command_store(url: str | None, *, create: bool = True) -> SagaStore:
    """A store of its own for one command, which closes it; with ``create=False``, one that
    must exist already (``StoreNotFound``): a command that only reads or changes what is
    stored finds a wrong URL, rather than an empty store it made."""
    store = store_from_url(url)
    await store.open(create=create)
    return store


async def serving_store(url: str, what: str) -> SagaStore:
    """``command_store(url)`` for a command that serves a store (``what``: worker, relay):
    created if missing, as runs do, but said so, since a mistyped path or ``?schema=`` would
    otherwise look like a store with nothing to do."""
    try:
        return await command_store(url, create=False)
    except StoreNotFound as missing:
        store = await command_store(url)  # what is there, if not a store, is refused here
        if not missing.foreign:
            click.echo(
                f"{what}: there was no statesaga store at {missing.url} ({missing.reason}): "
                "created an empty one. If you meant an existing store, check the URL (its "
                "file path, or its ?schema=)",
                err=True,
            )
        return store


async def store_unless_stopped(url: str, stop: asyncio.Event, what: str) -> SagaStore | None:
    """``serving_store(url, what)`` for a command that runs until told to stop, or ``None`` if
    SIGTERM or Ctrl-C came while it opened: it holds nothing yet, so ``what`` (the command)
    says so and stops, rather than dying of the signal or waiting for a store that does not
    answer. A signal sets ``stop``, also one that comes after the store opened and before the
    command installs handlers of its own."""
    opening = asyncio.ensure_future(serving_store(url, what))

    def stopped() -> None:
        stop.set()
        opening.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stopped)
    try:
        return await opening
    except asyncio.CancelledError:
        if not (stop.is_set() and opening.cancelled()):
            raise
        click.echo(f"{what} stopped before its store opened", err=True)
        return None


async def load_run(url: str | None, run_id: str) -> RunSnapshot:
    """Run ``run_id`` as stored at ``url`` (``None``: ``$STATESAGA_STORE`` or the default)."""
    store = await command_store(url, create=False)
    try:
        return await store.load(run_id)
    finally:
        await store.close()


def _until(waiting: RunWaiting) -> str:
    if waiting.wake_at is None:
        return ""
    return f" until {when(waiting.wake_at)} UTC"


async def drive_all(worker: Worker, wait: bool, *, nothing: str) -> bool:
    """Drive what is free now (with ``wait``, also what other leases hold), printing each
    outcome and what is left; whether a run it found could not be driven (it failed, its saga
    could not be imported, or another worker leased it first). Runs leased to others when it
    looked are not counted: they are being driven, or wait for their lease to run out.

    The ``worker`` should not log failures itself (``log_failures=False``): each is printed
    here."""
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
        elif item.waiting is not None:
            text = f"waiting for {', '.join(item.waiting.events)}{_until(item.waiting)}"
        elif item.error is None:
            text = "a signal came meanwhile: it goes on at the next look"
        else:
            text = f"not resumed: {_why(item.error)}"
        click.echo(f"{item.run_id}: {text}")
    if not recovered and not left:
        click.echo(nothing)
    if left:
        click.echo(_leased_text(left, waited=waited))
    return any(item.error is not None for item in recovered)


def _why(error: Exception | None) -> str:
    # A statesaga error says what happened; another is a bug, named by its type.
    if isinstance(error, StatesagaError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _say_waiting(records: Sequence[RunRecord]) -> None:
    last = max(r.lease_expires or 0.0 for r in records)
    click.echo(
        f"waiting for {counted(len(records), 'lease')} to run out (the last at {when(last)} "
        "UTC); Ctrl-C stops"
    )


def _leased_text(records: Sequence[RunRecord], *, waited: bool) -> str:
    owners = Counter(r.lease_owner or "?" for r in records)
    last = max(r.lease_expires or 0.0 for r in records)
    by = ", ".join(f"{owner} ({n})" for owner, n in owners.most_common())
    runs = counted(len(records), "unfinished run")
    if waited:
        return f"{runs} left to live workers, which renewed their leases: {by}"
    return (
        f"{runs} leased by other workers until {when(last)} UTC at the latest ({by}): they "
        "are being driven, or their worker stopped and they can be taken over when the leases "
        "run out; run this again then, or add --wait"
    )


def shown(url: str) -> str:
    """``url`` for messages: no password, and a relative SQLite path also resolved (the file
    is found from the current folder)."""
    text = hide_password(url)
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "sqlite" and rest.startswith("/") and not rest.startswith("//"):
        text += f" ({Path(rest[1:]).resolve()})"
    return text


def when(epoch: float | None) -> str:
    """``epoch`` as a UTC date and time, ``-`` for none."""
    if epoch is None:
        return "-"
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):  # a foreign row's, or a test clock's, time
        return f"{epoch:g} s after 1970 (no calendar date)"


def waits_of(record: RunRecord) -> list[str]:
    """The events a stored run is waiting for (its regions in a wait's ``waiting`` state)."""
    return [
        step
        for step, phase in map(parse_name, record.config.values())
        if step is not None and phase == WAITING
    ]


def counted(n: int, noun: str) -> str:
    """``n noun``, the noun plural unless ``n`` is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``headers``, in columns as wide as their widest cell."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
