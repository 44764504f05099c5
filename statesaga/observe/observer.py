"""The observer protocol: a hook per event, each doing nothing unless overridden."""

from __future__ import annotations

from .events import RunEvent, StepEvent


class Observer:
    """Subclass and override the hooks you need; the others do nothing.

    Hooks are called synchronously, in the task that runs the step, so an observer can set
    context (such as a current span) that the step's own code then sees. They must be quick:
    they run on the saga's path. An exception from a hook is logged and counted, never raised
    into the saga.
    """

    def run_started(self, event: RunEvent) -> None:
        """A run began (or this process resumed it from a store)."""

    def run_finished(self, event: RunEvent) -> None:
        """A run reached a final state: ``event.status`` says which."""

    def run_suspended(self, event: RunEvent) -> None:
        """A run stopped unfinished: cancelled past its pivot, abandoned to another worker, or
        stopped by an unexpected error (``event.error``, such as a store failure)."""

    def step_started(self, event: StepEvent) -> None:
        """An attempt of a step's action is about to be called."""

    def step_succeeded(self, event: StepEvent) -> None:
        """A step's action succeeded; its result is recorded."""

    def step_retried(self, event: StepEvent) -> None:
        """An attempt failed (``event.error``, after ``event.duration``) and another will
        follow after a pause."""

    def step_failed(self, event: StepEvent) -> None:
        """A step's last attempt failed: the run will compensate (or halt past a pivot)."""

    def step_timed_out(self, event: StepEvent) -> None:
        """A step's last attempt timed out, or an earlier one did: its outcome is unknown."""

    def compensation_started(self, event: StepEvent) -> None:
        """An attempt of a step's compensation is about to be called."""

    def compensation_retried(self, event: StepEvent) -> None:
        """A compensation attempt failed (``event.error``) and another will follow."""

    def compensation_succeeded(self, event: StepEvent) -> None:
        """A step's compensation finished: its effect is undone."""

    def compensation_failed(self, event: StepEvent) -> None:
        """A step's compensation gave up: the run will end ``FAILED``, needing attention."""

    def step_skipped(self, event: StepEvent) -> None:
        """A conditional step's condition was false: it is skipped, never called."""

    def wait_started(self, event: StepEvent) -> None:
        """A wait began: the run waits for the signal named like it (``event.step``)."""

    def wait_ended(self, event: StepEvent) -> None:
        """A wait ended: ``event.outcome`` says how, ``event.duration`` how long it waited
        (across processes for a stored run), ``event.error`` why it failed if it did."""
