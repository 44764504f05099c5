"""The state of one run: what the engine changes as it drives it, made new or from a store."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from ..compiler import CompiledSaga, StepPlan
from ..errors import RecordedError, StoreError
from ..result import RawEntry
from ..vocabulary import (
    COMPENSATED,
    COMPENSATING,
    COMPENSATION_FAILED,
    FAILED,
    IN_DOUBT,
    PENDING,
    RUNNING,
    SAGA_REGION,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    Event,
    parse_name,
    saga_status,
    step_state,
)

if TYPE_CHECKING:
    from ..messaging.message import Message
    from ..store.base import RunSnapshot


# Phases a step that had succeeded can be in (its success is part of the run's progress).
_SUCCEEDED_PHASES = frozenset({SUCCEEDED, COMPENSATING, COMPENSATED, COMPENSATION_FAILED, SKIPPED})


def initial_config(compiled: CompiledSaga) -> dict[str, str]:
    """Each region's state before a run starts."""
    config = {SAGA_REGION: compiled.initial}
    if not compiled.sequential:
        config.update((p.name, p.state(PENDING)) for p in compiled.steps)
    return config


@attrs.define(eq=False)
class RunState:
    """One run's state; nothing in it is shared with another run.

    Attributes:
        compiled: The machine the run goes through.
        saga_id: The run's id.
        data: Its input.
        config: Each region's current state.
        history: Every transition taken, in order (a resumed run starts with the stored ones).
        results: Each succeeded step's result.
        outcomes: Each step's phase once the engine settled it (or the store had it).
        completed: Steps that succeeded, in that order.
        compensated: Steps whose compensation finished, in that order.
        skipped: Conditional steps whose condition was false, in that order.
        compensation_errors: The error each failed compensation finally gave.
        failed_step: The first step whose failure stopped the run going forward.
        error: That step's error (or the deadline's).
        failing: The run goes back: no new step starts, what took effect is compensated.
        halting: A step from the pivot on failed: the run ends ``failed``, nothing undone.
        pivoted: The pivot succeeded: nothing may be compensated any more.
        resumed: Steps a resumed run calls again (their process died during a call), with
            the attempt number to go on from.
        reopening: A failed run whose failed compensations are tried again.
        pushing: Steps that halted a failed run, to run again because a person asked,
            each with whether its outcome was unknown.
        deadline_at: When the saga's deadline passes (run-clock time), once the run started.
        outbox: What succeeded calls emitted, in commit order.
        signals: The payload of each signal the run has received, by event (a wait takes
            its own when it gets there).
        wait_started: When each wait began (run-clock time): its timeout counts from then.
        earlier: Seconds the run had lasted before this process drove it (a stored run's
            time since it started, waits included), counted into its result's duration.
    """

    compiled: CompiledSaga
    saga_id: str
    data: Mapping[str, Any]
    config: dict[str, str]
    history: list[RawEntry] = attrs.Factory(list)
    results: dict[str, Mapping[str, Any]] = attrs.Factory(dict)
    outcomes: dict[str, str] = attrs.Factory(dict)
    completed: list[str] = attrs.Factory(list)
    compensated: list[str] = attrs.Factory(list)
    skipped: list[str] = attrs.Factory(list)
    compensation_errors: dict[str, BaseException] = attrs.Factory(dict)
    failed_step: str | None = None
    error: BaseException | None = None
    failing: bool = False
    halting: bool = False
    pivoted: bool = False
    resumed: dict[str, int] = attrs.Factory(dict)
    reopening: bool = False
    pushing: dict[str, bool] = attrs.Factory(dict)
    deadline_at: float | None = None
    outbox: list[Message] = attrs.Factory(list)
    signals: dict[str, Mapping[str, Any]] = attrs.Factory(dict)
    wait_started: dict[str, float] = attrs.Factory(dict)
    earlier: float = 0.0
    #: ``results`` read-only, as actions see it.
    results_view: Mapping[str, Mapping[str, Any]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.results_view = MappingProxyType(self.results)

    @classmethod
    def new(cls, compiled: CompiledSaga, data: Mapping[str, Any], saga_id: str) -> RunState:
        """The state of a run about to start."""
        return cls(compiled, saga_id, data, initial_config(compiled))

    @classmethod
    def restore(
        cls,
        compiled: CompiledSaga,
        snapshot: RunSnapshot,
        *,
        reopen: bool = False,
        push: bool = False,
    ) -> RunState:
        """A stored run's state, checked against the machine (``StoreError`` if it does not
        fit: the run is corrupt).

        With ``reopen``, a run that failed in compensation is rebuilt so that its failed
        compensations are tried again; with ``push``, a run halted past its pivot is rebuilt
        so that the steps that halted it run again.
        """
        record = snapshot.run
        run_id = record.run_id

        def corrupt(what: str) -> StoreError:
            return StoreError(f"run {run_id} is corrupt: {what}", run_id=run_id)

        config = dict(record.config)
        expected = initial_config(compiled).keys()
        if config.keys() != expected:
            raise corrupt(f"its regions {sorted(config)} are not the saga's {sorted(expected)}")
        for region, state in config.items():
            if compiled.region_of_state.get(state) != region:
                raise corrupt(f"state {state!r} is not a state of region {region!r}")
        status = saga_status(config[SAGA_REGION])
        if status in TERMINAL and not ((reopen or push) and status == FAILED):
            raise corrupt(f"its machine is in {status!r} but its status is {record.status!r}")
        run = cls(
            compiled,
            run_id,
            dict(record.input),
            config,
            history=[
                (t.trigger, t.source, t.dest, t.at, t.attempt, t.error) for t in snapshot.history
            ],
            reopening=reopen,
        )
        if compiled.deadline is not None:
            # Counted from the run's first start, not from this resume.
            run.deadline_at = record.created_at + compiled.deadline
        for name, step in snapshot.steps.items():
            plan = compiled.by_name.get(name)
            if plan is None:
                raise corrupt(f"it records unknown step {name!r}")
            if plan.state(step.phase) not in compiled.region_of_state:
                raise corrupt(f"step {name!r} is in impossible phase {step.phase!r}")
            if step.result is not None:
                run.results[name] = step.result
            run._restore_step(plan, step.phase, step.attempt, step.error, push=push)
        if status == COMPENSATING or (status == FAILED and not push):
            run.failing = True
        run.completed, run.compensated = progress(snapshot)
        run.skipped = [n for n in run.completed if n in run.outcomes and run.outcomes[n] == SKIPPED]
        run.completed = [n for n in run.completed if n not in run.skipped]
        if push:
            if not run.pushing:
                raise corrupt("it is failed past its pivot, but no step from the pivot on failed")
        else:
            run.failed_step = record.failed_step
            run.error = RecordedError(record.error) if record.error else None
            if run.failed_step is None:
                # A DAG commits a step's failure before the run notes it as the one that
                # stopped it: a crash in between leaves only the step's row to say so.
                run.failed_step = _first_failure(snapshot)
                failed = snapshot.steps.get(run.failed_step or "")
                if failed is not None and failed.error:
                    run.error = RecordedError(failed.error)
        run.signals = {
            event: signal.payload
            for event, signal in snapshot.signals.items()
            if event in compiled.by_name
        }
        for entry in snapshot.history:  # a wait's timeout counts from when it began
            waited, event = parse_name(entry.trigger)
            if waited is not None and event in (Event.WAIT, Event.PUSH_FORWARD):
                run.wait_started[waited] = entry.at
        for name in [n for n, phase in run.outcomes.items() if phase == RUNNING]:
            if run.failing:
                # Running beside a failure before the pivot: not called again; its outcome is
                # unknown, so it is compensated.
                run.resumed.pop(name, None)
            else:
                del run.outcomes[name]  # called again (past a pivot too: it must go forward)
        return run

    def _restore_step(
        self, plan: StepPlan, phase: str, attempt: int, error: str | None, *, push: bool
    ) -> None:
        name = plan.name
        if phase == SUCCEEDED:
            self.outcomes[name] = SUCCEEDED
            self.pivoted = self.pivoted or plan.pivot
        elif phase == SKIPPED:
            self.outcomes[name] = SKIPPED
        elif phase in (FAILED, IN_DOUBT) and push and (plan.pivot or plan.after_pivot):
            self.pushing[name] = phase == IN_DOUBT  # run again, with the same key
            self.resumed[name] = attempt + 1
        elif phase in (FAILED, IN_DOUBT):
            self.settle(plan, phase, None)
        elif phase in (RUNNING, COMPENSATING):
            self.outcomes[name] = phase
            self.resumed[name] = attempt + 1
        elif phase == COMPENSATED:
            self.outcomes[name] = phase
        elif phase == COMPENSATION_FAILED:
            self.outcomes[name] = phase
            if not self.reopening:  # reopened, it is tried again: a new failure is recorded
                self.compensation_errors[name] = RecordedError(error or "compensation failed")

    @property
    def status(self) -> str:
        """The saga's state: ``pending``, ``running``, ``compensating`` or a final one."""
        return saga_status(self.config[SAGA_REGION])

    def settle(self, plan: StepPlan, phase: str, error: BaseException | None) -> bool:
        """Note how a step ended going forward; whether it succeeded."""
        self.outcomes[plan.name] = phase
        if phase == SUCCEEDED:
            if plan.pivot:
                self.pivoted = True
            return True
        if phase == SKIPPED:
            return True
        if self.failed_step is None:
            self.failed_step, self.error = plan.name, error
        if plan.after_pivot or (plan.pivot and phase == IN_DOUBT):
            self.halting = True
        else:
            self.failing = True
        return False


def progress(snapshot: RunSnapshot) -> tuple[list[str], list[str]]:
    """Steps that succeeded or were skipped, and steps compensated, in the order the
    history shows."""
    completed: list[str] = []
    compensated: list[str] = []
    for entry in snapshot.history:
        name, event = parse_name(entry.trigger)
        step = None if name is None else snapshot.steps.get(name)
        if name is None or step is None:
            continue
        if (
            entry.dest in (step_state(name, SUCCEEDED), step_state(name, SKIPPED))
            and step.phase in _SUCCEEDED_PHASES
            and name not in completed
        ):
            completed.append(name)
        elif event == Event.COMPENSATION_DONE and step.phase == COMPENSATED:
            compensated.append(name)
    return completed, compensated


def _first_failure(snapshot: RunSnapshot) -> str | None:
    """The first step the stored history shows failing (or ending in doubt) going forward."""
    for entry in snapshot.history:
        step, phase = parse_name(entry.dest)
        if step is not None and phase in (FAILED, IN_DOUBT):
            return step
    return None
