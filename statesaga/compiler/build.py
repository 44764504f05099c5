"""``compile_saga``: a saga class resolved into step plans, built into a machine, proved sound.

Pure and deterministic; the result is cached on the saga class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..definition import (
    DEFAULT_COMPENSATE_RETRY,
    NO_RETRY,
    SagaDefinition,
    Step,
    Wait,
    ancestors,
    dependencies,
    topological,
    validate_steps,
)
from ..errors import InvalidSagaError, MachineError, Problem
from ..vocabulary import SAGA_REGION, TERMINAL_STATES, Phase, SagaState
from .compiled import CompiledSaga, StepPlan
from .edges import chain_edges, region_edges

if TYPE_CHECKING:
    from ..context import Context

_CACHE_ATTR = "_statesaga_compiled_"


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
                action=_no_action if isinstance(s, Wait) else s.action,
                compensate=s.compensate,
                retry=s.retry or NO_RETRY,
                compensate_retry=s.compensate_retry or DEFAULT_COMPENSATE_RETRY,
                timeout=s.timeout,
                pivot=s.pivot,
                after_pivot=bool(pivots & before[name]),
                deps=deps[name],
                dependants=tuple(dependants[name]),
                ancestors=tuple(sorted(before[name], key=position.__getitem__, reverse=True)),
                wait=isinstance(s, Wait),
                on_timeout=s.on_timeout if isinstance(s, Wait) else None,
                when=s.when,
            )
        )
    return tuple(plans), sequential


async def _no_action(ctx: Context) -> None:
    raise MachineError(f"wait {ctx.step!r} was called like a step; this is a bug in statesaga")


def _compile(saga: type[SagaDefinition], steps: Sequence[Step]) -> CompiledSaga:
    plans, sequential = _plans(steps)
    if sequential:
        states, edges, region_of_state = chain_edges(plans)
        regions: tuple[str, ...] = (SAGA_REGION,)
    else:
        states, edges, region_of_state = region_edges(plans)
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


def _prove(c: CompiledSaga) -> None:
    """Check the machine: every state reachable, every state can finish, compensations exist."""
    out: dict[str, set[str]] = {s: set() for s in c.states}
    for t in c.transitions:
        out[t.source].add(t.dest)
    starts = [c.initial] + [p.state(Phase.PENDING) for p in c.steps if not c.sequential]
    seen = reachable_from(starts, out)
    problems = [f"state {s!r} is unreachable" for s in c.states if s not in seen]
    for state in c.states:
        reach = reachable_from([state], out)
        if not any(not (out[r] - {r}) for r in reach):
            problems.append(f"state {state!r} cannot reach a final state")
    if c.sequential:
        sinks = {s for s in c.states if not (out[s] - {s})}
        if not sinks <= set(c.terminal_states):
            problems.append(f"the chain ends in {sorted(sinks)}, not in the terminal states")
    for p in c.steps:
        if p.compensate is not None:
            doing = p.state(Phase.COMPENSATING)
            if (
                doing not in reachable_from([p.state(Phase.SUCCEEDED)], out)
                and c.sequential is False
            ):
                problems.append(f"step {p.name!r} has no way back from success")
            if doing not in seen:
                problems.append(f"step {p.name!r} is never compensated")
    if problems:
        raise MachineError(f"{c.name}: the compiled machine is unsound: " + "; ".join(problems))


def reachable_from(starts: Iterable[str], out: Mapping[str, set[str]]) -> set[str]:
    """Every state reachable from ``starts`` along ``out`` (the starts included)."""
    seen = set(starts)
    stack = list(starts)
    while stack:
        for nxt in out[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen
