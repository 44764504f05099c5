"""The states and edges of a saga's machine: one chain, or a DAG's orthogonal regions.

A sequential saga compiles to one chain a person can read: forward states left to right,
compensating states back right to left. A DAG compiles to orthogonal regions, one for the saga
and one per step, so the state count grows linearly with the steps; a step's start is a join
on its dependencies' ``succeeded`` states (``Transition.requires``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..vocabulary import (
    COMPENSATION_PHASES,
    FORWARD_PHASES,
    SAGA_REGION,
    SAGA_STATES,
    WAIT_PHASES,
    Phase,
    SagaState,
    SagaTrigger,
)
from .compiled import Kind, StepPlan, Transition

_FORWARD: Kind = "forward"
_COMPENSATE: Kind = "compensate"

#: A machine's states, its edges, and the region each state belongs to.
Edges = tuple[list[str], list[Transition], dict[str, str]]
#: A join: states other regions must be in, and groups of states they must be in one of.
Join = tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]


def _step_forward(p: StepPlan, sources: Sequence[str], join: Join = ((), ())) -> list[Transition]:
    """A step's forward edges, entered from any of ``sources`` once ``join`` holds."""
    requires, any_of = join
    starts = [
        Transition(
            p.t_wait if p.wait else p.t_start,
            source,
            p.state(Phase.WAITING if p.wait else Phase.RUNNING),
            _FORWARD,
            p.name,
            requires=requires,
            requires_any=any_of,
        )
        for source in sources
    ]
    if p.when is not None:
        # Its condition is false, or raised (which fails it like an action that raised).
        for trigger, phase, failure in (
            (p.t_skip, Phase.SKIPPED, False),
            (p.t_fail, Phase.FAILED, True),
        ):
            starts += [
                Transition(
                    trigger,
                    source,
                    p.state(phase),
                    _FORWARD,
                    p.name,
                    failure=failure,
                    requires=requires,
                    requires_any=any_of,
                )
                for source in sources
            ]
    return starts + (_wait_forward(p) if p.wait else _call_forward(p))


def _call_forward(p: StepPlan) -> list[Transition]:
    running = p.state(Phase.RUNNING)
    in_doubt = p.state(Phase.IN_DOUBT)
    return [
        Transition(p.t_retry, running, running, _FORWARD, p.name),
        Transition(p.t_succeed, running, p.state(Phase.SUCCEEDED), _FORWARD, p.name),
        Transition(p.t_fail, running, p.state(Phase.FAILED), _FORWARD, p.name, failure=True),
        Transition(p.t_time_out, running, in_doubt, _FORWARD, p.name, failure=True),
        Transition(p.t_invalid_result, running, in_doubt, _FORWARD, p.name, failure=True),
    ]


def _wait_forward(p: StepPlan) -> list[Transition]:
    waiting, failed = p.state(Phase.WAITING), p.state(Phase.FAILED)
    succeeded = p.state(Phase.SUCCEEDED)
    timed_out = succeeded if p.on_timeout == "continue" else failed
    return [
        Transition(p.t_signal, waiting, succeeded, _FORWARD, p.name),
        Transition(p.t_time_out, waiting, timed_out, _FORWARD, p.name, failure=timed_out == failed),
        # Given up: the run was cancelled, passed its deadline or (in a DAG) a sibling failed.
        Transition(p.t_fail, waiting, failed, _FORWARD, p.name, failure=True),
    ]


def _done(p: StepPlan) -> list[str]:
    """The states in which ``p`` no longer holds up what comes after it."""
    return [p.state(Phase.SUCCEEDED)] + ([p.state(Phase.SKIPPED)] if p.when else [])


def _join(plans: Sequence[StepPlan], *also: str) -> Join:
    """The join on ``plans`` all being done (a conditional one: succeeded or skipped)."""
    requires = [*also, *(p.state(Phase.SUCCEEDED) for p in plans if p.when is None)]
    return tuple(requires), tuple(tuple(_done(p)) for p in plans if p.when is not None)


def _step_compensation(
    p: StepPlan, sources: Sequence[str], requires: tuple[str, ...] = ()
) -> list[Transition]:
    doing = p.state(Phase.COMPENSATING)
    edges = [
        Transition(p.t_compensate, s, doing, _COMPENSATE, p.name, requires=requires)
        for s in sources
    ]
    return [
        *edges,
        Transition(p.t_retry_compensation, doing, doing, _COMPENSATE, p.name),
        Transition(p.t_compensation_done, doing, p.state(Phase.COMPENSATED), _COMPENSATE, p.name),
        Transition(
            p.t_compensation_fail,
            doing,
            p.state(Phase.COMPENSATION_FAILED),
            _COMPENSATE,
            p.name,
            failure=True,
        ),
    ]


