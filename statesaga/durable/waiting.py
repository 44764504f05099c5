"""Stored runs that wait: signals delivered from any process, and following a run to its end.

A run parked at its waits is rows. ``signal`` commits a signal (the store makes the run due
at once); ``follow`` drives a run on whenever it is due, until it ends, as the process that
started it does while it awaits the result. Workers find due runs on their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..clock import SYSTEM_CLOCK, Clock
from ..compiler import CompiledSaga, compile_saga
from ..errors import LeaseHeld, RunWaiting, SignalArrived, SignalRefused, StatesagaError
from ..ids import new_run_id
from ..json_data import as_stored
from ..result import SagaResult
from ..store.base import SagaStore, SignalRecord
from ..vocabulary import CANCEL_EVENT, WAITING_STATUS
from .drive import drive_stored, finished_result, saga_of, start
from .resources import StoreLike, open_store

if TYPE_CHECKING:
    from ..definition import SagaDefinition
    from ..messaging.broker import Broker

_log = logging.getLogger("statesaga.worker")

#: How often a process following a waiting run looks at the store, when no signal sent from
#: this process wakes it first (a signal from another process is seen within this).
FOLLOW_POLL = 0.25

# Runs this process follows, by loop and run id: a signal sent from here wakes them at once.
_FOLLOWED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Event]] = (
    weakref.WeakKeyDictionary()
)


async def signal(
    store: StoreLike,
    run_id: str,
    event: str,
    payload: Mapping[str, Any] | None = None,
    *,
    signal_id: str | None = None,
    saga: type[SagaDefinition] | None = None,
) -> bool:
    """Deliver the signal ``event`` to a stored run's wait of that name, from any process.

    It is committed before this returns; a run that has not reached its wait yet takes it
    when it gets there. Of two signals for one wait the first committed wins; a signal and
    the wait's timeout race the same way.

    Args:
        store: The store (or its URL).
        run_id: The run.
        event: The wait's name.
        payload: JSON data (a mapping; ``None`` is ``{}``): the wait's result.
        signal_id: Makes the signal idempotent: the same id again is a duplicate.
        saga: The saga class; by default imported from the path stored with the run.

    Returns:
        ``True`` if accepted, ``False`` if ``signal_id`` was accepted before (same event and
        payload: not applied again).

    Raises:
        RunNotFound: No such run.
        SignalRefused: The saga has no wait for ``event``, the wait is over or was already
            signalled, the run has ended, or ``signal_id`` was used with another payload.
        SagaNotImportable: The run's saga cannot be imported here (pass ``saga``).
        StoreError: ``payload`` is not JSON data; nothing was delivered.
    """
    opened = await open_store(store)
    snapshot = await opened.load(run_id)
    compiled = compile_saga(saga or saga_of(snapshot))
    check_event(compiled, run_id, event)
    data = payload_as_stored(payload, run_id, event)
    accepted = await opened.add_signal(
        SignalRecord(run_id, signal_id or new_run_id(), event, data, time.time())
    )
    _wake(run_id)
    return accepted


async def request_cancel(store: StoreLike, run_id: str) -> bool:
    """Ask a stored run to stop: a waiting run is compensated when it is next driven (at
    once by a process following it or by a worker); a run being driven elsewhere stops when
    it next waits or is resumed. ``False`` if it was asked before."""
    opened = await open_store(store)
    record = (await opened.load(run_id)).run
    asked = "cancellation of"
    if record.finished:  # checked first: a request made before it ended is no answer now
        reason = f"the run has finished: it is {record.status}"
        raise SignalRefused(run_id, CANCEL_EVENT, reason, asked=asked)
    try:
        accepted = await opened.add_signal(
            SignalRecord(run_id, CANCEL_EVENT, CANCEL_EVENT, {}, time.time())
        )
    except SignalRefused as refused:
        raise SignalRefused(run_id, CANCEL_EVENT, refused.reason, asked=asked) from None
    _wake(run_id)
    return accepted


def check_event(compiled: CompiledSaga, run_id: str, event: str) -> None:
    """Raise ``SignalRefused`` unless ``compiled`` has a wait named ``event``."""
    plan = compiled.by_name.get(event)
    if plan is None or not plan.wait:
        waits = ", ".join(p.name for p in compiled.steps if p.wait) or "none"
        raise SignalRefused(
            run_id, event, f"saga {compiled.name} has no wait for it (its waits: {waits})"
        )


def payload_as_stored(value: object, run_id: str, event: str) -> dict[str, Any]:
    """A signal's payload as it is stored and delivered (``None`` is ``{}``); a payload that
    is not a mapping is refused, one that is not JSON data raises ``StoreError``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SignalRefused(
            run_id,
            event,
            f"its payload is {type(value).__name__}, not a mapping such as a dict (or None)",
        )
    stored: dict[str, Any] = as_stored(dict(value), what="signal payload", run_id=run_id)
    return stored


