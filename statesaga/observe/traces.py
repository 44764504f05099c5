"""OpenTelemetry spans: one per run, a child per step attempt and per compensation attempt.

Needs ``opentelemetry-api`` (and an SDK to export): ``pip install 'statesaga[otel]'``,
imported when the observer is created.

While an attempt runs, its span is the current span, so spans an action starts itself nest
under it. Hooks run in the task that calls the action, right before and right after the call,
which is what makes attaching the span's context there safe.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..result import SagaStatus
from ..vocabulary import Outcome
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

    __slots__ = ("context", "open", "run")

    def __init__(self, run: _Open, context: OtelContext) -> None:
        self.run = run
        self.context = context  # the run span's context: every attempt's parent
        self.open: dict[tuple[str, bool], _Open] = {}


class TracingObserver(Observer):
    """Traces runs: a span per run and, under it, a span per attempt of an action or undo.

    Span names: ``saga <Saga>`` for a run, ``step <step>`` for an attempt of an action and
    ``compensate <step>`` for an attempt of a compensation. A run's span is a child of the span
    current where the run was started.

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
        span = self._tracer.start_span(
            f"saga {event.saga}",
            attributes={SAGA: event.saga, SAGA_ID: event.saga_id, RESUMED: event.resumed},
        )
        context = self._in_context(span)
        # Current for the run's own task too, so that anything traced between steps (a
        # store's queries, say) lands under the run.
        self._runs[event.saga_id] = _RunSpans(_Open(span, self._attach(context)), context)

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
        spans.run.span.set_attribute(STATUS, "suspended")
        spans.run.span.add_event("suspended")
        if event.error is not None:  # stopped by a store failure or a bug, not cancelled
            self._fail(spans.run.span, event.error, f"stopped: {_describe(event.error)}")
        self._end(spans.run)

    def _close_attempts(self, spans: _RunSpans, outcome: Outcome) -> None:
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


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"
