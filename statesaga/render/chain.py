"""Where a chain draws its ``compensating`` and ``failed`` states, and its columns.

A chain draws its saga-level ``compensating`` state once per step, beside it, rather than as one
hub: every step's ``abort`` and ``compensate`` edges meet that state, and drawn to a single node
they would stretch across the whole chain (Graphviz's layout time then grows with the square of
the steps, and the picture becomes a fan of long crossing lines). ``failed``, which every step
past the pivot halts in, is drawn beside each of those steps for the same reason. Each drawing
is a node whose ``state`` names the state it draws; Mermaid, which shows the machine as text,
merges them.

A wait (``Wait``) begins in ``waiting`` where a step begins in ``running`` (``begun``), and has
no ``in_doubt``: a wait that failed has nothing to undo, like a step that raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ..vocabulary import Event, Phase, SagaState, SagaTrigger, parse_name
from .model import Edge

if TYPE_CHECKING:
    from ..compiler import CompiledSaga, StepPlan, Transition

HUB: Final = SagaState.COMPENSATING.value
FAILED: Final = SagaState.FAILED.value
_RUNNING: Final = SagaState.RUNNING.value
#: The states a chain draws beside the steps that lead to them.
SPLIT = (HUB, FAILED)
_OUTCOMES = tuple(
    phase.value
    for phase in (
        Phase.SUCCEEDED,
        Phase.FAILED,
        Phase.IN_DOUBT,
        Phase.COMPENSATED,
        Phase.COMPENSATION_FAILED,
    )
)


def begun(plan: StepPlan) -> str:
    """The state ``plan``'s step enters when it begins: ``running``, or a wait's ``waiting``."""
    return plan.state(Phase.WAITING if plan.wait else Phase.RUNNING)


class Chain:
    """Where a chain draws its ``compensating`` and ``failed`` states.

    Drawing ``i`` of ``compensating`` is that state entered while step ``i`` (by index) is
    the last that may need undoing: ``abort`` from step ``i``'s ``in_doubt`` (or
    ``succeeded``) or from step ``i + 1``'s ``failed`` enters it. It sits beside step ``i``;
    ``compensate`` leaves it for step ``i``'s compensation, or, when step ``i`` has none, a
    rail joins it to drawing ``i - 1``. Drawing -1, the node named ``compensating``, is
    entered with nothing to undo (``abort`` from ``running`` or from the first step's
    ``failed``); ``finish`` and ``give_up`` leave it. ``failed`` entered by a step's ``halt``
    is drawn beside that step (``failed@<step>``). So every transition is drawn once, and no
    edge runs the length of the chain.
    """

    def __init__(self, compiled: CompiledSaga) -> None:
        self.steps = compiled.steps
        self.by_name = compiled.by_name
        self.index = {self.node(i): i for i in range(-1, len(compiled.steps))}

    def node(self, i: int) -> str:
        """The node id of drawing ``i`` of ``compensating``."""
        return HUB if i < 0 else f"{HUB}@{self.steps[i].name}"

    def entered_from(self, source: str) -> int | None:
        """The drawing an edge from ``source`` enters (``None``: the run's next move says)."""
        if source == _RUNNING:
            return -1
        step, phase = parse_name(source)
        plan = None if step is None else self.by_name.get(step)
        if plan is None:
            return None  # reopening a failed run, or proceeding to the next compensation
        if phase == Phase.FAILED:
            return plan.index - 1  # a step that raised has no effect to undo
        return plan.index if phase in (Phase.IN_DOUBT, Phase.SUCCEEDED) else None

    def left_by(self, trigger: str) -> int | None:
        """The drawing ``trigger`` leaves ``compensating`` from."""
        step, event = parse_name(trigger)
        if event == Event.COMPENSATE and step is not None and step in self.by_name:
            return self.by_name[step].index
        return -1 if trigger in (SagaTrigger.FINISH, SagaTrigger.GIVE_UP) else None

    def ends(self, t: Transition) -> tuple[str, str]:
        """The nodes transition ``t`` is drawn between."""
        source, dest = t.source, t.dest
        if dest == HUB:
            dest = self.node(_either(self.entered_from(source), -1))
        elif dest == FAILED:
            dest = self.failed(t.trigger, source)
        if source == HUB:
            source = self.node(_either(self.left_by(t.trigger), -1))
        return source, dest

    def failed(self, trigger: str, source: str) -> str:
        """The drawing of ``failed`` that ``trigger`` from ``source`` enters."""
        step = parse_name(source)[0]
        return (
            f"{FAILED}@{step}" if trigger == SagaTrigger.HALT and step in self.by_name else FAILED
        )

    def path(self, entered: int | None, left: int | None) -> list[str]:
        """The drawings one stay in ``compensating`` passes, from entering to leaving."""
        entered = _either(entered, _either(left, -1))
        left = _either(left, entered)
        skipped = range(left + 1, entered + 1)
        if left <= entered and all(self.steps[k].compensate is None for k in skipped):
            return [self.node(i) for i in range(entered, left - 1, -1)]
        return [self.node(left)]  # a move the picture does not foresee: straight to its exit

    def rails(self, edges: Sequence[Edge], paths: Sequence[Sequence[str]]) -> list[Edge]:
        """The rails from each drawing ``edges`` or ``paths`` need past steps with nothing to
        undo, down to a drawing that leaves ``compensating``."""
        ends = [n for e in edges for n in (e.source, e.target)] + [n for p in paths for n in p]
        used = {self.index[n] for n in ends if n in self.index}
        rails = []
        for i in range(max(used, default=-1), -1, -1):
            if i in used and self.steps[i].compensate is None:
                used.add(i - 1)
                rails.append(
                    Edge(self.node(i), self.node(i - 1), "", "rail", "solid", backward=True)
                )
        return rails


def _either(value: int | None, default: int) -> int:
    return default if value is None else value


def chain_columns(compiled: CompiledSaga, drawn: set[str]) -> tuple[tuple[str, ...], ...]:
    """A chain's columns of ``drawn`` nodes: each step's running (a wait's waiting) state over
    the drawings of ``compensating`` and ``failed`` the step before leads to, over its
    compensation; then its outcomes."""
    columns = []
    before = ""
    for p in compiled.steps:
        beside = (f"{FAILED}@{before}", f"{HUB}@{before}") if before else (HUB,)
        for column in (
            (begun(p), *beside, p.state(Phase.COMPENSATING)),
            tuple(p.state(phase) for phase in _OUTCOMES),
        ):
            column = tuple(n for n in column if n in drawn)
            if len(column) > 1:
                columns.append(column)
        before = p.name
    return tuple(columns)