def _step_states(p: StepPlan, *, pending: bool) -> list[str]:
    phases = ((Phase.PENDING.value,) if pending else ()) + (
        WAIT_PHASES if p.wait else FORWARD_PHASES
    )
    if p.when is not None:
        phases += (Phase.SKIPPED.value,)
    if p.compensate is not None:
        phases += COMPENSATION_PHASES
    return [p.state(phase) for phase in phases]


def chain_edges(plans: Sequence[StepPlan]) -> Edges:
    """The machine of a sequential saga: one chain in the saga's region."""
    pending, running, compensating = SagaState.PENDING, SagaState.RUNNING, SagaState.COMPENSATING
    failed = SagaState.FAILED
    states = list(SAGA_STATES)
    edges = [Transition(SagaTrigger.START, pending, running, _FORWARD)]
    previous: list[str] = [running]
    for p in plans:
        states += _step_states(p, pending=False)
        edges += _step_forward(p, previous)
        previous = _done(p)
    edges += [Transition(SagaTrigger.COMPLETE, s, SagaState.COMPLETED, _FORWARD) for s in previous]
    # Failure and cancellation edges: before the pivot they start compensation, after it
    # (or when the pivot's own outcome is unknown) the run stops as failed.
    abort, halt = SagaTrigger.ABORT, SagaTrigger.HALT
    edges.append(Transition(abort, running, compensating, _COMPENSATE, failure=True))
    for p in plans:
        if p.after_pivot or p.pivot:
            if not p.wait:
                edges.append(
                    Transition(halt, p.state(Phase.IN_DOUBT), failed, _FORWARD, failure=True)
                )
            # A person pushes a halted run forward again: the step that halted it once more.
            edges.append(Transition(p.t_push_forward, failed, _again(p), _FORWARD, p.name))
        if p.after_pivot:
            edges.append(Transition(halt, p.state(Phase.FAILED), failed, _FORWARD, failure=True))
            continue
        sources = [Phase.FAILED] if p.pivot or p.wait else [Phase.FAILED, Phase.IN_DOUBT]
        if not p.pivot and p is not plans[-1]:
            sources.append(Phase.SUCCEEDED)  # cancelled between steps
            if p.when is not None:
                sources.append(Phase.SKIPPED)
        edges += [
            Transition(abort, p.state(s), compensating, _COMPENSATE, failure=True) for s in sources
        ]
    compensable = [p for p in plans if p.compensate is not None]
    for i, p in enumerate(compensable):
        entries: list[str] = [compensating]
        # After the next compensable step's compensation, or, where that one may have been
        # skipped, after the one past it.
        for later in _reachable_past_skips(compensable[i + 1 :]):
            entries += [later.state(Phase.COMPENSATED), later.state(Phase.COMPENSATION_FAILED)]
        edges += _step_compensation(p, entries)
    finish, give_up = SagaTrigger.FINISH, SagaTrigger.GIVE_UP
    compensated = SagaState.COMPENSATED
    edges.append(Transition(finish, compensating, compensated, _COMPENSATE))
    for first in _reachable_past_skips(compensable):  # the last compensation to finish
        edges += [
            Transition(finish, first.state(Phase.COMPENSATED), compensated, _COMPENSATE),
            Transition(give_up, first.state(Phase.COMPENSATED), failed, _COMPENSATE, failure=True),
            Transition(
                give_up,
                first.state(Phase.COMPENSATION_FAILED),
                failed,
                _COMPENSATE,
                failure=True,
            ),
        ]
    if compensable:
        edges += [
            # Reopening a run whose compensations failed: back to compensating, then each
            # owed compensation again, returning to compensating after each one.
            Transition(SagaTrigger.REOPEN, failed, compensating, _COMPENSATE),
            Transition(give_up, compensating, failed, _COMPENSATE, failure=True),
        ]
        for p in compensable:
            edges += [
                Transition(SagaTrigger.PROCEED, p.state(end), compensating, _COMPENSATE)
                for end in (Phase.COMPENSATED, Phase.COMPENSATION_FAILED)
            ]
    states = _drop_unreachable_failed(states, edges)
    return states, edges, dict.fromkeys(states, SAGA_REGION)


