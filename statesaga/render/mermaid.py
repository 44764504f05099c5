"""Mermaid output: a ``stateDiagram-v2`` text (renders in GitHub and most docs tools).

Mermaid cannot style single transitions, so the edge kind shows in its label: compensating
transitions start with ``↩``, failures with ``✗``, fork/join with ``⋔``, taken ones end in ``●``.
"""

from __future__ import annotations

import re

from .graph import LEGEND, START, Edge, Graph, Node

_MARK = {"compensate": "↩ ", "failure": "✗ ", "join": "⋔ "}
_CLASSES = (
    ("pivot", "fill:#ede7f6,stroke:#5e35b1"),
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
    nodes = {n.id: n for n in graph.nodes if n.kind not in ("start", "legend")}
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
        "    end note",
    ]
    return "\n".join(lines) + "\n"
