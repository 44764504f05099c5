"""The one module that imports ``transitions``: compiled machine -> ``transitions`` machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transitions import Machine
from transitions.extensions.nesting import HierarchicalMachine, NestedState

from .vocabulary import SAGA_REGION, Phase, SagaState, parse_name

if TYPE_CHECKING:
    from .compiler import CompiledSaga

_RUN = "run"
_SAGA = "_saga"  # step names start with a letter, so this cannot collide


class _State(NestedState):
    # Step states are named "<step>.<phase>", so nesting uses another separator.
    separator = "/"


class _Hsm(HierarchicalMachine):
    state_cls = _State


def hsm_name(compiled: CompiledSaga, state: str) -> str:
    """The nested name in a DAG's ``HierarchicalMachine`` of a compiled ``state``."""
    if state == compiled.initial:
        return state
    region = compiled.region_of_state[state]
    if region == SAGA_REGION:
        return f"{_RUN}/{_SAGA}/{state}"
    return f"{_RUN}/{region}/{parse_name(state)[1]}"


def build_machine(compiled: CompiledSaga, model: object) -> Machine:
    """A ``transitions`` machine over ``compiled``'s states and edges, bound to ``model``."""
    if compiled.sequential:
        return Machine(
            model=model,
            states=list(compiled.states),
            transitions=[
                {"trigger": t.trigger, "source": t.source, "dest": t.dest}
                for t in compiled.transitions
            ],
            initial=compiled.initial,
            auto_transitions=False,
        )
    regions: list[dict[str, Any]] = []
    for region in compiled.regions:
        own = [s for s in compiled.states if compiled.region_of_state[s] == region]
        if region == SAGA_REGION:
            children = [s for s in own if s != compiled.initial]
            initial = SagaState.RUNNING.value
            regions.append({"name": _SAGA, "children": children, "initial": initial})
        else:
            children = [parse_name(s)[1] for s in own]
            regions.append({"name": region, "children": children, "initial": Phase.PENDING.value})
    edges = []
    for t in compiled.transitions:
        edge: dict[str, Any] = {
            "trigger": t.trigger,
            "source": hsm_name(compiled, t.source),
            "dest": _RUN if t.source == compiled.initial else hsm_name(compiled, t.dest),
        }
        if t.requires or t.requires_any:
            edge["conditions"] = [
                _requires(
                    [hsm_name(compiled, s) for s in t.requires],
                    [[hsm_name(compiled, s) for s in group] for group in t.requires_any],
                )
            ]
        edges.append(edge)
    return _Hsm(
        model=model,
        states=[compiled.initial, {"name": _RUN, "parallel": regions}],
        transitions=edges,
        initial=compiled.initial,
        auto_transitions=False,
        send_event=True,
    )


def _requires(states: list[str], any_of: list[list[str]]) -> Callable[[Any], bool]:
    """A join guard: the triggering model's other regions are in all of ``states`` and in
    one state of each group of ``any_of``."""

    def joined(event: Any) -> bool:
        current = getattr(event.model, "state", None)
        active = set(current) if isinstance(current, list) else {current}
        return all(s in active for s in states) and all(
            any(s in active for s in group) for group in any_of
        )

    return joined
