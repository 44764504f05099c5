"""A small graph model of a compiled saga, optionally overlaid with one run's path.

The model is plain data in a stable order (the compiled machine's own order), so every backend
(Graphviz, Mermaid) renders identical input to identical text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from ..errors import StatesagaError

if TYPE_CHECKING:
    from ..compiler import CompiledSaga, Transition

NodeKind = Literal["start", "state", "final", "legend"]
EdgeKind = Literal["initial", "forward", "compensate", "failure", "join", "legend"]
EdgeStyle = Literal["solid", "dashed", "dotted"]

START = "__start__"
LEGEND = "legend"


class RenderError(StatesagaError):
    """A diagram cannot be produced (unknown format, missing Graphviz, bad output path)."""


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
        id: Unique id (the state name).
        label: Text to show.
        kind: ``start`` (initial point), ``state``, ``final`` or ``legend``.
        pivot: Whether the state belongs to a pivot step.
        visited: Whether the overlaid run entered it.
        current: Whether the overlaid run is (or ended) in it.
    """

    id: str
    label: str
    kind: NodeKind
    pivot: bool = False
    visited: bool = False
    current: bool = False


@attrs.frozen
class Edge:
    """A transition (or a fork/join, or a legend sample).

    Attributes:
        source: Source node id.
        target: Target node id.
        label: Text to show.
        kind: ``initial``, ``forward``, ``compensate``, ``failure``, ``join`` or ``legend``.
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
        columns: Groups of nodes drawn one above the other (a chain's step, forward over
            compensation), so a long chain stays a grid instead of spreading vertically.
        bundle: Whether edges converging on one node may be drawn merged into a trunk (a
            chain's many ``abort`` and ``compensate`` edges at the ``compensating`` hub).
    """

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    clusters: tuple[Cluster, ...]
    title: str
    overlay: bool = False
    columns: tuple[tuple[str, ...], ...] = ()
    bundle: bool = False


def build_graph(compiled: CompiledSaga, history: Iterable[Step] | None = None) -> Graph:
    """The graph of ``compiled``, with ``history`` (a run's transitions) highlighted if given.

    Edges a run cannot take in the usual course are left out unless the run took them: a
    retry loop on a step allowed one attempt, and a chain's administrative edges (cancellation
    between steps, reopening a failed run). They would hide the saga's shape. ``to_dict()``
    and ``machine()`` keep every edge.
    """
    history = None if history is None else list(history)
    pivots = {p.name for p in compiled.steps if p.pivot}
    nodes = [Node(START, "", "start")]
    for state in compiled.states:
        step, _, phase = state.rpartition(".")
        kind: NodeKind = "final" if state in compiled.terminal_states else "state"
        # In a DAG the region's cluster names the step already.
        label = f"{step}\n{phase}" if step and compiled.sequential else phase
        if step in pivots and phase == "running":
            label += "\n(pivot)"
        nodes.append(Node(state, label, kind, pivot=step in pivots))
    edges = [Edge(START, compiled.initial, "", "initial", "solid")]
    taken = {(h.source, h.trigger) for h in history} if history is not None else set()
    edges += [
        _edge(t, compiled.terminal_states)
        for t in compiled.transitions
        if not _administrative(compiled, t) or (t.source, t.trigger) in taken
    ]
    clusters: list[Cluster] = []
    if not compiled.sequential:
        edges += _forks_and_joins(compiled)
        clusters += _regions(compiled, pivots)
    legend_nodes, legend_edges = _legend(compiled, overlay=history is not None)
    nodes += legend_nodes
    edges += legend_edges
    clusters.append(Cluster(LEGEND, "legend", tuple(n.id for n in legend_nodes)))
    graph = Graph(
        tuple(nodes),
        tuple(edges),
        tuple(clusters),
        compiled.name,
        columns=_columns(compiled) if compiled.sequential else (),
        # Merged edges would hide which of them a run took: only a plain picture bundles.
        bundle=compiled.sequential and history is None,
    )
    if history is not None:
        graph = overlay(graph, compiled, list(history))
    return graph


def _columns(compiled: CompiledSaga) -> tuple[tuple[str, ...], ...]:
    """A chain's columns: each step's running state over its compensation, then its outcomes."""
    states = set(compiled.states)
    columns = []
    for p in compiled.steps:
        for phases in (
            ("running", "compensating"),
            ("succeeded", "failed", "in_doubt", "compensated", "compensation_failed"),
        ):
            column = tuple(p.state(phase) for phase in phases if p.state(phase) in states)
            if len(column) > 1:
                columns.append(column)
    return tuple(columns)


_ADMINISTRATIVE = frozenset({"reopen", "proceed"})


def _administrative(compiled: CompiledSaga, t: Transition) -> bool:
    """Edges a picture leaves out: retries a step never makes (``Retry`` of one attempt),
    pushing a halted run forward, and in a chain, cancellation between steps and reopening."""
    event = t.trigger.rpartition(".")[2]
    if event == "push_forward":
        return True  # a person's doing, once the run has ended failed
    if t.step is not None:
        plan = compiled.by_name[t.step]
        if event == "retry" and plan.retry.attempts == 1:
            return True
        if event == "retry_compensation" and plan.compensate_retry.attempts == 1:
            return True
    if not compiled.sequential:
        return False
    if t.trigger in _ADMINISTRATIVE:
        return True
    if t.trigger == "abort" and t.source.endswith(".succeeded"):
        return True
    return t.trigger == "give_up" and t.source == "compensating"


