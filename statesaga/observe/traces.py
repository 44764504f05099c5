"""OpenTelemetry spans: one per run, a child per step attempt, compensation attempt and wait.

Needs ``opentelemetry-api`` (and an SDK to export): ``pip install 'statesaga[otel]'``,
imported when the observer is created.

While an attempt runs, its span is the current span, so spans an action starts itself nest
under it. Hooks run in the task that calls the action, right before and right after the call,
which is what makes attaching the span's context there safe.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import RunWaiting
from ..result import SagaStatus
from ..vocabulary import WAITING_STATUS, Outcome
from ._extras import MissingExtraError, needs
from .events import RunEvent, StepEvent
from .observer import Observer

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context as OtelContext
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["MissingExtraError", "TracingObserver"]

#: Attribute names, shared by run and attempt spans.
SAGA = "statesaga.saga"
SAGA_ID = "statesaga.saga_id"
STEP = "statesaga.step"
ATTEMPT = "statesaga.attempt"
IDEMPOTENCY_KEY = "statesaga.idempotency_key"
COMPENSATING = "statesaga.compensating"
OUTCOME = "statesaga.outcome"
STATUS = "statesaga.status"
RESUMED = "statesaga.resumed"
FAILED_STEP = "statesaga.failed_step"
ERROR = "statesaga.error"
WAITED = "statesaga.waited"
WAITING_FOR = "statesaga.waiting_for"
WAKE_AT = "statesaga.wake_at"


def _task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: hooks called by hand
        return None


class _Open:
    """A span this observer started and has not ended, and the context it made current."""

    __slots__ = ("span", "task", "token")

    def __init__(self, span: Span, token: Token[OtelContext] | None) -> None:
        self.span = span
        self.token = token
        self.task = _task()


class _RunSpans:
    """One run's span and the attempt spans open under it."""

    __slots__ = ("context", "open", "run", "started", "waits")

    def __init__(self, run: _Open, context: OtelContext, started: int) -> None:
        self.run = run
        self.context = context  # the run span's context: every attempt's parent
        self.started = started  # when this process began driving the run (ns since the epoch)
        self.open: dict[tuple[str, bool], _Open] = {}
        self.waits: dict[str, _Open] = {}


