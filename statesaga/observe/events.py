"""What observers are told: one frozen value per event."""

from __future__ import annotations

import attrs

from ..result import SagaStatus


@attrs.frozen(slots=True)
class RunEvent:
    """A run started, finished or stopped unfinished.

    Attributes:
        saga: The saga's name.
        saga_id: The run's id.
        at: When (epoch seconds).
        resumed: Whether this process took the run over from a store instead of starting it.
        status: How the run ended (``run_finished`` only).
        duration: Seconds since this process began driving the run (end events only).
        failed_step: The step whose failure stopped the run, if any.
        error: That step's error, if any; for ``run_suspended``, the unexpected error that
            stopped the run (``None`` when it was cancelled).
    """

    saga: str
    saga_id: str
    at: float
    resumed: bool = False
    status: SagaStatus | None = None
    duration: float | None = None
    failed_step: str | None = None
    error: BaseException | str | None = None


@attrs.frozen(slots=True)
class StepEvent:
    """Something happened to one attempt of a step's action or compensation, or to a wait,
    or a conditional step was skipped.

    Attributes:
        saga: The saga's name.
        saga_id: The run's id.
        step: The step's name.
        attempt: The attempt, from 1 (its action's, or its compensation's).
        idempotency_key: The key the call receives in its context.
        at: When (epoch seconds).
        compensating: Whether this is about the compensation.
        error: The error that ended the attempt (failure, retry and timeout events).
        duration: Seconds the attempt took (end events; retries measure the failed attempt;
            a wait's end: how long it waited).
        outcome: How a wait ended: ``"signalled"``, ``"timed_out"`` (with
            ``on_timeout="continue"`` too) or ``"given_up"`` (the run was cancelled, passed
            its deadline, or a sibling failed); ``None`` for other events.
    """

    saga: str
    saga_id: str
    step: str
    attempt: int
    idempotency_key: str
    at: float
    compensating: bool = False
    error: BaseException | str | None = None
    duration: float | None = None
    outcome: str | None = None
