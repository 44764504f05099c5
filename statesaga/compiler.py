"""Turn a saga definition into an explicit state machine: plain, deterministic data.

A sequential saga compiles to one chain a person can read: forward states left to right,
compensating states back right to left. A DAG compiles to orthogonal regions, one for the saga
and one per step, so the state count grows linearly with the steps; a step's start is a join
on its dependencies' ``succeeded`` states (``Transition.requires``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .definition import (
    DEFAULT_COMPENSATE_RETRY,
    NO_RETRY,
    Action,
    Retry,
    SagaDefinition,
    Step,
    ancestors,
    dependencies,
    topological,
    validate_steps,
)
from .errors import InvalidSagaError, MachineError, Problem
from .vocabulary import (
    COMPENSATION_PHASES,
    FORWARD_PHASES,
    SAGA_REGION,
    SAGA_STATES,
    TERMINAL_STATES,
    Event,
    Phase,
    SagaState,
    SagaTrigger,
    parse_name,
    step_state,
    step_trigger,
)

if TYPE_CHECKING:
    from transitions import Machine

Kind = Literal["forward", "compensate"]
_FORWARD: Kind = "forward"
_COMPENSATE: Kind = "compensate"


# A transition's names are plain ``str``, also when given a vocabulary member: they become
# a run's history, reprs and error messages, which show names, not enum members.
def _name(name: str) -> str:
    return str(name)


def _names(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(map(str, names))


@attrs.frozen
class Transition:
    """One edge of the machine.

    Attributes:
        trigger: The event's name (``"<step>.<event>"`` for step events).
        source: The state the edge leaves.
        dest: The state it enters.
        kind: ``"forward"`` or ``"compensate"``.
        step: The step the edge belongs to, or ``None`` for the saga's own edges.
        failure: Whether the edge records a failure (drawn distinctly).
        requires: States other regions must be in (a DAG's join); empty in a chain.
    """

    trigger: str = attrs.field(converter=_name)
    source: str = attrs.field(converter=_name)
    dest: str = attrs.field(converter=_name)
    kind: Kind
    step: str | None = None
    failure: bool = False
    requires: tuple[str, ...] = attrs.field(default=(), converter=_names)


@attrs.frozen(eq=False)
class StepPlan:
    """Everything the engine needs about one step, resolved once at compile time."""

    name: str
    index: int
    action: Action
    compensate: Action | None
    retry: Retry
    compensate_retry: Retry
    timeout: float | None
    pivot: bool
    after_pivot: bool
    deps: tuple[str, ...]
    dependants: tuple[str, ...]
    ancestors: tuple[str, ...]  # every step it depends on, directly or not, latest first

    # Trigger names, built once: the engine fires them on every run.
    t_start: str = attrs.field(init=False)
    t_retry: str = attrs.field(init=False)
    t_succeed: str = attrs.field(init=False)
    t_fail: str = attrs.field(init=False)
    t_time_out: str = attrs.field(init=False)
    t_invalid_result: str = attrs.field(init=False)
    t_compensate: str = attrs.field(init=False)
    t_retry_compensation: str = attrs.field(init=False)
    t_compensation_done: str = attrs.field(init=False)
    t_compensation_fail: str = attrs.field(init=False)
    t_interrupt: str = attrs.field(init=False)
    t_push_forward: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        for event in Event:
            object.__setattr__(self, f"t_{event.value}", step_trigger(self.name, event))

    def trigger(self, event: str) -> str:
        """The full trigger name of this step's ``event``."""
        return step_trigger(self.name, event)

    def state(self, phase: str) -> str:
        """The full state name of this step's ``phase``."""
        return step_state(self.name, phase)


@attrs.frozen(eq=False, repr=False)
class CompiledSaga:
    """A saga compiled to an explicit state machine.

    Attributes:
        saga: The saga class.
        name: The saga's name.
        sequential: Whether the saga is a chain (no step names ``depends_on``).
        steps: Per-step plans in a topological order (written order for a chain).
        states: Every state name.
        transitions: Every edge.
        initial: The state a run starts in.
        terminal_states: The saga's final states.
        regions: Region names: one for a chain; the saga's plus one per step for a DAG.
        deadline: The saga's deadline in seconds, or ``None`` (not part of the machine).
        fingerprint: A short hash of what a stored run relies on to be resumed.
        task_name: The name of the asyncio tasks that run this saga.

    ``trigger_effects`` serves the journal; ``moves`` the engine.
    """

    saga: type[SagaDefinition]
    name: str
    sequential: bool
    steps: tuple[StepPlan, ...]
    states: tuple[str, ...]
    transitions: tuple[Transition, ...]
    initial: str
    terminal_states: tuple[str, ...]
    regions: tuple[str, ...]
    by_name: Mapping[str, StepPlan]
    table: Mapping[tuple[str, str], str]
    region_of_state: Mapping[str, str]
    region_of_trigger: Mapping[str, str]
    deadline: float | None = None
    # Derived once, when compiled (see the functions of the same names below). Not cached
    # properties: on a slotted attrs class those add a __getattr__, which makes every
    # attribute read of the compiled saga (the engine reads several per run) take the slow
    # path.
    fingerprint: str = attrs.field(init=False)
    trigger_effects: Mapping[str, tuple[str, str]] = attrs.field(init=False)
    moves: Mapping[str, tuple[str, Mapping[str, str]]] = attrs.field(init=False)
    task_name: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        derive = functools.partial(object.__setattr__, self)
        derive("fingerprint", _fingerprint(self))
        derive("trigger_effects", _trigger_effects(self))
        derive("moves", _moves(self))
        derive("task_name", _task_name(self))

    def __repr__(self) -> str:
        shape = "chain" if self.sequential else "DAG"
        return (
            f"<CompiledSaga {self.name}: {shape} of {len(self.steps)} steps, "
            f"{len(self.states)} states, {len(self.transitions)} transitions>"
        )

    def next_state(self, source: str, trigger: str) -> str | None:
        """Where ``trigger`` leads from ``source``, or ``None`` if it is not allowed there."""
        return self.table.get((source, trigger))

    def to_dict(self) -> dict[str, Any]:
        """The machine as JSON-serialisable data (stable key order)."""
        return {
            "saga": self.name,
            "sequential": self.sequential,
            "initial": self.initial,
            "terminal_states": list(self.terminal_states),
            "regions": list(self.regions),
            "steps": [
                {
                    "name": s.name,
                    "depends_on": list(s.deps),
                    "compensable": s.compensate is not None,
                    "pivot": s.pivot,
                    "after_pivot": s.after_pivot,
                    "attempts": s.retry.attempts,
                    "compensate_attempts": s.compensate_retry.attempts,
                    "timeout": s.timeout,
                }
                for s in self.steps
            ],
            "states": list(self.states),
            "transitions": [
                {
                    "trigger": t.trigger,
                    "source": t.source,
                    "dest": t.dest,
                    "kind": t.kind,
                    "step": t.step,
                    "failure": t.failure,
                    "requires": list(t.requires),
                }
                for t in self.transitions
            ],
        }

    def machine(self, model: object) -> Machine:
        """A ``transitions`` machine bound to ``model``, so an app can drive the states itself.

        A chain gives a flat ``Machine`` (``model.state`` starts at ``initial``); a DAG gives a
        ``HierarchicalMachine`` whose regions run in parallel once ``start`` fires.
        """
        from ._fsm import build_machine

        return build_machine(self, model)


_CACHE_ATTR = "_statesaga_compiled_"

#: Raised when this library changes the states it derives from a definition (their names, the
#: regions) so that a stored run could not be resumed across the change.
MACHINE_VERSION = 1


def _fingerprint(compiled: CompiledSaga) -> str:
    """A short hash of what a stored run relies on to be resumed.

    It covers the steps in order, their dependencies, which ones are compensable, the
    pivot, and ``MACHINE_VERSION``. Retries, timeouts and the deadline are left out:
    tuning them keeps stored runs resumable. So are the edges this library derives, so a
    new version that adds one does not strand the runs an older one stored.
    """
    shape = {
        "machine": MACHINE_VERSION,
        "sequential": compiled.sequential,
        "steps": [
            [p.name, list(p.deps), p.compensate is not None, p.pivot] for p in compiled.steps
        ],
    }
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _trigger_effects(compiled: CompiledSaga) -> Mapping[str, tuple[str, str]]:
    """For each step trigger, the step and the phase its edge enters (what a durable
    run's journal writes to the step's row)."""
    effects = {}
    for t in compiled.transitions:
        step = parse_name(t.trigger)[0]
        if step is not None:
            effects[t.trigger] = (step, parse_name(t.dest)[1])
    return effects


def _moves(compiled: CompiledSaga) -> Mapping[str, tuple[str, Mapping[str, str]]]:
    """For each trigger: its region, and where it leads from each state it is taken from
    (the table the engine fires transitions with)."""
    dests: dict[str, dict[str, str]] = {}
    for (source, trigger), dest in compiled.table.items():
        dests.setdefault(trigger, {})[source] = dest
    return {
        trigger: (compiled.region_of_trigger[trigger], edges) for trigger, edges in dests.items()
    }


def _task_name(compiled: CompiledSaga) -> str:
    """The name of the asyncio tasks that run this saga (as ``asyncio.all_tasks()`` shows)."""
    return f"statesaga:{compiled.name}"


def compile_saga(saga: type[SagaDefinition]) -> CompiledSaga:
    """Compile a saga class to its explicit machine (cached per class).

    Raises:
        InvalidSagaError: ``saga`` is not a usable saga class.
    """
    cached = getattr(saga, _CACHE_ATTR, None)
    if cached is not None and cached.saga is saga:  # not a parent class's
        return cached  # type: ignore[no-any-return]
    if not (isinstance(saga, type) and issubclass(saga, SagaDefinition)) or saga.abstract:
        name = getattr(saga, "__name__", repr(saga))
        raise InvalidSagaError(
            name,
            [
                Problem(
                    None,
                    f"{name} is not a saga but a base for sagas: subclass it and list steps"
                    if isinstance(saga, type) and issubclass(saga, SagaDefinition)
                    else f"{name} is not a saga: subclass statesaga.Saga and list steps",
                )
            ],
        )
    steps = validate_steps(saga.name, getattr(saga, "steps", ()))
    compiled = _compile(saga, steps)
    setattr(saga, _CACHE_ATTR, compiled)  # on the class itself: a subclass compiles its own
    return compiled


def _plans(steps: Sequence[Step]) -> tuple[tuple[StepPlan, ...], bool]:
    sequential = not any(s.depends_on for s in steps)
    deps = dependencies(steps)
    order = topological(steps, deps)
    assert order is not None  # validated: no cycles
    before = ancestors(order, deps)
    pivots = {s.name for s in steps if s.pivot}
    dependants: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for d in deps[s.name]:
            dependants[d].append(s.name)
    by_name = {s.name: s for s in steps}
    position = {name: index for index, name in enumerate(order)}
    plans = []
    for index, name in enumerate(order):
        s = by_name[name]
        plans.append(
            StepPlan(
                name=name,
                index=index,
                action=s.action,
                compensate=s.compensate,
                retry=s.retry or NO_RETRY,
                compensate_retry=s.compensate_retry or DEFAULT_COMPENSATE_RETRY,
                timeout=s.timeout,
                pivot=s.pivot,
                after_pivot=bool(pivots & before[name]),
                deps=deps[name],
                dependants=tuple(dependants[name]),
                ancestors=tuple(sorted(before[name], key=position.__getitem__, reverse=True)),
            )
        )
    return tuple(plans), sequential


def _compile(saga: type[SagaDefinition], steps: Sequence[Step]) -> CompiledSaga:
    plans, sequential = _plans(steps)
    if sequential:
        states, edges, region_of_state = _chain(plans)
        regions: tuple[str, ...] = (SAGA_REGION,)
    else:
        states, edges, region_of_state = _regions(plans)
        regions = (SAGA_REGION, *(p.name for p in plans))
    table: dict[tuple[str, str], str] = {}
    region_of_trigger: dict[str, str] = {}
    for t in edges:
        key = (t.source, t.trigger)
        if table.setdefault(key, t.dest) != t.dest:
            raise MachineError(f"{saga.name}: two edges for {key}")
        region_of_trigger[t.trigger] = region_of_state[t.source]
    compiled = CompiledSaga(
        saga=saga,
        name=saga.name,
        sequential=sequential,
        steps=plans,
        states=tuple(states),
        transitions=tuple(edges),
        initial=SagaState.PENDING.value,
        terminal_states=tuple(s for s in TERMINAL_STATES if s in states),
        regions=regions,
        by_name={p.name: p for p in plans},
        table=table,
        region_of_state=region_of_state,
        region_of_trigger=region_of_trigger,
        deadline=saga.deadline,  # type: ignore[arg-type]  # converted to seconds on the class
    )
    _prove(compiled)
    return compiled


def _step_forward(p: StepPlan, source: str, requires: tuple[str, ...] = ()) -> list[Transition]:
    running = p.state(Phase.RUNNING)
    in_doubt = p.state(Phase.IN_DOUBT)
    return [
        Transition(p.t_start, source, running, _FORWARD, p.name, requires=requires),
        Transition(p.t_retry, running, running, _FORWARD, p.name),
        Transition(p.t_succeed, running, p.state(Phase.SUCCEEDED), _FORWARD, p.name),
        Transition(p.t_fail, running, p.state(Phase.FAILED), _FORWARD, p.name, failure=True),
        Transition(p.t_time_out, running, in_doubt, _FORWARD, p.name, failure=True),
        Transition(p.t_invalid_result, running, in_doubt, _FORWARD, p.name, failure=True),
    ]


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
    phases = ((Phase.PENDING.value,) if pending else ()) + FORWARD_PHASES
    if p.compensate is not None:
        phases += COMPENSATION_PHASES
    return [p.state(phase) for phase in phases]


def _chain(
    plans: Sequence[StepPlan],
) -> tuple[list[str], list[Transition], dict[str, str]]:
    pending, running, compensating = SagaState.PENDING, SagaState.RUNNING, SagaState.COMPENSATING
    failed = SagaState.FAILED
    states = list(SAGA_STATES)
    edges = [Transition(SagaTrigger.START, pending, running, _FORWARD)]
    previous: str = running
    for p in plans:
        states += _step_states(p, pending=False)
        edges += _step_forward(p, previous)
        previous = p.state(Phase.SUCCEEDED)
    edges.append(Transition(SagaTrigger.COMPLETE, previous, SagaState.COMPLETED, _FORWARD))
    # Failure and cancellation edges: before the pivot they start compensation, after it
    # (or when the pivot's own outcome is unknown) the run stops as failed.
    abort, halt = SagaTrigger.ABORT, SagaTrigger.HALT
    edges.append(Transition(abort, running, compensating, _COMPENSATE, failure=True))
    for p in plans:
        if p.after_pivot or p.pivot:
            edges.append(Transition(halt, p.state(Phase.IN_DOUBT), failed, _FORWARD, failure=True))
            # A person pushes a halted run forward again: the step that halted it once more.
            edges.append(
                Transition(p.t_push_forward, failed, p.state(Phase.RUNNING), _FORWARD, p.name)
            )
        if p.after_pivot:
            edges.append(Transition(halt, p.state(Phase.FAILED), failed, _FORWARD, failure=True))
            continue
        sources = [Phase.FAILED] if p.pivot else [Phase.FAILED, Phase.IN_DOUBT]
        if not p.pivot and p is not plans[-1]:
            sources.append(Phase.SUCCEEDED)  # cancelled between steps
        edges += [
            Transition(abort, p.state(s), compensating, _COMPENSATE, failure=True) for s in sources
        ]
    compensable = [p for p in plans if p.compensate is not None]
    for i, p in enumerate(compensable):
        entries: list[str] = [compensating]
        if i + 1 < len(compensable):
            later = compensable[i + 1]
            entries += [later.state(Phase.COMPENSATED), later.state(Phase.COMPENSATION_FAILED)]
        edges += _step_compensation(p, entries)
    finish, give_up = SagaTrigger.FINISH, SagaTrigger.GIVE_UP
    compensated = SagaState.COMPENSATED
    edges.append(Transition(finish, compensating, compensated, _COMPENSATE))
    if compensable:
        first = compensable[0]
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


def _regions(
    plans: Sequence[StepPlan],
) -> tuple[list[str], list[Transition], dict[str, str]]:
    running, compensating, failed = SagaState.RUNNING, SagaState.COMPENSATING, SagaState.FAILED
    states = list(SAGA_STATES)
    region_of_state = dict.fromkeys(SAGA_STATES, SAGA_REGION)
    edges = [
        Transition(SagaTrigger.START, SagaState.PENDING, running, _FORWARD),
        Transition(
            SagaTrigger.COMPLETE,
            running,
            SagaState.COMPLETED,
            _FORWARD,
            requires=tuple(p.state(Phase.SUCCEEDED) for p in plans),
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
        requires = (running, *(step_state(d, Phase.SUCCEEDED) for d in p.deps))
        edges += _step_forward(p, p.state(Phase.PENDING), requires)
        # A step still running when its process died, in a run that is compensating: its
        # outcome is unknown (in a chain nothing runs while compensating).
        edges.append(
            Transition(
                p.t_interrupt,
                p.state(Phase.RUNNING),
                p.state(Phase.IN_DOUBT),
                _COMPENSATE,
                p.name,
                failure=True,
                requires=(compensating,),
            )
        )
        if p.pivot or p.after_pivot:
            edges += [
                Transition(
                    p.t_push_forward,
                    p.state(phase),
                    p.state(Phase.RUNNING),
                    _FORWARD,
                    p.name,
                    requires=(running,),
                )
                # A pivot that raised has no effect: the run compensated. Only its unknown
                # outcome halts a run.
                for phase in ((Phase.IN_DOUBT,) if p.pivot else (Phase.FAILED, Phase.IN_DOUBT))
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


def _drop_unreachable_failed(states: list[str], edges: Sequence[Transition]) -> list[str]:
    # Without a compensation or a pivot nothing can leave a run FAILED.
    if not any(t.dest == SagaState.FAILED for t in edges):
        states.remove(SagaState.FAILED)
    return states


def _prove(c: CompiledSaga) -> None:
    """Check the machine: every state reachable, every state can finish, compensations exist."""
    out: dict[str, set[str]] = {s: set() for s in c.states}
    for t in c.transitions:
        out[t.source].add(t.dest)
    starts = [c.initial] + [p.state(Phase.PENDING) for p in c.steps if not c.sequential]
    seen = _reach(starts, out)
    problems = [f"state {s!r} is unreachable" for s in c.states if s not in seen]
    for state in c.states:
        reach = _reach([state], out)
        if not any(not (out[r] - {r}) for r in reach):
            problems.append(f"state {state!r} cannot reach a final state")
    if c.sequential:
        sinks = {s for s in c.states if not (out[s] - {s})}
        if not sinks <= set(c.terminal_states):
            problems.append(f"the chain ends in {sorted(sinks)}, not in the terminal states")
    for p in c.steps:
        if p.compensate is not None:
            doing = p.state(Phase.COMPENSATING)
            if doing not in _reach([p.state(Phase.SUCCEEDED)], out) and c.sequential is False:
                problems.append(f"step {p.name!r} has no way back from success")
            if doing not in seen:
                problems.append(f"step {p.name!r} is never compensated")
    if problems:
        raise MachineError(f"{c.name}: the compiled machine is unsound: " + "; ".join(problems))


def _reach(starts: Sequence[str], out: Mapping[str, set[str]]) -> set[str]:
    seen = set(starts)
    stack = list(starts)
    while stack:
        for nxt in out[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen
