"""Which observers are listening, and the per-run dispatch from transitions to hooks."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import attrs

from ..clock import Clock
from ..compiler import CompiledSaga
from ..result import SagaStatus
from ..vocabulary import Event, Outcome, SagaTrigger, idempotency_key, parse_name
from .events import RunEvent, StepEvent
from .observer import Observer

_log = logging.getLogger("statesaga.observe")
_lock = threading.Lock()
_observers: tuple[Observer, ...] = ()

#: The saga triggers that end a run, and the status each ends it in.
_ENDINGS: dict[str, SagaStatus] = {
    SagaTrigger.COMPLETE: SagaStatus.COMPLETED,
    SagaTrigger.FINISH: SagaStatus.COMPENSATED,
    SagaTrigger.GIVE_UP: SagaStatus.FAILED,
    SagaTrigger.HALT: SagaStatus.FAILED,
}
#: Step events and the hook each calls (retries are handled on their own).
_STEP_HOOKS: dict[str, str] = {
    Event.START: "step_started",
    Event.SUCCEED: "step_succeeded",
    Event.FAIL: "step_failed",
    Event.INVALID_RESULT: "step_failed",
    Event.TIME_OUT: "step_timed_out",
    Event.COMPENSATE: "compensation_started",
    Event.COMPENSATION_DONE: "compensation_succeeded",
    Event.COMPENSATION_FAIL: "compensation_failed",
    Event.SKIP: "step_skipped",
}
#: A wait's events (``fail`` and ``time_out`` are also a step's: told apart by the plan).
_OF_WAITS = frozenset((Event.WAIT, Event.SIGNAL, Event.TIME_OUT, Event.FAIL))
#: How each event that ends a wait ends it.
_WAIT_OUTCOMES: dict[str, str] = {
    Event.SIGNAL: "signalled",
    Event.TIME_OUT: Outcome.TIMED_OUT.value,
    Event.FAIL: "given_up",
}
_STARTS_ATTEMPT = frozenset((Event.START, Event.COMPENSATE))
_ENDS_ATTEMPT = frozenset(
    (
        Event.SUCCEED,
        Event.FAIL,
        Event.INVALID_RESULT,
        Event.TIME_OUT,
        Event.COMPENSATION_DONE,
        Event.COMPENSATION_FAIL,
    )
)
_OF_COMPENSATION = frozenset(
    (Event.COMPENSATE, Event.RETRY_COMPENSATION, Event.COMPENSATION_DONE, Event.COMPENSATION_FAIL)
)
#: A retry starts the next attempt.
_RETRIES: dict[str, str] = {Event.RETRY: Event.START, Event.RETRY_COMPENSATION: Event.COMPENSATE}


class ObserverErrors:
    """How many times an observer's hook raised (the error itself is logged)."""

    def __init__(self) -> None:
        self.count = 0


#: Hook failures since the process started; the Prometheus adapter exports it.
OBSERVER_ERRORS = ObserverErrors()


def add_observer(observer: Observer) -> None:
    """Call ``observer``'s hooks for every run started from now on, in memory or durable."""
    global _observers
    with _lock:
        if observer not in _observers:
            _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    """Stop calling ``observer`` for runs started from now on (unknown ones are ignored)."""
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o is not observer)


def observers() -> tuple[Observer, ...]:
    """The observers runs report to, in the order they were added."""
    return _observers


@contextmanager
def observing(*added: Observer) -> Iterator[None]:
    """Add observers for the duration of a ``with`` block (handy in tests)."""
    for observer in added:
        add_observer(observer)
    try:
        yield
    finally:
        for observer in added:
            remove_observer(observer)


class _RunView(Protocol):
    compiled: CompiledSaga
    failed_step: str | None
    error: BaseException | None
    wait_started: dict[str, float]