async def follow(
    store: SagaStore,
    run_id: str,
    *,
    saga: type[SagaDefinition] | None,
    clock: Clock | None,
    broker: Broker | str | None,
    abandon_on_cancel: bool = False,
) -> SagaResult:
    """Drive a stored run on whenever it is due (a signal came, a timeout passed, or its
    driver went away), until it ends; its result.

    ``abandon_on_cancel``: cancelling it while it drives leaves the run to a worker (as a
    crash would) instead of compensating it."""
    while True:
        snapshot = await store.load(run_id)
        record = snapshot.run
        if record.finished:
            return finished_result(snapshot)
        now = (clock or SYSTEM_CLOCK).time()  # wake_at is the run's clock's time
        if record.status == WAITING_STATUS and (record.wake_at is None or record.wake_at > now):
            await _sleep(run_id, math.inf if record.wake_at is None else record.wake_at - now)
            continue
        try:
            result = await drive_stored(
                store,
                run_id,
                saga=saga,
                allow_changed_definition=False,
                clock=clock,
                abandon_on_cancel=abandon_on_cancel,
                broker=broker,
            )
        except (RunWaiting, SignalArrived):
            continue
        except LeaseHeld:  # driven by another process: look again soon
            await _sleep(run_id, FOLLOW_POLL)
            continue
        if result is not None:
            return result


async def _sleep(run_id: str, seconds: float) -> None:
    """Sleep up to ``seconds`` (at most ``FOLLOW_POLL``), less if a signal is sent to
    ``run_id`` from this process meanwhile."""
    loop = asyncio.get_running_loop()
    followed = _FOLLOWED.setdefault(loop, {})
    woken = followed.setdefault(run_id, asyncio.Event())
    try:
        async with asyncio.timeout(max(0.0, min(seconds, FOLLOW_POLL))):
            await woken.wait()
    except TimeoutError:
        pass
    finally:
        if followed.get(run_id) is woken:
            del followed[run_id]


def _wake(run_id: str) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    woken = _FOLLOWED.get(loop, {}).get(run_id)
    if woken is not None:
        woken.set()


async def execute(
    compiled: CompiledSaga,
    data: Mapping[str, Any],
    saga_id: str,
    clock: Clock,
    store: StoreLike,
    broker: Broker | str | None = None,
    *,
    recorded: asyncio.Future[None] | None = None,
    abandon_on_cancel: bool = False,
) -> SagaResult:
    """Run a new saga durably to its end: drive it, and whenever it waits, follow it until
    its signals or timeouts let it go on (see ``drive.start`` for ``recorded``, ``follow``
    for ``abandon_on_cancel``)."""
    try:
        return await start(
            compiled,
            data,
            saga_id,
            clock,
            store,
            broker,
            recorded=recorded,
            abandon_on_cancel=abandon_on_cancel,
        )
    except (RunWaiting, SignalArrived):
        pass
    return await follow(
        await open_store(store),
        saga_id,
        saga=compiled.saga,
        clock=clock,
        broker=broker,
        abandon_on_cancel=abandon_on_cancel,
    )


def listen_for_signals(store: SagaStore, signalled: asyncio.Event) -> asyncio.Task[None] | None:
    """A task that sets ``signalled`` whenever ``store`` announces a signal (PostgreSQL's
    notifications), or ``None`` for a store that does not (it is polled)."""
    heard = getattr(store, "signals_heard", None)
    if heard is None:
        return None

    async def listen() -> None:
        while True:
            try:
                async for _ in heard():
                    signalled.set()
            except StatesagaError as error:  # the connection went: poll meanwhile, then again
                _log.warning("not hearing signals (%s); polling until it works again", error)
            except Exception as error:  # a dropped connection, most often: no traceback
                _log.warning(
                    "not hearing signals (%s: %s); polling until it works again",
                    type(error).__name__,
                    " ".join(str(error).split()),
                    exc_info=_log.isEnabledFor(logging.DEBUG),
                )
            await asyncio.sleep(5.0)

    return asyncio.get_running_loop().create_task(listen(), name="statesaga:signals")
