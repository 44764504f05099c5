"""What a run reports when it ends."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

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

#: An edge of a compiled machine as the engine's fast path takes it: trigger, source, dest,
#: attempt.
Edge = tuple[str, str, str, int]


def unfold(
    edges: Sequence[Edge], stamps: Sequence[float], taken: int | None = None
) -> list[RawEntry]:
    """History entries for the first ``taken`` (default: all) of a chain's happy-path ``edges``.

    ``stamps`` holds the run's start time and then one time per succeeded step: the start
    edge and the first step's start share the first, and every step's success and the next
    one's start (or the final "complete") share the next.
    """
    return [
        (t, s, d, stamps[i // 2], attempt, None)
        for i, (t, s, d, attempt) in enumerate(edges[:taken])
    ]


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


class SagaResult:
    """The outcome of one run (read-only).

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

    # A plain class with read-only properties rather than a frozen attrs class: every run
    # builds one, and a frozen class's __init__ (one object.__setattr__ per field) cost
    # about 0.6 µs more, a tenth of the engine's whole overhead per run.
    __slots__ = (
        "__weakref__",
        "_compensated_steps",
        "_compensation_errors",
        "_completed_steps",
        "_duration",
        "_error",
        "_failed_step",
        "_history",
        "_messages",
        "_path",
        "_raw_history",
        "_results",
        "_saga_id",
        "_status",
    )

    def __init__(
        self,
        status: SagaStatus,
        saga_id: str,
        completed_steps: tuple[str, ...],
        compensated_steps: tuple[str, ...],
        failed_step: str | None,
        error: BaseException | None,
        compensation_errors: Mapping[str, BaseException],
        results: Mapping[str, Mapping[str, Any]],
        duration: float,
        raw_history: Sequence[RawEntry] | Sequence[float] = (),
        messages: Sequence[Message] = (),
        *,
        path: Sequence[Edge] | None = None,
    ) -> None:
        self._status = status
        self._saga_id = saga_id
        self._completed_steps = completed_steps
        self._compensated_steps = compensated_steps
        self._failed_step = failed_step
        self._error = error
        self._compensation_errors = compensation_errors
        self._results = results
        self._duration = duration
        self._raw_history = raw_history
        self._messages = messages
        # Given, raw_history holds only the times of a chain's happy path (see unfold): the
        # engine's fast path keeps no more, and the entries are built if someone reads them.
        self._path = path
        self._history: tuple[HistoryEntry, ...] | None = None

    @property
    def status(self) -> SagaStatus:
        return self._status

    @property
    def saga_id(self) -> str:
        return self._saga_id

    @property
    def completed_steps(self) -> tuple[str, ...]:
        return self._completed_steps

    @property
    def compensated_steps(self) -> tuple[str, ...]:
        return self._compensated_steps

    @property
    def failed_step(self) -> str | None:
        return self._failed_step

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def compensation_errors(self) -> Mapping[str, BaseException]:
        return self._compensation_errors

    @property
    def results(self) -> Mapping[str, Mapping[str, Any]]:
        return self._results

    @property
    def duration(self) -> float:
        return self._duration

    @property
    def messages(self) -> Sequence[Message]:
        return self._messages

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """Every transition the run took, in order."""
        if self._history is None:
            raw: Sequence[Any] = self._raw_history
            if self._path is not None:
                raw = unfold(self._path, raw)
            self._history = tuple(
                HistoryEntry(trigger, source, dest, at, attempt, _describe(error))
                for trigger, source, dest, at, attempt, error in raw
            )
        return self._history

    @property
    def succeeded(self) -> bool:
        """Whether the run completed."""
        return self._status is SagaStatus.COMPLETED

    def _values(self) -> tuple[Any, ...]:
        return (
            self._status,
            self._saga_id,
            self._completed_steps,
            self._compensated_steps,
            self._failed_step,
            self._error,
            self._compensation_errors,
            self._results,
            self._duration,
            self.history,
            self._messages,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, SagaResult)
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # equal by value, and holds mutable mappings

    def __repr__(self) -> str:
        return (
            f"SagaResult(status={self._status!r}, saga_id={self._saga_id!r}, "
            f"completed_steps={self._completed_steps!r}, "
            f"compensated_steps={self._compensated_steps!r}, "
            f"failed_step={self._failed_step!r}, error={self._error!r}, "
            f"compensation_errors={self._compensation_errors!r}, results={self._results!r}, "
            f"duration={self._duration!r})"
        )
