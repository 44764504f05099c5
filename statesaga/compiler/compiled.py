"""What compiling a saga gives: ``CompiledSaga``, its ``StepPlan``s and ``Transition``s.

Plain, frozen data the engine reads on every run; built by ``compiler.build``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ..definition import Action, Condition, Retry, SagaDefinition
from ..vocabulary import Event, parse_name, step_state, step_trigger

if TYPE_CHECKING:
    from transitions import Machine

Kind = Literal["forward", "compensate"]


# A transition's names are plain ``str``, also when given a vocabulary member: they become
# a run's history, reprs and error messages, which show names, not enum members.
def _name(name: str) -> str:
    return str(name)


def _names(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(map(str, names))


def _groups(groups: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    return tuple(map(_names, groups))


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
        requires_any: Groups of states of which other regions must be in one each: a join on
            a conditional step, which may have succeeded or been skipped.
    """

    trigger: str = attrs.field(converter=_name)
    source: str = attrs.field(converter=_name)
    dest: str = attrs.field(converter=_name)
    kind: Kind
    step: str | None = None
    failure: bool = False
    requires: tuple[str, ...] = attrs.field(default=(), converter=_names)
    requires_any: tuple[tuple[str, ...], ...] = attrs.field(default=(), converter=_groups)


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
    wait: bool = False  # a Wait: it waits for the signal named like it
    on_timeout: str | None = None  # a wait's: "fail" or "continue"
    when: Condition | None = None  # a conditional step's condition

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
    t_wait: str = attrs.field(init=False)
    t_signal: str = attrs.field(init=False)
    t_skip: str = attrs.field(init=False)

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
        count = len(self.steps)
        return (
            f"<CompiledSaga {self.name}: {shape} of {count} step{'s' if count != 1 else ''}, "
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
                    **({"wait": True, "on_timeout": s.on_timeout} if s.wait else {}),
                    **({"when": condition_name(s.when)} if s.when is not None else {}),
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
                    **(
                        {"requires_any": [list(g) for g in t.requires_any]}
                        if t.requires_any
                        else {}
                    ),
                }
                for t in self.transitions
            ],
        }

    def machine(self, model: object) -> Machine:
        """A ``transitions`` machine bound to ``model``, so an app can drive the states itself.

        A chain gives a flat ``Machine`` (``model.state`` starts at ``initial``); a DAG gives a
        ``HierarchicalMachine`` whose regions run in parallel once ``start`` fires.
        """
        from .._fsm import build_machine

        return build_machine(self, model)


#: Raised when this library changes the states it derives from a definition (their names, the
#: regions) so that a stored run could not be resumed across the change.
MACHINE_VERSION = 1


def _fingerprint(compiled: CompiledSaga) -> str:
    """A short hash of what a stored run relies on to be resumed.

    It covers the steps in order, their dependencies, which ones are compensable, the
    pivot, which ones are waits (and what their timeout does) or conditional, and
    ``MACHINE_VERSION``.
    Retries, timeouts and the deadline are left out:
    tuning them keeps stored runs resumable. So are the edges this library derives, so a
    new version that adds one does not strand the runs an older one stored.
    """
    shape = {
        "machine": MACHINE_VERSION,
        "sequential": compiled.sequential,
        "steps": [
            # A wait's marker only where there is one: sagas without waits keep their prints.
            [p.name, list(p.deps), p.compensate is not None, p.pivot]
            + (["wait", p.on_timeout] if p.wait else [])
            + (["when"] if p.when is not None else [])
            for p in compiled.steps
        ],
    }
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def condition_name(fn: object) -> str:
    """How diagrams and ``to_dict`` name a condition: its function's name."""
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


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
