"""The machine's vocabulary: saga states, step phases, events and triggers, and their names.

Every other module takes these words from here. They are persisted (run rows, histories,
fingerprints) and drawn, so their values never change. The members are ``str``: equal to,
hashed like and JSON-encoded as their values. Where a name becomes part of a run's data (a
state, a fired trigger) modules use the plain value (``.value``), and the collections here
hold plain values, so that histories, reprs, error messages and CLI choices show
``'running'``, not an enum member.

The bottom layer: it imports nothing from statesaga.
"""

from __future__ import annotations

import enum
from typing import Final

#: The saga's own region (a chain's only one); step names can never be it.
SAGA_REGION: Final = "saga"


class SagaState(enum.StrEnum):
    """A state of the saga region, in the order a compiled machine lists them."""

    PENDING = "pending"
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"


#: Every saga state, in ``SagaState`` order.
SAGA_STATES: Final[tuple[str, ...]] = tuple(state.value for state in SagaState)
#: The saga states a run ends in, in ``SagaState`` order (``failed`` can be resumed).
TERMINAL_STATES: Final[tuple[str, ...]] = tuple(
    state.value for state in (SagaState.COMPLETED, SagaState.COMPENSATED, SagaState.FAILED)
)
TERMINAL: Final = frozenset(TERMINAL_STATES)


class Phase(enum.StrEnum):
    """A step's phase: the part after the dot of a step state ``<step>.<phase>``."""

    PENDING = "pending"  # a DAG's step region only: a chain's step has no state before it runs
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    WAITING = "waiting"  # a wait's: for its signal or its timeout
    SKIPPED = "skipped"  # a conditional step's whose condition was false: it never ran


#: Every step's phases once it has started, in the order a compiled machine lists them.
FORWARD_PHASES: Final[tuple[str, ...]] = tuple(
    phase.value for phase in (Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.IN_DOUBT)
)
# The phases (and the saga states of the same words) as plain strings, for code that compares
# them on every step: reading an enum member costs about 7x reading a global.
COMPENSATED: Final = Phase.COMPENSATED.value
COMPENSATING: Final = Phase.COMPENSATING.value
COMPENSATION_FAILED: Final = Phase.COMPENSATION_FAILED.value
FAILED: Final = Phase.FAILED.value
IN_DOUBT: Final = Phase.IN_DOUBT.value
PENDING: Final = Phase.PENDING.value
RUNNING: Final = Phase.RUNNING.value
SUCCEEDED: Final = Phase.SUCCEEDED.value
WAITING: Final = Phase.WAITING.value
SKIPPED: Final = Phase.SKIPPED.value

#: A wait's phases once it has begun, in the order a compiled machine lists them.
WAIT_PHASES: Final[tuple[str, ...]] = (WAITING, SUCCEEDED, FAILED)
#: The status of a durable run parked at its waits (not a state of the machine: the run's
#: regions are in their waits' ``waiting`` states).
WAITING_STATUS: Final = "waiting"
#: The event of a request to cancel a stored run, kept with its signals (no step can take
#: the name: it holds a dot).
CANCEL_EVENT: Final = "saga.cancel"

#: The phases only a step with a compensation has.
COMPENSATION_PHASES: Final[tuple[str, ...]] = tuple(
    phase.value for phase in (Phase.COMPENSATING, Phase.COMPENSATED, Phase.COMPENSATION_FAILED)
)


class Event(enum.StrEnum):
    """A step's event: the part after the dot of a step trigger ``<step>.<event>``."""

    START = "start"
    RETRY = "retry"
    SUCCEED = "succeed"
    FAIL = "fail"
    TIME_OUT = "time_out"
    INVALID_RESULT = "invalid_result"
    COMPENSATE = "compensate"
    RETRY_COMPENSATION = "retry_compensation"
    COMPENSATION_DONE = "compensation_done"
    COMPENSATION_FAIL = "compensation_fail"
    INTERRUPT = "interrupt"
    PUSH_FORWARD = "push_forward"
    WAIT = "wait"  # a wait begins
    SIGNAL = "signal"  # its signal came: it succeeds with the payload
    SKIP = "skip"  # a conditional step's condition is false: it is skipped


class SagaTrigger(enum.StrEnum):
    """A trigger of the saga region (no step in its name)."""

    START = "start"
    COMPLETE = "complete"
    ABORT = "abort"
    HALT = "halt"
    FINISH = "finish"
    GIVE_UP = "give_up"
    REOPEN = "reopen"
    PROCEED = "proceed"
    PUSH_FORWARD = "push_forward"  # a DAG's: then each halted step's own push_forward


class Outcome(enum.StrEnum):
    """How one attempt of an action or compensation ended, as metrics and spans label it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RETRIED = "retried"
    ABANDONED = "abandoned"  # spans only: still open when the run ended or stopped


def step_state(step: str, phase: str) -> str:
    """The state ``<step>.<phase>``."""
    return f"{step}.{phase}"


def step_trigger(step: str, event: str) -> str:
    """The trigger ``<step>.<event>``."""
    return f"{step}.{event}"


def parse_name(name: str) -> tuple[str | None, str]:
    """A state or trigger name as (its step, or ``None`` for the saga's own; phase or event).

    Step names never hold a dot, so the first dot splits.
    """
    step, dot, part = name.partition(".")
    return (step, part) if dot else (None, name)


_COMPENSATION: Final = frozenset(COMPENSATION_PHASES)
_RUNNING: Final = SagaState.RUNNING.value
_COMPENSATING: Final = SagaState.COMPENSATING.value


def saga_status(state: str) -> str:
    """The saga-level status of a run whose saga region is in ``state``.

    A chain's single region holds step states too: while a step runs (or has just failed)
    the run is ``running``; while steps are being compensated it is ``compensating``.
    """
    _, dot, phase = state.partition(".")  # parse_name, inline: the journal calls it per commit
    if not dot:
        return state
    return _COMPENSATING if phase in _COMPENSATION else _RUNNING


def idempotency_key(saga_id: str, step: str, *, compensating: bool = False) -> str:
    """The idempotency key of a step's action, or of its compensation (``...:compensate``)."""
    key = f"{saga_id}:{step}"
    return f"{key}:compensate" if compensating else key
