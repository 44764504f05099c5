"""Mermaid output: a ``stateDiagram-v2`` text (renders in GitHub and most docs tools).

Mermaid cannot style single transitions, so the edge kind shows in its label: compensating
transitions start with ``↩``, failures with ``✗``, fork/join with ``⋔``, taken ones end in ``●``.
A state the graph draws more than once (a chain's ``compensating`` and ``failed``, beside each
step) is one Mermaid state: the text shows the machine itself, and leaves layout to Mermaid.
A wait's ``waiting`` state has the class ``waiting`` (teal, dashed outline, as Graphviz draws it).
"""

from __future__ import annotations

import re

import attrs

from .dot import WAIT_FILL, WAIT_LINE
from .graph import CLOCK, LEGEND, LETTER, START, Edge, Graph, Node

_MARK = {"compensate": "↩ ", "failure": "✗ ", "join": "⋔ "}
_CLASSES = (
    ("pivot", "fill:#ede7f6,stroke:#5e35b1"),
    ("waiting", f"fill:{WAIT_FILL},stroke:{WAIT_LINE},stroke-dasharray:5 3"),
    ("visited", "fill:#ffe9b3"),
    ("current", "fill:#ffb74d,stroke:#000,stroke-width:3px"),
)


def _id(name: str) -> str:
    """A Mermaid-safe id (prefixed so that no state name can clash with a keyword)."""
    return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", name.replace(".", "__"))


def _text(label: str) -> str:
    return label.replace("\n", " ").replace('"', "'").replace(":", " ")


def _declare(n: Node, indent: str) -> str:
    return f'{indent}state "{_text(n.label)}" as {_id(n.id)}'


def _edge(e: Edge) -> str:
    source = "[*]" if e.source == START else _id(e.source)
    label = _MARK.get(e.kind, "") + e.label
    if e.note:
        label += f" ({e.note})"
    if e.taken:
        label += " ●"
    label = _text(label).strip()
    return f"    {source} --> {_id(e.target)}" + (f" : {label}" if label else "")


def to_mermaid(graph: Graph) -> str:
    """The Mermaid ``stateDiagram-v2`` text of ``graph``: identical for identical input."""
    lines = ["---", f"title: {_text(graph.title)}", "---", "stateDiagram-v2", "    direction LR"]
    graph = _merged(graph)
    nodes = {n.id: n for n in graph.nodes if n.kind in ("state", "final")}
    clustered: set[str] = set()
    for c in graph.clusters:
        if c.id == LEGEND:
            continue
        clustered.update(c.nodes)
        lines.append(f'    state "{_text(c.label)}" as {_id("region." + c.id)} {{')
        lines += [_declare(nodes[n], "        ") for n in c.nodes]
        lines.append("    }")
    lines += [_declare(n, "    ") for n in nodes.values() if n.id not in clustered]
    lines += [_edge(e) for e in graph.edges if e.source == START or e.source in nodes]
    lines += [f"    {_id(n.id)} --> [*]" for n in nodes.values() if n.kind == "final"]
    for name, style in _CLASSES:
        members = [_id(n.id) for n in nodes.values() if getattr(n, name)]
        if members:
            lines.append(f"    classDef {name} {style}")
            lines.append(f"    class {','.join(members)} {name}")
    first = next(iter(nodes))
    lines += [
        f"    note left of {_id(first)}",
        "        legend: plain label = forward",
        "        ↩ = compensating, ✗ = failure, ⋔ = fork/join"
        + (", ● = taken by this run" if graph.overlay else ""),
    ]
    if any(n.waiting for n in nodes.values()):
        lines.append(f"        {CLOCK} = waiting for a signal, {LETTER} = the signal arrives")
    lines.append("    end note")
    return "\n".join(lines) + "\n"


def _merged(graph: Graph) -> Graph:
    """``graph`` with one node per state: drawings of one state merged, rails left out."""
    state = {n.id: n.state for n in graph.nodes}
    nodes: dict[str, Node] = {}
    for n in graph.nodes:
        seen = nodes.get(n.state)
        nodes[n.state] = attrs.evolve(
            seen or n,
            id=n.state,
            visited=n.visited or (seen is not None and seen.visited),
            current=n.current or (seen is not None and seen.current),
        )
    edges: dict[tuple[str, str, str, str], Edge] = {}
    for e in graph.edges:
        if e.kind == "rail":
            continue
        e = attrs.evolve(e, source=state.get(e.source, e.source), target=state[e.target])
        key = (e.trigger or e.label, e.kind, e.source, e.target)
        seen_edge = edges.get(key)
        if seen_edge is not None:  # one transition a run took from two drawings of a state
            notes = ", ".join(x for x in (seen_edge.note, e.note) if x)
            e = attrs.evolve(seen_edge, taken=seen_edge.taken + e.taken, note=notes)
        edges[key] = e
    return attrs.evolve(graph, nodes=tuple(nodes.values()), edges=tuple(edges.values()))
