"""A small graph model of a compiled saga, optionally overlaid with one run's path.

The model is plain data in a stable order (the compiled machine's own order), so every backend
(Graphviz, Mermaid) renders identical input to identical text.

A chain draws its saga-level ``compensating`` state once per step, beside it, rather than as one
hub: every step's ``abort`` and ``compensate`` edges meet that state, and drawn to a single node
they would stretch across the whole chain (Graphviz's layout time then grows with the square of
the steps, and the picture becomes a fan of long crossing lines). ``failed``, which every step
past the pivot halts in, is drawn beside each of those steps for the same reason. Each drawing
is a node whose ``state`` names the state it draws; Mermaid, which shows the machine as text,
merges them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Final, Literal, Protocol

import attrs

from ..errors import RenderError as RenderError
from ..vocabulary import SAGA_REGION, Event, Phase, SagaState, SagaTrigger, parse_name, step_state

if TYPE_CHECKING:
    from ..compiler import CompiledSaga, Transition

NodeKind = Literal["start", "state", "final", "legend", "note"]
EdgeKind = Literal["initial", "forward", "compensate", "failure", "join", "rail", "legend"]
EdgeStyle = Literal["solid", "dashed", "dotted"]

START = "__start__"
LEGEND = "legend"
HUB: Final = SagaState.COMPENSATING.value
FAILED: Final = SagaState.FAILED.value
_RUNNING: Final = SagaState.RUNNING.value
# The states a chain draws beside the steps that lead to them.
_SPLIT = (HUB, FAILED)
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


class Step(Protocol):
    """One transition of a run, as ``HistoryEntry`` or ``TransitionRecord`` has it."""

    @property
    def trigger(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def dest(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def error(self) -> str | None: ...


@attrs.frozen
class Node:
    """A state (or a drawing aid such as the initial point).

    Attributes:
        id: Unique id: the state's name, or ``compensating@<step>`` for a chain's
            ``compensating`` state drawn beside ``<step>``.
        label: Text to show.
        kind: ``start`` (initial point), ``state``, ``final``, ``legend`` (a legend sample's
            end) or ``note`` (a line of legend text).
        pivot: Whether the state belongs to a pivot step.
        visited: Whether the overlaid run entered it.
        current: Whether the overlaid run is (or ended) in it.
        state: The machine state it draws (its id unless it is one of several drawings).
    """

    id: str
    label: str
    kind: NodeKind
    pivot: bool = False
    visited: bool = False
    current: bool = False
    state: str = attrs.field(default=attrs.Factory(lambda node: node.id, takes_self=True))


@attrs.frozen
class Edge:
    """A transition (or a fork/join, a rail, or a legend sample).

    Attributes:
        source: Source node id.
        target: Target node id.
        label: Text to show.
        kind: ``initial``, ``forward``, ``compensate``, ``failure``, ``join``, ``rail`` (joins
            two drawings of a chain's ``compensating`` state past a step with nothing to
            undo) or ``legend``.
        style: ``solid``, ``dashed`` or ``dotted``.
        trigger: The machine's trigger (empty for drawing aids).
        taken: How many times the overlaid run took it.
        note: What the run met on it (attempts, last error).
        main: Whether it is on the happy path (drawn straight).
        backward: Whether it is laid out right to left (a step's compensation).
        loose: Whether layout may ignore it (leaving a final state).
    """

    source: str
    target: str
    label: str
    kind: EdgeKind
    style: EdgeStyle
    trigger: str = ""
    taken: int = 0
    note: str = ""
    main: bool = False
    backward: bool = False
    loose: bool = False


@attrs.frozen
class Cluster:
    """A group of nodes drawn together (a DAG region, or the legend)."""

    id: str
    label: str
    nodes: tuple[str, ...]


@attrs.frozen
class Graph:
    """What to draw: nodes, edges, clusters, a title; laid out left to right.

    Attributes:
        columns: Groups of nodes drawn one above the other, top to bottom (a chain's step,
            forward over compensation), so a long chain stays a grid instead of spreading
            vertically.
    """

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    clusters: tuple[Cluster, ...]
    title: str
    overlay: bool = False
    columns: tuple[tuple[str, ...], ...] = ()


def build_graph(compiled: CompiledSaga, history: Iterable[Step] | None = None) -> Graph:
    """The graph of ``compiled``, with ``history`` (a run's transitions) highlighted if given.

    Edges a run cannot take in the usual course are left out unless the run took them: a
    retry loop on a step allowed one attempt, and a chain's administrative edges (cancellation
    between steps, reopening a failed run). They would hide the saga's shape. ``to_dict()``
    and ``machine()`` keep every edge.
    """
    chain = _Chain(compiled) if compiled.sequential else None
    known = set(compiled.states)
    # Entries between states this saga no longer has were recorded by another version of it.
    entries = (
        [] if history is None else [h for h in history if h.source in known and h.dest in known]
    )
    moves, paths = _trace(chain, entries)
    edges = [
        Edge(START, compiled.initial, "", "initial", "solid"),
        *_transitions(compiled, chain, moves),
    ]
    if chain is not None:
        edges += chain.rails(edges, paths)
    drawn = {n for e in edges for n in (e.source, e.target)}
    nodes = [Node(START, "", "start"), *_states(compiled, drawn)]
    clusters: list[Cluster] = []
    if not compiled.sequential:
        edges += _forks_and_joins(compiled)
        clusters += _regions(compiled)
    legend_nodes, legend_edges = _legend(compiled, nodes, edges, overlay=history is not None)
    nodes += legend_nodes
    edges += legend_edges
    clusters.append(Cluster(LEGEND, "legend", tuple(n.id for n in legend_nodes)))
    columns = _columns(compiled, {n.id for n in nodes}) if chain is not None else ()
    graph = Graph(tuple(nodes), tuple(edges), tuple(clusters), compiled.name, columns=columns)
    return graph if history is None else overlay(graph, compiled, moves, paths)


def _states(compiled: CompiledSaga, drawn: set[str]) -> list[Node]:
    """One node per state; in a chain, ``compensating`` and ``failed`` once per drawing of
    them (``drawn``), each beside its step."""
    pivots = {p.name for p in compiled.steps if p.pivot}
    last = {parse_name(state)[0]: state for state in compiled.states}
    nodes = []
    for state in compiled.states:
        step, phase = parse_name(state)
        kind: NodeKind = "final" if state in compiled.terminal_states else "state"
        # In a DAG the region's cluster names the step already.
        label = f"{step}\n{phase}" if step is not None and compiled.sequential else phase
        if step in pivots and phase == Phase.RUNNING:
            label += "\n(pivot)"
        if state in drawn or state not in _SPLIT or not compiled.sequential:
            nodes.append(Node(state, label, kind, pivot=step in pivots))
        if step is not None and state == last[step]:
            beside = [(f"{split}@{step}", split) for split in _SPLIT]
            nodes += [
                Node(node, split, "final" if split == FAILED else "state", state=split)
                for node, split in beside
                if node in drawn
            ]
    return nodes


def _transitions(
    compiled: CompiledSaga, chain: _Chain | None, moves: Sequence[_Move]
) -> list[Edge]:
    """Each transition drawn once; in an overlay, also as the run drew it where that differs."""
    taken: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for m in moves:
        ends = taken.setdefault((m.entry.trigger, m.entry.source, m.entry.dest), [])
        if (m.source, m.dest) not in ends:
            ends.append((m.source, m.dest))
    edges = []
    for t in compiled.transitions:
        shown = (
            [] if _administrative(compiled, t) else [chain.ends(t) if chain else (t.source, t.dest)]
        )
        shown += [e for e in taken.get((t.trigger, t.source, t.dest), ()) if e not in shown]
        # A step's failure aborts to the drawing of ``compensating`` on its left.
        back = chain is not None and t.dest == HUB and _step_phase(t.source) == Phase.FAILED
        edges += [_edge(t, a, b, compiled.terminal_states, back) for a, b in shown]
    return edges


@attrs.frozen
class _Move:
    """One history entry with the nodes it is drawn between."""

    entry: Step
    source: str
    dest: str


class _Chain:
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


def _trace(chain: _Chain | None, history: Sequence[Step]) -> tuple[list[_Move], list[list[str]]]:
    """The nodes each entry of ``history`` is drawn between, and the drawings of
    ``compensating`` each stay in it passes (the move leaving it tells what it undoes first)."""
    moves: list[_Move] = []
    paths: list[list[str]] = []
    at = {HUB: HUB, FAILED: FAILED}  # the drawing of each split state the run is in
    for n, entry in enumerate(history):
        source, dest = entry.source, entry.dest
        if chain is not None:
            source = at.get(source, source)
            if dest == HUB:
                after = next((h for h in history[n + 1 :] if HUB in (h.source, h.dest)), None)
                left = chain.left_by(after.trigger) if after and after.source == HUB else None
                path = chain.path(chain.entered_from(entry.source), left)
                paths.append(path)
                dest, at[HUB] = path[0], path[-1]
            elif dest == FAILED:
                dest = at[FAILED] = chain.failed(entry.trigger, entry.source)
        moves.append(_Move(entry, source, dest))
    return moves, paths


def _columns(compiled: CompiledSaga, drawn: set[str]) -> tuple[tuple[str, ...], ...]:
    """A chain's columns of ``drawn`` nodes: each step's running state over the drawings of
    ``compensating`` and ``failed`` the step before leads to, over its compensation; then its
    outcomes."""
    columns = []
    before = ""
    for p in compiled.steps:
        beside = (f"{FAILED}@{before}", f"{HUB}@{before}") if before else (HUB,)
        for column in (
            (p.state(Phase.RUNNING), *beside, p.state(Phase.COMPENSATING)),
            tuple(p.state(phase) for phase in _OUTCOMES),
        ):
            column = tuple(n for n in column if n in drawn)
            if len(column) > 1:
                columns.append(column)
        before = p.name
    return tuple(columns)


_ADMINISTRATIVE = frozenset({SagaTrigger.REOPEN, SagaTrigger.PROCEED})


def _administrative(compiled: CompiledSaga, t: Transition) -> bool:
    """Edges a picture leaves out: retries a step never makes (``Retry`` of one attempt),
    pushing a halted run forward, and in a chain, cancellation between steps and reopening."""
    event = parse_name(t.trigger)[1]
    if event == Event.PUSH_FORWARD:  # a step's, or a DAG's saga trigger of the same name
        return True  # a person's doing, once the run has ended failed
    if t.step is not None:
        plan = compiled.by_name[t.step]
        if event == Event.RETRY and plan.retry.attempts == 1:
            return True
        if event == Event.RETRY_COMPENSATION and plan.compensate_retry.attempts == 1:
            return True
    if not compiled.sequential:
        return False
    if t.trigger in _ADMINISTRATIVE:
        return True
    if t.trigger == SagaTrigger.ABORT and _step_phase(t.source) == Phase.SUCCEEDED:
        return True
    return t.trigger == SagaTrigger.GIVE_UP and t.source == HUB


def _step_phase(state: str) -> str | None:
    """The phase of a step state; ``None`` for a saga state."""
    step, phase = parse_name(state)
    return None if step is None else phase


_MAIN_EVENTS = frozenset({Event.START, Event.SUCCEED, SagaTrigger.COMPLETE})
_BACK_EVENTS = frozenset(
    {Event.COMPENSATE, Event.RETRY_COMPENSATION, Event.COMPENSATION_DONE, Event.COMPENSATION_FAIL}
)


def _edge(
    t: Transition, source: str, dest: str, terminal: Sequence[str], back: bool = False
) -> Edge:
    label = parse_name(t.trigger)[1]
    # Compensations run right to left, under the forward chain they undo.
    back = back or (t.step is not None and label in _BACK_EVENTS)
    loose = t.source in terminal
    main = label in _MAIN_EVENTS and t.source != t.dest and not t.failure
    kind: EdgeKind = "failure" if t.failure else t.kind
    style: EdgeStyle = "dashed" if t.kind == "compensate" else "solid"
    return Edge(source, dest, label, kind, style, t.trigger, 0, "", main, back, loose)


def _forks_and_joins(compiled: CompiledSaga) -> list[Edge]:
    """Fork from the saga's ``running``, joins on dependencies, join into ``completed``."""
    edges: list[Edge] = []
    for p in compiled.steps:
        target = p.state(Phase.RUNNING)
        if not p.deps:
            edges.append(Edge(_RUNNING, target, "fork", "join", "dotted"))
        edges += [
            Edge(step_state(d, Phase.SUCCEEDED), target, "", "join", "dotted") for d in p.deps
        ]
    completed = SagaState.COMPLETED.value
    edges += [
        Edge(p.state(Phase.SUCCEEDED), completed, "join", "join", "dotted")
        for p in compiled.steps
        if not p.dependants
    ]
    return edges


def _regions(compiled: CompiledSaga) -> list[Cluster]:
    pivots = {p.name for p in compiled.steps if p.pivot}
    members: dict[str, list[str]] = {r: [] for r in compiled.regions}
    for state in compiled.states:
        members[compiled.region_of_state[state]].append(state)
    clusters = []
    for region in compiled.regions:
        label = f"saga {compiled.name}" if region == SAGA_REGION else f"step {region}"
        if region in pivots:
            label += " (pivot)"
        clusters.append(Cluster(region, label, tuple(members[region])))
    return clusters


def _legend(
    compiled: CompiledSaga, nodes: Sequence[Node], edges: Sequence[Edge], *, overlay: bool
) -> tuple[list[Node], list[Edge]]:
    samples: list[tuple[EdgeKind, EdgeStyle, str]] = [
        ("forward", "solid", "forward"),
        ("compensate", "dashed", "compensating"),
        ("failure", "solid", "failure"),
    ]
    if not compiled.sequential:
        samples.append(("join", "dotted", "fork / join"))
    if any(e.kind == "rail" for e in edges):
        samples.append(("rail", "solid", "nothing to undo"))
    if overlay:
        samples.append(("legend", "solid", "taken by this run"))
    legend_nodes: list[Node] = []
    legend_edges: list[Edge] = []
    for i, (kind, style, text) in enumerate(samples):
        a, b = f"legend.{i}.from", f"legend.{i}.to"
        legend_nodes += [Node(a, "", "legend"), Node(b, "", "legend")]
        legend_edges.append(Edge(a, b, text, kind, style, taken=int(kind == "legend")))
    split = {n.state for n in nodes if n.id != n.state}
    notes = []
    if HUB in split:
        notes.append(
            "the saga's compensating state is drawn\nbeside each step it starts compensating"
        )
    if FAILED in split:
        subject = "and its failed state" if notes else "the saga's failed state is drawn"
        notes.append(f"{subject} beside\neach step that halts the run")
    if notes:
        legend_nodes.append(Node(f"{LEGEND}.note", "\n".join(notes), "note"))
    return legend_nodes, legend_edges


def overlay(
    graph: Graph, compiled: CompiledSaga, moves: Sequence[_Move], paths: Sequence[Sequence[str]]
) -> Graph:
    """``graph`` with a run's ``moves`` highlighted (and the drawings of ``compensating``
    each of its stays there passed, ``paths``)."""
    visited: set[str] = {compiled.initial} if moves else set()
    current: dict[str, str] = {}
    taken: dict[tuple[str, str, str], int] = {}
    attempts: dict[tuple[str, str, str], int] = {}
    errors: dict[tuple[str, str, str], str] = {}
    for m in moves:
        key = (m.entry.trigger, m.source, m.dest)
        visited.update((m.source, m.dest))
        current[compiled.region_of_state[m.entry.dest]] = m.dest
        taken[key] = taken.get(key, 0) + 1
        attempts[key] = max(attempts.get(key, 0), m.entry.attempt)
        if m.entry.error:
            errors[key] = m.entry.error
    for path in paths:
        visited.update(path)
        for a, b in pairwise(path):
            taken["", a, b] = taken.get(("", a, b), 0) + 1
    ends = set(current.values())
    nodes = tuple(
        attrs.evolve(n, visited=n.id in visited, current=n.id in ends)
        if n.kind in ("state", "final")
        else n
        for n in graph.nodes
    )
    edges = []
    for e in graph.edges:
        key = (e.trigger, e.source, e.target)
        if key not in taken or e.kind == "legend":
            started = e.kind == "initial" and bool(moves)
            edges.append(attrs.evolve(e, taken=1) if started else e)
            continue
        notes = []
        if taken[key] > 1:
            notes.append(f"x{taken[key]}")
        if attempts.get(key, 0) > 1:
            notes.append(f"attempt {attempts[key]}")
        if key in errors:
            notes.append(_short(errors[key]))
        edges.append(attrs.evolve(e, taken=taken[key], note=", ".join(notes)))
    return attrs.evolve(graph, nodes=nodes, edges=tuple(edges), overlay=True)


def _short(text: str, width: int = 40) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."