class RunObservation:
    """Turns one run's transitions into hook calls on the observers listening when it began."""

    __slots__ = ("_attempt_started", "_clock", "_observers", "_run", "_started", "saga", "saga_id")

    def __init__(
        self, observers: tuple[Observer, ...], saga: str, saga_id: str, clock: Clock, run: _RunView
    ) -> None:
        self._observers = observers
        self.saga = saga
        self.saga_id = saga_id
        self._clock = clock
        self._run = run
        self._started = clock.monotonic()
        # (step, compensating) -> monotonic start of its current attempt
        self._attempt_started: dict[tuple[str, bool], float] = {}

    def started(self, *, resumed: bool) -> None:
        """The run began (or was taken over)."""
        self._emit("run_started", self._run_event(resumed=resumed))

    def suspended(self, error: BaseException | None = None) -> None:
        """The run stopped without reaching a final state (``error`` says why, if not a
        cancellation)."""
        cause = None if isinstance(error, asyncio.CancelledError) else error
        self._emit("run_suspended", attrs.evolve(self._run_event(ended=True), error=cause))

    def retrying(
        self, step: str, attempt: int, error: BaseException, *, compensating: bool
    ) -> None:
        """An attempt failed and another follows after a pause (reported before the pause)."""
        duration = self._attempt_duration(step, compensating)
        hook = "compensation_retried" if compensating else "step_retried"
        self._emit(hook, self._step_event(step, attempt, compensating, error, duration))

    def transition(self, trigger: str, attempt: int, error: BaseException | None) -> None:
        """Report the transition the engine just took."""
        step, kind = parse_name(trigger)
        if step is None:
            status = _ENDINGS.get(kind)
            if status is not None:
                self._emit("run_finished", self._run_event(ended=True, status=status))
            return
        compensating = kind in _OF_COMPENSATION
        if kind in _RETRIES:
            # The failed attempt was reported by ``retrying``; this starts the next one (the
            # trigger carries the previous error, which the start event does not).
            kind, error = _RETRIES[kind], None
        # A wait's fail before it began is its condition raising: a step's failure.
        if (
            kind in _OF_WAITS
            and self._run.compiled.by_name[step].wait
            and (kind == Event.WAIT or step in self._run.wait_started)
        ):
            self._wait(step, kind, error)
            return
        hook = _STEP_HOOKS.get(kind)
        if hook is None:
            return  # interrupt, cancellation bookkeeping: no hook
        duration = None
        if kind in _STARTS_ATTEMPT:
            self._attempt_started[step, compensating] = self._clock.monotonic()
        elif kind in _ENDS_ATTEMPT:
            duration = self._attempt_duration(step, compensating)
        self._emit(hook, self._step_event(step, attempt, compensating, error, duration))

    def _wait(self, step: str, kind: str, error: BaseException | None) -> None:
        if kind == Event.WAIT:
            self._emit("wait_started", self._step_event(step, 0, False, None))
            return
        began = self._run.wait_started.get(step)
        event = attrs.evolve(
            self._step_event(step, 0, False, error),
            duration=None if began is None else max(0.0, self._clock.time() - began),
            outcome=_WAIT_OUTCOMES[kind],
        )
        self._emit("wait_ended", event)

    def _attempt_duration(self, step: str, compensating: bool) -> float | None:
        """Seconds since the current attempt of ``step`` (or its compensation) began."""
        began = self._attempt_started.pop((step, compensating), None)
        return None if began is None else self._clock.monotonic() - began

    def _run_event(
        self, *, resumed: bool = False, ended: bool = False, status: SagaStatus | None = None
    ) -> RunEvent:
        run = self._run
        return RunEvent(
            saga=self.saga,
            saga_id=self.saga_id,
            at=self._clock.time(),
            resumed=resumed,
            status=status,
            duration=self._clock.monotonic() - self._started if ended else None,
            failed_step=run.failed_step,
            error=run.error,
        )

    def _step_event(
        self,
        step: str,
        attempt: int,
        compensating: bool,
        error: BaseException | None,
        duration: float | None = None,
    ) -> StepEvent:
        return StepEvent(
            saga=self.saga,
            saga_id=self.saga_id,
            step=step,
            attempt=attempt,
            idempotency_key=idempotency_key(self.saga_id, step, compensating=compensating),
            at=self._clock.time(),
            compensating=compensating,
            error=error,
            duration=duration,
        )

    def _emit(self, hook: str, event: RunEvent | StepEvent) -> None:
        for observer in self._observers:
            try:
                getattr(observer, hook)(event)
            except Exception:
                # An observer must never break a saga: note it and go on.
                OBSERVER_ERRORS.count += 1
                _log.exception(
                    "observer %r failed in %s for run %s; the saga goes on",
                    observer,
                    hook,
                    self.saga_id,
                )


def begin(saga: str, saga_id: str, clock: Clock, run: _RunView) -> RunObservation | None:
    """A run's observation, or ``None`` when nobody listens (the engine then skips it all)."""
    current = _observers
    return RunObservation(current, saga, saga_id, clock, run) if current else None
