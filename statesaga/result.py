"""What a run reports when it ends."""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

if TYPE_CHECKING:
    from .messaging.message import Message


class SagaStatus(enum.StrEnum):
    """How a run ended."""

    COMPLETED = "completed"
    """Every step succeeded."""
    COMPENSATED = "compensated"
    """A step failed and every step that had taken effect was compensated."""
    FAILED = "failed"
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


def _describe(error: BaseException | str | None) -> str | None:
    if error is None or isinstance(error, str):
        return error  # already text: read back from a store
    return f"{type(error).__name__}: {error}"


@attrs.frozen
class SagaResult:
    """The outcome of one run.

    Attributes:
        status: ``COMPLETED``, ``COMPENSATED`` or ``FAILED``.
        saga_id: The run's id.
        completed_steps: Steps that succeeded, in the order they succeeded.
        compensated_steps: Steps whose compensation finished, in the order they finished.
        failed_step: The first step whose failure stopped the run, if any.
        error: That step's error.
        compensation_errors: Step name to the error its compensation finally failed with.
        results: Step name to what its action returned (an empty mapping for ``None``).
        duration: Seconds from start to end of the run.
        history: Every transition taken, in order.
        messages: What the steps and compensations run by this call emitted, in commit order
            (only those whose call succeeded).
    """

    status: SagaStatus
    saga_id: str
    completed_steps: tuple[str, ...]
    compensated_steps: tuple[str, ...]
    failed_step: str | None
    error: BaseException | None
    compensation_errors: Mapping[str, BaseException]
    results: Mapping[str, Mapping[str, Any]]
    duration: float
    _raw_history: Sequence[RawEntry] = attrs.field(default=(), alias="raw_history", repr=False)
    messages: Sequence[Message] = attrs.field(default=(), repr=False)

    @functools.cached_property
    def history(self) -> tuple[HistoryEntry, ...]:
        """Every transition the run took, in order."""
        return tuple(
            HistoryEntry(trigger, source, dest, at, attempt, _describe(error))
            for trigger, source, dest, at, attempt, error in self._raw_history
        )

    @property
    def succeeded(self) -> bool:
        """Whether the run completed."""
        return self.status is SagaStatus.COMPLETED
