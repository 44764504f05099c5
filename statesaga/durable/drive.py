"""Durable runs: start a run in a store, rebuild one from its records, resume it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..clock import SYSTEM_CLOCK, Clock
from ..compiler import CompiledSaga, compile_saga
from ..definition import SagaDefinition
from ..engine import Driver, drive_to_result
from ..engine.state import RunState, initial_config, progress
from ..errors import DefinitionChangedError, RecordedError, RunExists, StatesagaError
from ..errors import SagaNotImportable as SagaNotImportable
from ..json_data import as_stored
from ..loader import TargetError, load_saga, saga_reference, unimportable
from ..result import SagaResult, SagaStatus
from ..store import MemoryStore, SagaStore, StoreError
from ..store.base import LeaseHeld, RunRecord, RunSnapshot
from ..vocabulary import CANCEL_EVENT, TERMINAL, Phase, SagaState, SagaTrigger
from .journal import Journal
from .leases import LEASE_SECONDS, owner_id
from .resources import StoreLike, loop_resources, open_store

if TYPE_CHECKING:
    from ..messaging.broker import Broker
    from ..messaging.sender import Sender

log = logging.getLogger("statesaga")

# Saga classes whose stored reference was checked (once each: the check may look at files).
_WARNED: weakref.WeakSet[type[SagaDefinition]] = weakref.WeakSet()


def checked_input(compiled: CompiledSaga, data: Mapping[str, Any], saga_id: str) -> Any:
    """``data`` in its stored form (the run reads that, as a resumed one will), refused
    before anything is stored if it cannot be; a saga that another process could not import
    is warned about once."""
    stored = as_stored(dict(data), what="input", run_id=saga_id)
    if compiled.saga not in _WARNED:
        _WARNED.add(compiled.saga)
        reference = saga_reference(compiled.saga)
        why = unimportable(reference)
        if why is not None:
            log.warning(
                "runs of saga %s are stored as %r, which another process cannot import (%s): "
                "workers and `statesaga runs resume` will not resume them; define the saga in "
                "a module, or resume them with resume(store, run_id, saga=%s)",
                compiled.name,
                reference,
                why,
                compiled.saga.__name__,
            )
    return stored


def new_record(compiled: CompiledSaga, data: Any, saga_id: str, *, leased: bool) -> RunRecord:
    """A new run of ``compiled`` on ``data`` (its stored form), leased to this process from
    now, or to nobody."""
    now = time.time()  # leases are wall-clock times, whatever clock the run uses
    return RunRecord(
        run_id=saga_id,
        saga=compiled.name,
        saga_path=saga_reference(compiled.saga),
        fingerprint=compiled.fingerprint,
        input=data,
        status=compiled.initial,
        config=initial_config(compiled),
        version=0,
        lease_owner=owner_id() if leased else None,
        lease_expires=now + LEASE_SECONDS if leased else None,
        created_at=now,
        updated_at=now,
    )


async def submit(
    compiled: CompiledSaga, data: Mapping[str, Any], saga_id: str, store: StoreLike
) -> str:
    """Record a new run that nobody drives yet, for a worker to take; its id.

    Refused before anything is stored: input that cannot be stored, a saga that another
    process cannot import, and a memory store (no worker could ever see the run).
    """
    stored = as_stored(dict(data), what="input", run_id=saga_id)
    reference = saga_reference(compiled.saga)
    why = unimportable(reference)
    if why is not None:
        raise StatesagaError(
            f"runs of saga {compiled.name} would be stored as {reference!r}, which another "
            f"process cannot import ({why}): no worker could drive a submitted run. Define "
            "the saga in a module the workers import, or drive the run here with start()"
        )
    if isinstance(store, MemoryStore) or (isinstance(store, str) and store.startswith("memory:")):
        raise ValueError(
            "submit needs a store that workers share (a sqlite:/// or postgresql:// URL): a "
            "memory store lives in this process only, where nothing would drive the run"
        )
    opened = await open_store(store)
    try:
        await opened.create(new_record(compiled, stored, saga_id, leased=False))
    except RunExists:
        raise RunExists(saga_id) from None  # the store's frames tell a caller nothing
    return saga_id


async def start(
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
    """Run a new saga durably: record it, then drive it, committing every step ahead.

    With ``recorded``, the run is inserted on its own first and the future set then (or
    given the error), for a caller that returns as soon as the run exists; otherwise the
    insert rides on the run's first commit.
    """
    data = checked_input(compiled, data, saga_id)
    opened = await open_store(store)
    record = new_record(compiled, data, saga_id, leased=True)  # its lease from now on
    if recorded is not None:
        try:
            await opened.create(record)
        except BaseException as error:
            recorded.set_exception(error)
            raise
        recorded.set_result(None)
    journal = Journal(
        opened,
        record,
        owner_id(),
        clock,
        create=recorded is None,
        sender=_sender(opened, broker),
    )
    driver = Driver(RunState.new(compiled, data, saga_id), clock, journal)
    try:
        return await _drive_leased(driver, journal, opened, abandon_on_cancel=abandon_on_cancel)
    except RunExists:
        # Raised afresh: the store's frames under the first commit tell a caller nothing.
        raise RunExists(saga_id) from None


def _sender(store: SagaStore, broker: Broker | str | None) -> Sender | None:
    if broker is None:
        return None
    from ..messaging.sender import resolve_broker, sender_for

    return sender_for(store, resolve_broker(broker))


async def _drive_leased(
    driver: Driver, journal: Journal, store: SagaStore, *, abandon_on_cancel: bool = False
) -> SagaResult:
    run = driver.state
    resources = loop_resources()
    keeper = resources.keeper(store)
    keeper.hold(run.saga_id)
    taken = False  # its id was another run's: nothing of it was created
    try:
        try:
            result = await drive_to_result(driver, abandon_on_cancel=abandon_on_cancel)
        except RunExists:
            taken = True
            raise
        except Exception:
            # Stopped by a store error or a bug: messages committed before it are still on
            # their way; let them arrive (or be left to the relay) before giving up.
            with contextlib.suppress(Exception):
                await journal.drain()
            raise
        await journal.drain()  # its messages published, or left to the relay
        return result
    finally:
        keeper.drop(run.saga_id)
        resources.let_go(keeper)
        status = run.status
        if taken or journal.released:
            pass  # never created (the id is another run's), or let go as it parked
        elif status not in TERMINAL or status == SagaState.FAILED:
            # Left unfinished (cancelled past the pivot, abandoned, stopped by a conflict):
            # let another worker take it over now rather than when the lease runs out. Ended
            # failed: a person may resume it at once (a run that ended otherwise needs no
            # lease: nothing resumes it).
            with contextlib.suppress(Exception):
                await store.release(run.saga_id, owner_id())


async def resume(
    store: StoreLike,
    run_id: str,
    *,
    saga: type[SagaDefinition] | None = None,
    allow_changed_definition: bool = False,
    clock: Clock | None = None,
    abandon_on_cancel: bool = False,
    broker: Broker | str | None = None,
) -> SagaResult:
    """Drive a stored run to a terminal state, or report the one it already reached.

    A step recorded as succeeded is never run again; a step recorded as running is run again
    with the same idempotency key; compensations the run owes are finished. A run that ended
    ``failed`` is tried again: if compensations failed, those compensations (the others are
    not repeated); if a step from the pivot on failed or has an unknown outcome, that step,
    with the same idempotency key, and then the rest of the run forward. Workers never do
    this on their own: a person decides when the cause is fixed.

    Args:
        store: The store (or its URL).
        run_id: The run.
        saga: The saga class; by default imported from the path stored with the run.
        allow_changed_definition: Resume even if the saga's definition changed since the run
            started (only when you know the change is compatible).
        clock: Time and randomness for retries.
        abandon_on_cancel: If the caller is cancelled, stop driving at once and leave the
            run resumable, instead of compensating it (what workers and the CLI want).
        broker: Publish the messages its steps emit right after each commit (a broker or
            its URL); without one they wait in the outbox for a relay.

    Raises:
        RunNotFound: No such run.
        LeaseHeld: Another worker is driving it.
        DefinitionChangedError: The saga changed (see ``allow_changed_definition``).
        StoreError: The stored run is corrupt or its saga cannot be imported.
    """
    opened = await open_store(store)
    result = await drive_stored(
        opened,
        run_id,
        saga=saga,
        allow_changed_definition=allow_changed_definition,
        clock=clock,
        abandon_on_cancel=abandon_on_cancel,
        broker=broker,
        retry_failed=True,
    )
    if result is None:  # it had ended already
        return finished_result(await opened.load(run_id))
    return result


async def drive_stored(
    opened: SagaStore,
    run_id: str,
    *,
    saga: type[SagaDefinition] | None,
    allow_changed_definition: bool,
    clock: Clock | None,
    abandon_on_cancel: bool,
    broker: Broker | str | None = None,
    retry_failed: bool = False,
    pause: asyncio.Event | None = None,
) -> SagaResult | None:
    """``resume``, but ``None`` instead of a result when the run had ended before (a worker
    must not report a run another worker finished as one it recovered).

    ``retry_failed``: a run that ended ``failed`` is tried again (``resume`` does this; a
    worker does not: a person decides). ``pause``: once set, the run starts no new step; the
    running ones settle, are committed, and ``RunPaused`` is raised (its lease released).
    """
    snapshot = await opened.load(run_id)
    if snapshot.run.finished and not (retry_failed and retriable(snapshot)):
        return None
    compiled = compile_saga(saga or saga_of(snapshot))
    if compiled.fingerprint != snapshot.run.fingerprint and not allow_changed_definition:
        raise DefinitionChangedError(
            run_id, snapshot.run.saga, snapshot.run.fingerprint, compiled.fingerprint
        )
    clock = clock or SYSTEM_CLOCK
    if loop_resources().driving(opened, run_id):
        raise LeaseHeld(run_id, owner_id(), time.time() + LEASE_SECONDS)  # driven here already
    now = time.time()  # leases are wall-clock times, whatever clock the run uses
    snapshot = await opened.acquire(run_id, owner_id(), now + LEASE_SECONDS, now)
    again = retriable(snapshot) if retry_failed else None
    if snapshot.run.finished and again is None:  # finished by another meanwhile
        await opened.release(run_id, owner_id())
        return None
    try:
        state = RunState.restore(
            compiled,
            snapshot,
            reopen=again == SagaTrigger.REOPEN,
            push=again == SagaTrigger.PUSH_FORWARD,
        )
    except StoreError:
        await opened.release(run_id, owner_id())
        raise
    journal = Journal(
        opened,
        snapshot.run,
        owner_id(),
        clock,
        flushed=len(snapshot.history),
        sender=_sender(opened, broker),
        errors={name: step.error for name, step in snapshot.steps.items() if step.error},
    )
    state.earlier = max(0.0, now - snapshot.run.created_at)
    driver = Driver(state, clock, journal)
    # Asked to stop while it waited, or while another process drove it.
    driver.cancel_requested = CANCEL_EVENT in snapshot.signals
    driver.pause = pause
    return await _drive_leased(driver, journal, opened, abandon_on_cancel=abandon_on_cancel)


def saga_of(snapshot: RunSnapshot) -> type[SagaDefinition]:
    """The saga class of a stored run, imported from the reference stored with it."""
    reference = snapshot.run.saga_path
    try:
        return load_saga(reference)
    except TargetError as error:
        why = unimportable(reference) or str(error)
        raise SagaNotImportable(snapshot.run.run_id, reference, why) from error


#: The phases of a step whose action raised or whose outcome is unknown.
_UNFINISHED = frozenset({Phase.FAILED.value, Phase.IN_DOUBT.value})


def retriable(snapshot: RunSnapshot) -> str | None:
    """How a run that ended ``failed`` can be tried again, if it did.

    ``"reopen"``: compensations failed, and are retried. ``"push_forward"``: a step from the
    pivot on failed or has an unknown outcome (nothing was compensated), and is run again.
    """
    if snapshot.run.status != SagaState.FAILED:
        return None
    phases = {step.phase for step in snapshot.steps.values()}
    if Phase.COMPENSATION_FAILED in phases:
        return SagaTrigger.REOPEN.value
    if phases & {Phase.COMPENSATING, Phase.COMPENSATED} or not phases & _UNFINISHED:
        return None
    return SagaTrigger.PUSH_FORWARD.value


def finished_result(snapshot: RunSnapshot) -> SagaResult:
    """The result of a run that already reached a terminal state (no saga class needed)."""
    record = snapshot.run
    completed, compensated = progress(snapshot)
    skipped = [n for n in completed if snapshot.steps[n].phase == Phase.SKIPPED]
    return SagaResult(
        status=SagaStatus(record.status),
        saga_id=record.run_id,
        completed_steps=tuple(n for n in completed if n not in skipped),
        skipped_steps=tuple(skipped),
        compensated_steps=tuple(compensated),
        failed_step=record.failed_step,
        error=RecordedError(record.error) if record.error else None,
        compensation_errors={
            name: RecordedError(step.error or "compensation failed")
            for name, step in snapshot.steps.items()
            if step.phase == Phase.COMPENSATION_FAILED
        },
        results={n: s.result for n, s in snapshot.steps.items() if s.result is not None},
        duration=_duration(snapshot),
        raw_history=[
            (t.trigger, t.source, t.dest, t.at, t.attempt, t.error) for t in snapshot.history
        ],
    )


def _duration(snapshot: RunSnapshot) -> float:
    """From the run's first transition to its last, both on the run's own clock (its
    ``created_at`` is wall-clock time, whatever clock the run uses)."""
    history = snapshot.history
    if not history:
        return max(0.0, snapshot.run.updated_at - snapshot.run.created_at)
    return history[-1].at - history[0].at