class TracingObserver(Observer):
    """Traces runs: a span per run and, under it, a span per attempt of an action or undo,
    and per wait.

    Span names: ``saga <Saga>`` for a run, ``step <step>`` for an attempt of an action,
    ``compensate <step>`` for an attempt of a compensation and ``wait <wait>`` for a wait. A
    run's span is a child of the span current where the run was started.

    Args:
        tracer_provider: Where spans go; by default OpenTelemetry's global provider.

    Raises:
        MissingExtraError: ``opentelemetry-api`` is not installed.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        with needs("TracingObserver", "opentelemetry", "otel"):
            from opentelemetry import context, trace
        self._attach = context.attach
        self._detach = context.detach
        self._in_context = trace.set_span_in_context
        self._status = trace.Status
        self._error_code = trace.StatusCode.ERROR
        self._tracer = trace.get_tracer("statesaga", __version__, tracer_provider=tracer_provider)
        self._runs: dict[str, _RunSpans] = {}

    # -- runs ---------------------------------------------------------------------------------

    def run_started(self, event: RunEvent) -> None:
        started = time.time_ns()
        span = self._tracer.start_span(
            f"saga {event.saga}",
            attributes={SAGA: event.saga, SAGA_ID: event.saga_id, RESUMED: event.resumed},
            start_time=started,
        )
        context = self._in_context(span)
        # Current for the run's own task too, so that anything traced between steps (a
        # store's queries, say) lands under the run.
        opened = _Open(span, self._attach(context))
        self._runs[event.saga_id] = _RunSpans(opened, context, started)

    def run_finished(self, event: RunEvent) -> None:
        spans = self._runs.pop(event.saga_id, None)
        if spans is None:
            return
        self._close_attempts(spans, Outcome.ABANDONED)
        span = spans.run.span
        status = event.status.value if event.status is not None else "unknown"
        span.set_attribute(STATUS, status)
        if event.status is not SagaStatus.COMPLETED:
            if event.failed_step is not None:
                span.set_attribute(FAILED_STEP, event.failed_step)
            description = status
            if event.failed_step is not None:
                description += f": step {event.failed_step!r} failed"
            if event.error is not None:
                description += f": {_describe(event.error)}"
            self._fail(span, event.error, description)
        self._end(spans.run)

    def run_suspended(self, event: RunEvent) -> None:
        spans = self._runs.pop(event.saga_id, None)
        if spans is None:
            return
        self._close_attempts(spans, Outcome.ABANDONED)
        span, waits = spans.run.span, event.error
        if isinstance(waits, RunWaiting):  # parked at its waits: only rows until it is due
            span.set_attribute(STATUS, WAITING_STATUS)
            details: dict[str, Any] = {WAITING_FOR: list(waits.events)}
            if waits.wake_at is not None:
                details[WAKE_AT] = waits.wake_at
            span.add_event(WAITING_STATUS, details)
        else:
            span.set_attribute(STATUS, "suspended")
            span.add_event("suspended")
            if waits is not None:  # stopped by a store failure or a bug, not cancelled
                self._fail(span, waits, f"stopped: {_describe(waits)}")
        self._end(spans.run)

    def _close_attempts(self, spans: _RunSpans, outcome: Outcome) -> None:
        for wait in spans.waits.values():  # no context attached: any order
            wait.span.set_attribute(OUTCOME, outcome.value)
            self._end(wait)
        spans.waits.clear()
        # Latest first: tokens attached in this task are detached in reverse order.
        for key in reversed(list(spans.open)):
            attempt = spans.open.pop(key)
            attempt.span.set_attribute(OUTCOME, outcome.value)
            self._end(attempt)

    # -- attempts -----------------------------------------------------------------------------

    def step_started(self, event: StepEvent) -> None:
        self._start(event, f"step {event.step}")

    def step_succeeded(self, event: StepEvent) -> None:
        self._finish(event, Outcome.SUCCEEDED)

    def step_retried(self, event: StepEvent) -> None:
        self._finish(event, Outcome.RETRIED)

    def step_failed(self, event: StepEvent) -> None:
        self._finish(event, Outcome.FAILED)

    def step_timed_out(self, event: StepEvent) -> None:
        self._finish(event, Outcome.TIMED_OUT)

    def compensation_started(self, event: StepEvent) -> None:
        self._start(event, f"compensate {event.step}")

    def compensation_retried(self, event: StepEvent) -> None:
        self._finish(event, Outcome.RETRIED)

    def compensation_succeeded(self, event: StepEvent) -> None:
        self._finish(event, Outcome.SUCCEEDED)

    def compensation_failed(self, event: StepEvent) -> None:
        self._finish(event, Outcome.FAILED)

    def _start(self, event: StepEvent, name: str) -> None:
        spans = self._runs.get(event.saga_id)
        span = self._tracer.start_span(
            name,
            context=None if spans is None else spans.context,
            attributes={
                SAGA: event.saga,
                SAGA_ID: event.saga_id,
                STEP: event.step,
                ATTEMPT: event.attempt,
                IDEMPOTENCY_KEY: event.idempotency_key,
                COMPENSATING: event.compensating,
            },
        )
        opened = _Open(span, self._attach(self._in_context(span)))
        if spans is not None:
            spans.open[event.step, event.compensating] = opened
        else:  # not seen starting (cannot happen with the engine): end it right away
            self._end(opened)

    def _finish(self, event: StepEvent, outcome: Outcome) -> None:
        spans = self._runs.get(event.saga_id)
        if spans is None:
            return
        opened = spans.open.pop((event.step, event.compensating), None)
        if opened is None:
            return
        span = opened.span
        span.set_attribute(OUTCOME, outcome.value)
        if event.error is not None:
            self._fail(span, event.error, f"{outcome}: {_describe(event.error)}")
        self._end(opened)

    # -- waits --------------------------------------------------------------------------------

    def wait_started(self, event: StepEvent) -> None:
        spans = self._runs.get(event.saga_id)
        if spans is not None:
            # Not made current: nothing runs inside a wait, and it may end in another task.
            span = self._tracer.start_span(
                f"wait {event.step}", context=spans.context, attributes=_wait_attributes(event)
            )
            spans.waits[event.step] = _Open(span, None)

    def wait_ended(self, event: StepEvent) -> None:
        spans = self._runs.get(event.saga_id)
        if spans is None:
            return
        opened = spans.waits.pop(event.step, None)
        if opened is None:  # begun before this process resumed the run: the rest of it
            span = self._tracer.start_span(
                f"wait {event.step}",
                context=spans.context,
                attributes={**_wait_attributes(event), RESUMED: True},
                start_time=spans.started,
            )
            opened = _Open(span, None)
        span = opened.span
        span.set_attribute(OUTCOME, event.outcome or "unknown")
        if event.duration is not None:
            span.set_attribute(WAITED, event.duration)
        # A timeout that fails the wait is its own failure; a wait given up failed elsewhere.
        if event.error is not None and event.outcome == Outcome.TIMED_OUT:
            self._fail(span, event.error, f"{event.outcome}: {_describe(event.error)}")
        self._end(opened)

    # -- helpers ------------------------------------------------------------------------------

    def _fail(self, span: Span, error: BaseException | str | None, description: str) -> None:
        if isinstance(error, BaseException):
            span.record_exception(error)
        elif error is not None:  # only its text survives, read back from a store
            span.set_attribute(ERROR, error)
        span.set_status(self._status(self._error_code, description))

    def _end(self, opened: _Open) -> None:
        # A context token can only be detached in the task that attached it; a step task
        # abandoned with its run is cancelled, and its context goes with it.
        if opened.token is not None and opened.task is _task():
            self._detach(opened.token)
        opened.span.end()


def _wait_attributes(event: StepEvent) -> dict[str, Any]:
    return {SAGA: event.saga, SAGA_ID: event.saga_id, STEP: event.step}


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"
