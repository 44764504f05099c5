"""What the engine tells whoever records a run, at fixed points of every run.

The engine keeps a run's transitions in ``RunState.history`` and calls its recorder before
each call of an action or compensation (write-ahead: the call is recorded as started), after
each call's outcome, and when the run ends or stops. A durable run's recorder is its
``Journal``, which turns the new transitions into store commits; an in-memory run's keeps
nothing more (its history becomes ``HistoryEntry`` objects only if ``result.history`` is read).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .state import RunState


class Recorder(Protocol):
    """Records a run as the engine drives it. Each point returns what to await before the
    run goes on, or ``None`` when there is nothing to wait for."""

    def before_call(self, run: RunState) -> Awaitable[Any] | None:
        """An action or compensation is about to be called (its start is in ``history``)."""
        ...

    def after_outcome(self, run: RunState) -> Awaitable[Any] | None:
        """A call's outcome is in ``history`` (and a success's result in ``results``)."""
        ...

    def at_end(self, run: RunState) -> Awaitable[Any] | None:
        """The run ended, or stops unfinished (it can be resumed)."""
        ...

    def result(self, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """A step's result as the run reads it from now on (what a resumed run would read);
        raises ``StoreError`` if it cannot be recorded."""
        ...

    #: Whether a wait with no signal parks the run (it is recorded as waiting and its task
    #: ends) rather than awaiting its signal in the run's task.
    parks: bool

    async def park(self, run: RunState, events: Sequence[str], wake_at: float | None) -> None:
        """Record the run as waiting for ``events`` until ``wake_at`` (run-clock time);
        raises ``SignalArrived`` if a signal for one of them was recorded meanwhile."""
        ...


class InMemory:
    """The recorder of a run that is not stored: the history in ``RunState`` is all."""

    parks = False

    async def park(self, run: RunState, events: Sequence[str], wake_at: float | None) -> None:
        raise AssertionError("an in-memory run's waits await their signals: it never parks")

    def before_call(self, run: RunState) -> None:
        return None

    def after_outcome(self, run: RunState) -> None:
        return None

    def at_end(self, run: RunState) -> None:
        return None

    def result(self, value: Mapping[str, Any]) -> Mapping[str, Any]:
        return value


IN_MEMORY = InMemory()