def _reachable_past_skips(plans: Sequence[StepPlan]) -> list[StepPlan]:
    """The first of ``plans``, and each next one as long as those before it are conditional
    (a skipped step is not compensated: the one before it comes next)."""
    found = []
    for p in plans:
        found.append(p)
        if p.when is None:
            break
    return found


def region_edges(plans: Sequence[StepPlan]) -> Edges:
    """The machine of a DAG: the saga's region and one region per step, joined by ``requires``."""
    running, compensating, failed = SagaState.RUNNING, SagaState.COMPENSATING, SagaState.FAILED
    states = list(SAGA_STATES)
    region_of_state = dict.fromkeys(SAGA_STATES, SAGA_REGION)
    by_name = {p.name: p for p in plans}
    edges = [
        Transition(SagaTrigger.START, SagaState.PENDING, running, _FORWARD),
        Transition(
            SagaTrigger.COMPLETE,
            running,
            SagaState.COMPLETED,
            _FORWARD,
            requires=_join(plans)[0],
            requires_any=_join(plans)[1],
        ),
        Transition(SagaTrigger.ABORT, running, compensating, _COMPENSATE, failure=True),
        Transition(SagaTrigger.FINISH, compensating, SagaState.COMPENSATED, _COMPENSATE),
    ]
    if any(p.pivot for p in plans):
        edges.append(Transition(SagaTrigger.HALT, running, failed, _FORWARD, failure=True))
        # A person pushes a halted run forward again, then each step that halted it.
        edges.append(Transition(SagaTrigger.PUSH_FORWARD, failed, running, _FORWARD))
    if any(p.compensate is not None for p in plans):
        edges.append(
            Transition(SagaTrigger.GIVE_UP, compensating, failed, _COMPENSATE, failure=True)
        )
    for p in plans:
        own = _step_states(p, pending=True)
        states += own
        region_of_state.update(dict.fromkeys(own, p.name))
        join = _join([by_name[d] for d in p.deps], running)
        edges += _step_forward(p, [p.state(Phase.PENDING)], join)
        # A step still running when its process died, in a run that is compensating: its
        # outcome is unknown (in a chain nothing runs while compensating). A wait has no
        # outcome to lose: it is given up (its t_fail).
        edges += (
            []
            if p.wait
            else [
                Transition(
                    p.t_interrupt,
                    p.state(Phase.RUNNING),
                    p.state(Phase.IN_DOUBT),
                    _COMPENSATE,
                    p.name,
                    failure=True,
                    requires=(compensating,),
                )
            ]
        )
        if p.pivot or p.after_pivot:
            edges += [
                Transition(
                    p.t_push_forward,
                    p.state(phase),
                    _again(p),
                    _FORWARD,
                    p.name,
                    requires=(running,),
                )
                for phase in _halting_phases(p)
            ]
        if p.compensate is not None:
            sources = [
                p.state(Phase.SUCCEEDED),
                p.state(Phase.IN_DOUBT),
                p.state(Phase.COMPENSATION_FAILED),
            ]
            edges += _step_compensation(p, sources, requires=(compensating,))
    if any(p.compensate is not None for p in plans):
        edges.append(Transition(SagaTrigger.REOPEN, failed, compensating, _COMPENSATE))
    return _drop_unreachable_failed(states, edges), edges, region_of_state


def _again(p: StepPlan) -> str:
    """Where a step pushed forward by a person goes: running again, or (a wait) waiting."""
    return p.state(Phase.WAITING if p.wait else Phase.RUNNING)


def _halting_phases(p: StepPlan) -> tuple[str, ...]:
    """The phases from which a step past the pivot halts its run (a DAG pushes them on)."""
    if p.wait:
        return (Phase.FAILED,)
    # A pivot that raised has no effect: the run compensated. Only its unknown outcome halts.
    return (Phase.IN_DOUBT,) if p.pivot else (Phase.FAILED, Phase.IN_DOUBT)


def _drop_unreachable_failed(states: list[str], edges: Sequence[Transition]) -> list[str]:
    # Without a compensation or a pivot nothing can leave a run FAILED.
    if not any(t.dest == SagaState.FAILED for t in edges):
        states.remove(SagaState.FAILED)
    return states
