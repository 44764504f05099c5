"""Structured logs: one event per hook, as JSON or key=value lines, or structlog events.

Events go to a standard ``logging`` logger (``statesaga.events`` by default) as one rendered
line each, every field also set on the ``LogRecord`` for structured handlers. The lines are
the ones structlog's ``JSONRenderer`` and ``LogfmtRenderer`` print, rendered here without it.
Given a structlog logger, or by default when structlog is installed
(``pip install 'statesaga[logs]'``) and configured by the application, events go through
structlog instead, as an event name with key-value pairs, rendered by its processors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from ..errors import RunWaiting
from ..result import SagaStatus
from .events import RunEvent, StepEvent
from .observer import Observer

Format = Literal["json", "kv"]
Fields = dict[str, Any]
_Emit = Callable[[int, Fields], None]

__all__ = ["DEFAULT_LOGGER", "LoggingObserver", "render_json", "render_kv"]

#: The logger events go to unless another is given.
DEFAULT_LOGGER = "statesaga.events"


class LoggingObserver(Observer):
    """Logs every hook as one event carrying the run's, step's and attempt's fields.

    Levels: ``level`` (INFO by default) for starts, successes, waits, skipped steps and runs
    parked at their waits, WARNING for retries, failures, time-outs, waits that failed or were
    given up, compensated and suspended runs, ERROR for a failed compensation and a run that
    ended ``failed``.

    Args:
        logger: A ``logging.Logger`` or a structlog logger (whose processors then render the
            events: ``format`` is ignored). By default structlog's ``statesaga.events`` logger
            if structlog is installed and configured, else the standard one of that name.
        format: ``"json"`` for a JSON object per line, ``"kv"`` for ``key=value`` pairs.
        level: The level of ordinary events.
    """

    def __init__(
        self,
        logger: logging.Logger | Any | None = None,
        *,
        format: Format = "json",
        level: int = logging.INFO,
    ) -> None:
        if format not in ("json", "kv"):
            raise ValueError(f"format must be 'json' or 'kv', not {format!r}")
        self.format = format
        self.level = level
        if logger is None:
            logger = _configured_structlog() or logging.getLogger(DEFAULT_LOGGER)
        self.logger = logger
        self._emit: _Emit = (
            _stdlib(logger, format) if isinstance(logger, logging.Logger) else _structured(logger)
        )
        # Logger.isEnabledFor caches per level: checking first makes a muted logger cheap.
        self._enabled: Callable[[int], bool] = (
            logger.isEnabledFor if isinstance(logger, logging.Logger) else _always
        )

    # -- runs ---------------------------------------------------------------------------------

    def run_started(self, event: RunEvent) -> None:
        if self._enabled(self.level):
            fields = _run_fields("run_started", event)
            fields["resumed"] = event.resumed
            self._emit(self.level, fields)

    def run_finished(self, event: RunEvent) -> None:
        status = event.status
        level = (
            self.level
            if status is SagaStatus.COMPLETED
            else logging.ERROR
            if status is SagaStatus.FAILED
            else logging.WARNING
        )
        if self._enabled(level):
            self._emit(level, _run_fields("run_finished", event))

    def run_suspended(self, event: RunEvent) -> None:
        waits = event.error
        if not isinstance(waits, RunWaiting):
            if self._enabled(logging.WARNING):
                self._emit(logging.WARNING, _run_fields("run_suspended", event))
            return
        # Parked at its waits: stored, due again on a signal or a timer. Not an error.
        if self._enabled(self.level):
            fields = _run_fields("run_suspended", event)
            del fields["error"]
            fields["waiting_for"] = ",".join(waits.events)
            if waits.wake_at is not None:
                fields["wake_at"] = _iso(waits.wake_at)
            self._emit(self.level, fields)

    # -- attempts -----------------------------------------------------------------------------

    def step_started(self, event: StepEvent) -> None:
        self._step("step_started", event, self.level)

    def step_succeeded(self, event: StepEvent) -> None:
        self._step("step_succeeded", event, self.level)

    def step_retried(self, event: StepEvent) -> None:
        self._step("step_retried", event, logging.WARNING)

    def step_failed(self, event: StepEvent) -> None:
        self._step("step_failed", event, logging.WARNING)

    def step_timed_out(self, event: StepEvent) -> None:
        self._step("step_timed_out", event, logging.WARNING)

    def compensation_started(self, event: StepEvent) -> None:
        self._step("compensation_started", event, self.level)

    def compensation_retried(self, event: StepEvent) -> None:
        self._step("compensation_retried", event, logging.WARNING)

    def compensation_succeeded(self, event: StepEvent) -> None:
        self._step("compensation_succeeded", event, self.level)

    def compensation_failed(self, event: StepEvent) -> None:
        self._step("compensation_failed", event, logging.ERROR)

    # -- waits and skipped steps --------------------------------------------------------------

    def step_skipped(self, event: StepEvent) -> None:
        if self._enabled(self.level):
            self._emit(self.level, _wait_fields("step_skipped", event))

    def wait_started(self, event: StepEvent) -> None:
        if self._enabled(self.level):
            self._emit(self.level, _wait_fields("wait_started", event))

    def wait_ended(self, event: StepEvent) -> None:
        # A timeout with on_timeout="continue" ends it without an error: a durable sleep.
        level = self.level if event.error is None else logging.WARNING
        if not self._enabled(level):
            return
        fields = _wait_fields("wait_ended", event)
        fields["outcome"] = event.outcome
        if event.duration is not None:
            fields["waited"] = round(event.duration, 6)
        if event.error is not None:
            fields["error"] = _describe(event.error)
        self._emit(level, fields)

    def _step(self, name: str, event: StepEvent, level: int) -> None:
        if not self._enabled(level):
            return
        fields: Fields = {
            "event": name,
            "timestamp": _iso(event.at),
            "saga": event.saga,
            "saga_id": event.saga_id,
            "step": event.step,
            "attempt": event.attempt,
            "idempotency_key": event.idempotency_key,
            "compensating": event.compensating,
        }
        if event.duration is not None:
            fields["duration"] = round(event.duration, 6)
        if event.error is not None and not name.endswith("_started"):
            # (a retry's start carries the error that caused it: its retried event told it)
            fields["error"] = _describe(event.error)
        self._emit(level, fields)


def _run_fields(name: str, event: RunEvent) -> Fields:
    fields: Fields = {
        "event": name,
        "timestamp": _iso(event.at),
        "saga": event.saga,
        "saga_id": event.saga_id,
    }
    if event.status is not None:
        fields["status"] = event.status.value
    if event.duration is not None:
        fields["duration"] = round(event.duration, 6)
    if event.failed_step is not None:
        fields["failed_step"] = event.failed_step
    if event.error is not None:
        fields["error"] = _describe(event.error)
    return fields


def _wait_fields(name: str, event: StepEvent) -> Fields:
    return {
        "event": name,
        "timestamp": _iso(event.at),
        "saga": event.saga,
        "saga_id": event.saga_id,
        "step": event.step,
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"


def _always(level: int) -> bool:
    return True


# -- emitting ---------------------------------------------------------------------------------


def _stdlib(logger: logging.Logger, format: Format) -> _Emit:
    """Render a line and log it on a standard logger, the fields riding along as ``extra``."""
    render = render_json if format == "json" else render_kv

    def emit(level: int, fields: Fields) -> None:
        logger.log(level, render(fields), extra=fields)

    return emit


def _configured_structlog() -> Any | None:
    """structlog's logger for the events, if structlog is installed and the app set it up."""
    try:
        import structlog
    except ImportError:
        return None
    return structlog.get_logger(DEFAULT_LOGGER) if structlog.is_configured() else None


def _structured(logger: Any) -> _Emit:
    """Hand the fields to a structlog-style logger: ``logger.info(event, **fields)``."""

    def emit(level: int, fields: Fields) -> None:
        method = getattr(logger, logging.getLevelName(level).lower())
        method(fields.pop("event"), **fields)

    return emit


def render_json(fields: Fields) -> str:
    """One JSON object, keys in the order given (as structlog's ``JSONRenderer``)."""
    return json.dumps(fields, default=str)


def render_kv(fields: Fields) -> str:
    """``key=value`` pairs (as structlog's ``LogfmtRenderer(bool_as_flag=False)``).

    Values with spaces, ``=`` or quotes are quoted; ``None`` renders as an empty value.
    """
    parts = []
    for key, value in fields.items():
        if value is None:
            parts.append(f"{key}=")
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        quote = " " in text or "=" in text or '"' in text
        if quote and "\\" in text:
            text = text.replace("\\", "\\\\")
        text = text.replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{key}="{text}"' if quote else f"{key}={text}")
    return " ".join(parts)