_MAIN_EVENTS = ("start", "succeed", "complete")
_BACK_EVENTS = ("compensate", "retry_compensation", "compensation_done", "compensation_fail")


def _edge(t: Transition, terminal: Sequence[str]) -> Edge:
    label = t.trigger.rpartition(".")[2]
    # Compensations run right to left, under the forward chain they undo.
    back = t.step is not None and label in _BACK_EVENTS
    loose = t.source in terminal
    main = label in _MAIN_EVENTS and t.source != t.dest and not t.failure
    kind: EdgeKind = "failure" if t.failure else t.kind
    style: EdgeStyle = "dashed" if t.kind == "compensate" else "solid"
    return Edge(t.source, t.dest, label, kind, style, t.trigger, 0, "", main, back, loose)


def _forks_and_joins(compiled: CompiledSaga) -> list[Edge]:
    """Fork from the saga's ``running``, joins on dependencies, join into ``completed``."""
    edges: list[Edge] = []
    for p in compiled.steps:
        target = p.state("running")
        if not p.deps:
            edges.append(Edge("running", target, "fork", "join", "dotted"))
        edges += [Edge(f"{d}.succeeded", target, "", "join", "dotted") for d in p.deps]
    edges += [
        Edge(p.state("succeeded"), "completed", "join", "join", "dotted")
        for p in compiled.steps
        if not p.dependants
    ]
    return edges


def _regions(compiled: CompiledSaga, pivots: set[str]) -> list[Cluster]:
    members: dict[str, list[str]] = {r: [] for r in compiled.regions}
    for state in compiled.states:
        members[compiled.region_of_state[state]].append(state)
    clusters = []
    for region in compiled.regions:
        label = f"saga {compiled.name}" if region == "saga" else f"step {region}"
        if region in pivots:
            label += " (pivot)"
        clusters.append(Cluster(region, label, tuple(members[region])))
    return clusters


def _legend(compiled: CompiledSaga, *, overlay: bool) -> tuple[list[Node], list[Edge]]:
    samples: list[tuple[EdgeKind, EdgeStyle, str]] = [
        ("forward", "solid", "forward"),
        ("compensate", "dashed", "compensating"),
        ("failure", "solid", "failure"),
    ]
    if not compiled.sequential:
        samples.append(("join", "dotted", "fork / join"))
    nodes: list[Node] = []
    edges: list[Edge] = []
    for i, (kind, style, text) in enumerate(samples):
        a, b = f"legend.{i}.from", f"legend.{i}.to"
        nodes += [Node(a, "", "legend"), Node(b, "", "legend")]
        edges.append(Edge(a, b, text, kind, style))
    if overlay:
        a, b = f"legend.{len(samples)}.from", f"legend.{len(samples)}.to"
        nodes += [Node(a, "", "legend"), Node(b, "", "legend")]
        edges.append(Edge(a, b, "taken by this run", "legend", "solid", taken=1))
    return nodes, edges


def overlay(graph: Graph, compiled: CompiledSaga, history: Sequence[Step]) -> Graph:
    """``graph`` with the states and transitions of ``history`` highlighted."""
    known = set(compiled.states)
    visited: set[str] = {compiled.initial} if history else set()
    current: dict[str, str] = {}
    taken: dict[tuple[str, str, str], int] = {}
    attempts: dict[tuple[str, str, str], int] = {}
    errors: dict[tuple[str, str, str], str] = {}
    for entry in history:
        if entry.source not in known or entry.dest not in known:
            continue  # recorded by another version of the saga
        key = (entry.trigger, entry.source, entry.dest)
        visited.update((entry.source, entry.dest))
        current[compiled.region_of_state[entry.dest]] = entry.dest
        taken[key] = taken.get(key, 0) + 1
        attempts[key] = max(attempts.get(key, 0), entry.attempt)
        if entry.error:
            errors[key] = entry.error
    ends = set(current.values())
    nodes = tuple(
        attrs.evolve(n, visited=n.id in visited, current=n.id in ends) for n in graph.nodes
    )
    edges = []
    for e in graph.edges:
        key = (e.trigger, e.source, e.target)
        if key not in taken:
            started = e.kind == "initial" and bool(history)
            edges.append(attrs.evolve(e, taken=1) if started else e)
            continue
        notes = []
        if taken[key] > 1:
            notes.append(f"x{taken[key]}")
        if attempts[key] > 1:
            notes.append(f"attempt {attempts[key]}")
        if key in errors:
            notes.append(_short(errors[key]))
        edges.append(attrs.evolve(e, taken=taken[key], note=", ".join(notes)))
    return attrs.evolve(graph, nodes=nodes, edges=tuple(edges), overlay=True)


def _short(text: str, width: int = 40) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."
