"""A small graph model of a compiled saga, optionally overlaid with one run's path.

The model is plain data in a stable order (the compiled machine's own order), so every backend
(Graphviz, Mermaid) renders identical input to identical text.

A chain draws its ``compensating`` and ``failed`` states beside the steps that lead to them
(``chain``); a run's path is laid over the graph by ``overlay``. A wait's ``waiting`` state is
marked (``Node.waiting``) and labelled with its timeout, and its edges say what they do: a
signal arrives, the timeout fails it or lets the run continue, the run gives it up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from ..compiler import condition_name
from ..errors import RenderError as RenderError
from ..vocabulary import SAGA_REGION, Event, Phase, SagaState, SagaTrigger, parse_name
from .chain import FAILED, HUB, SPLIT, Chain, begun, chain_columns
from .model import (
    LEGEND,
    START,
    Cluster,
    Edge,
    EdgeKind,
    EdgeStyle,
    Graph,
    Node,
    NodeKind,
    Step,
)
from .overlay import Move, overlay, trace

if TYPE_CHECKING:
    from ..compiler import CompiledSaga, StepPlan, Transition

__all__ = [
    "LEGEND",
    "START",
    "Cluster",
    "Edge",
    "Graph",
    "Node",
    "RenderError",
    "Step",
    "build_graph",
]

_RUNNING: Final = SagaState.RUNNING.value


def build_graph(compiled: CompiledSaga, history: Iterable[Step] | None = None) -> Graph:
    """The graph of ``compiled``, with ``history`` (a run's transitions) highlighted if given.

    Edges a run cannot take in the usual course are left out unless the run took them: a
    retry loop on a step allowed one attempt, and a chain's administrative edges (cancellation
    between steps, reopening a failed run). They would hide the saga's shape. ``to_dict()``
    and ``machine()`` keep every edge.
    """
    chain = Chain(compiled) if compiled.sequential else None
    known = set(compiled.states)
    # Entries between states this saga no longer has were recorded by another version of it.
    entries = (
        [] if history is None else [h for h in history if h.source in known and h.dest in known]
    )
    moves, paths = trace(chain, entries)
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
    columns = chain_columns(compiled, {n.id for n in nodes}) if chain is not None else ()
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
        plan = None if step is None else compiled.by_name[step]
        waiting = False
        if plan is not None and plan.wait and phase == Phase.WAITING:
            waiting = True
            phase = f"{CLOCK} {phase}\n({_timeout(plan)})"
        # In a DAG the region's cluster names the step already.
        label = f"{step}\n{phase}" if step is not None and compiled.sequential else phase
        if step in pivots and phase == Phase.RUNNING:
            label += "\n(pivot)"
        if state in drawn or state not in SPLIT or not compiled.sequential:
            nodes.append(Node(state, label, kind, pivot=step in pivots, waiting=waiting))
        if step is not None and state == last[step]:
            beside = [(f"{split}@{step}", split) for split in SPLIT]
            nodes += [
                Node(node, split, "final" if split == FAILED else "state", state=split)
                for node, split in beside
                if node in drawn
            ]
    return nodes


def _transitions(compiled: CompiledSaga, chain: Chain | None, moves: Sequence[Move]) -> list[Edge]:
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
        label = _label(compiled.by_name[t.step] if t.step else None, t.trigger)
        edges += [_edge(t, a, b, label, compiled.terminal_states, back) for a, b in shown]
    return edges


#: Marks of a wait: its waiting state (a clock) and a signal arriving (a letter). Glyphs the
#: common fonts have (DejaVu, Helvetica's usual stand-in), so that PNG and PDF show them too.
CLOCK: Final = "◷"
LETTER: Final = "✉"


def _label(plan: StepPlan | None, trigger: str) -> str:
    """An edge's label: its event; for a wait's edges, also what happens on them."""
    event = parse_name(trigger)[1]
    if plan is not None and plan.when is not None:
        guard = condition_name(plan.when).rpartition(".")[2]
        if event == Event.SKIP:
            return f"{event} (not {guard})"
        if event in (Event.START, Event.WAIT):
            return f"{event} (if {guard})"
    if plan is None or not plan.wait:
        return event
    if event == Event.SIGNAL:
        return f"{LETTER} {event} arrives"
    if event == Event.TIME_OUT:
        return f"{event} → {'continues' if plan.on_timeout == 'continue' else 'fails'}"
    if event == Event.FAIL:
        return f"{event} (given up)"  # cancelled, past the deadline, or a sibling failed
    return event


def _timeout(plan: StepPlan) -> str:
    return "no timeout" if plan.timeout is None else f"timeout {duration(plan.timeout)}"


def duration(seconds: float) -> str:
    """``seconds`` as a person writes it: ``1h``, ``1h30m``, ``1d2h``, ``0.5s``."""
    whole = int(seconds)
    rest = seconds - whole
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if whole or rest or not parts:
        parts.append(f"{whole + rest:g}s")
    return "".join(parts)


_ADMINISTRATIVE = frozenset({SagaTrigger.REOPEN, SagaTrigger.PROCEED})


def _administrative(compiled: CompiledSaga, t: Transition) -> bool:
    """Edges a picture leaves out: retries a step never makes (``Retry`` of one attempt), the
    timeout of a wait that has none, pushing a halted run forward, and in a chain,
    cancellation between steps and reopening."""
    event = parse_name(t.trigger)[1]
    if event == Event.PUSH_FORWARD:  # a step's, or a DAG's saga trigger of the same name
        return True  # a person's doing, once the run has ended failed
    if t.step is not None:
        plan = compiled.by_name[t.step]
        if event == Event.RETRY and plan.retry.attempts == 1:
            return True
        if event == Event.RETRY_COMPENSATION and plan.compensate_retry.attempts == 1:
            return True
        if event == Event.TIME_OUT and plan.wait and plan.timeout is None:
            return True  # a wait without a timeout: only given up, never timed out
    if not compiled.sequential:
        return False
    if t.trigger in _ADMINISTRATIVE:
        return True
    if t.trigger == SagaTrigger.ABORT and _step_phase(t.source) in (Phase.SUCCEEDED, Phase.SKIPPED):
        return True
    return t.trigger == SagaTrigger.GIVE_UP and t.source == HUB


def _step_phase(state: str) -> str | None:
    """The phase of a step state; ``None`` for a saga state."""
    step, phase = parse_name(state)
    return None if step is None else phase


_MAIN_EVENTS = frozenset(
    {Event.START, Event.SUCCEED, Event.WAIT, Event.SIGNAL, SagaTrigger.COMPLETE}
)
_BACK_EVENTS = frozenset(
    {Event.COMPENSATE, Event.RETRY_COMPENSATION, Event.COMPENSATION_DONE, Event.COMPENSATION_FAIL}
)


def _edge(
    t: Transition, source: str, dest: str, label: str, terminal: Sequence[str], back: bool
) -> Edge:
    event = parse_name(t.trigger)[1]
    # Compensations run right to left, under the forward chain they undo.
    back = back or (t.step is not None and event in _BACK_EVENTS)
    loose = t.source in terminal
    main = event in _MAIN_EVENTS and t.source != t.dest and not t.failure
    kind: EdgeKind = "failure" if t.failure else t.kind
    style: EdgeStyle = "dashed" if t.kind == "compensate" else "solid"
    return Edge(source, dest, label, kind, style, t.trigger, 0, "", main, back, loose)


def _forks_and_joins(compiled: CompiledSaga) -> list[Edge]:
    """Fork from the saga's ``running``, joins on dependencies, join into ``completed``."""
    edges: list[Edge] = []
    for p in compiled.steps:
        target = begun(p)
        if not p.deps:
            edges.append(Edge(_RUNNING, target, "fork", "join", "dotted"))
        edges += [
            Edge(done, target, "", "join", "dotted")
            for d in p.deps
            for done in _done(compiled.by_name[d])
        ]
    completed = SagaState.COMPLETED.value
    edges += [
        Edge(done, completed, "join", "join", "dotted")
        for p in compiled.steps
        if not p.dependants
        for done in _done(p)
    ]
    return edges


def _done(plan: StepPlan) -> list[str]:
    """The states a join waits for: succeeded, or (a conditional step) skipped too."""
    return [plan.state(Phase.SUCCEEDED)] + (
        [plan.state(Phase.SKIPPED)] if plan.when is not None else []
    )


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
        elif region in compiled.by_name and compiled.by_name[region].wait:
            label += " (wait)"
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
    if any(p.wait for p in compiled.steps):
        text = f"{CLOCK} waiting for a signal\n(or its timeout)"
        legend_nodes.append(Node(f"{LEGEND}.wait", text, "sample", waiting=True))
    return legend_nodes, legend_edges
