"""What a run reports when it ends."""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from .vocabulary import SagaState

if TYPE_CHECKING:
    from .messaging.message import Message


class SagaStatus(enum.StrEnum):
    """How a run ended: the saga state it ended in (one of the terminal states)."""

    COMPLETED = SagaState.COMPLETED.value
    """Every step succeeded."""
    COMPENSATED = SagaState.COMPENSATED.value
    """A step failed and every step that had taken effect was compensated."""
    FAILED = SagaState.FAILED.value
    """Needs attention: a compensation could not finish, or a step after the pivot failed."""


#: A transition as the engine records it: trigger, source, dest, time, attempt, error.
RawEntry = tuple[str, str, str, float, int, BaseException | str | None]


class HistoryEntry(NamedTuple):
    """One transition a run took through its compiled machine."""

    trigger: str
    source: str
    dest: str
    at: float
    attempt: int = 0
    error: str | None = None


def describe(error: object) -> str | None:
    """An error as stored text (already-stored text passes through)."""
    if error is None or isinstance(error, str):
        return error  # already text: read back from a store
    return f"{type(error).__name__}: {error}"


def _entries(raw: Sequence[RawEntry]) -> tuple[HistoryEntry, ...]:
    return tuple(
        HistoryEntry(trigger, source, dest, at, attempt, describe(error))
        for trigger, source, dest, at, attempt, error in raw
    )


def _same_history(a: Sequence[RawEntry], b: Sequence[RawEntry]) -> bool:
    return a is b or _entries(a) == _entries(b)


@attrs.frozen(kw_only=True, unsafe_hash=False)
class SagaResult:
    """The outcome of one run (read-only).

    Attributes:
        status: ``COMPLETED``, ``COMPENSATED`` or ``FAILED``.
        saga_id: The run's id.
        completed_steps: Steps that succeeded, in the order they succeeded.
        compensated_steps: Steps whose compensation finished, in the order they finished.
        skipped_steps: Conditional steps whose condition was false, in the order skipped.
        failed_step: The first step whose failure stopped the run, if any.
        error: That step's error.
        compensation_errors: Step name to the error its compensation finally failed with.
        results: Step name to what its action returned (an empty mapping for ``None``).
        duration: Seconds from start to end of the run.
        raw_history: The transitions as the engine recorded them (``history`` has them as
            ``HistoryEntry`` objects, errors as text).
        messages: What the steps and compensations run by this call emitted, in commit order
            (only those whose call succeeded).
    """

    status: SagaStatus
    saga_id: str
    completed_steps: tuple[str, ...] = ()
    compensated_steps: tuple[str, ...] = ()
    skipped_steps: tuple[str, ...] = ()
    failed_step: str | None = None
    error: BaseException | None = None
    compensation_errors: Mapping[str, BaseException] = attrs.field(factory=dict)
    results: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    duration: float = 0.0
    raw_history: Sequence[RawEntry] = attrs.field(
        default=(), repr=False, eq=attrs.cmp_using(eq=_same_history)
    )
    messages: Sequence[Message] = attrs.field(default=(), repr=False)

    @functools.cached_property
    def history(self) -> tuple[HistoryEntry, ...]:
        """Every transition the run took, in order."""
        return _entries(self.raw_history)

    @property
    def succeeded(self) -> bool:
        """Whether the run completed."""
        return self.status is SagaStatus.COMPLETED
