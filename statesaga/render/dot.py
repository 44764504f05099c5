"""Graphviz output: DOT text (always) and images through the ``dot`` binary (when installed).

This is the only module that imports ``graphviz``, and only inside ``render_file``.
"""

from __future__ import annotations

from pathlib import Path

from .graph import Edge, Graph, Node, RenderError

IMAGE_FORMATS = ("pdf", "png", "svg")
INSTALL_HINT = (
    "the Graphviz 'dot' program is not installed: install it (apt-get install graphviz, "
    "or brew install graphviz) or render to .dot or .mmd instead"
)

FONT = "Helvetica"
COLOURS = {
    "initial": "black",
    "forward": "#333333",
    "compensate": "#1f6fb4",
    "failure": "#c62828",
    "join": "#7b7b7b",
    "rail": "#9dc3e6",
    "legend": "#e08a00",
}
TAKEN = "#e08a00"
VISITED_FILL = "#ffe9b3"
CURRENT_FILL = "#ffb74d"
PIVOT_FILL = "#ede7f6"
#: A wait's ``waiting`` state: a hexagon, teal, its outline dashed (nothing runs in it).
WAIT_FILL = "#e0f2f1"
WAIT_LINE = "#00897b"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _attrs(pairs: dict[str, str]) -> str:
    return ", ".join(f"{k}={_quote(v)}" for k, v in pairs.items())


def _node(n: Node) -> str:
    a: dict[str, str] = {"label": n.label}
    if n.kind == "start":
        a = {"label": "", "shape": "point", "width": "0.18", "fillcolor": "black"}
    elif n.kind == "legend":
        a = {"label": "", "shape": "point", "width": "0.05", "color": "#999999"}
    elif n.kind == "note":
        a = {"label": n.label, "shape": "plaintext", "fontsize": "9", "fontcolor": "#555555"}
    elif n.kind == "final":
        a["shape"] = "doublecircle"
        a["fixedsize"] = "false"
    elif n.kind == "sample":
        a["fontsize"] = "9"
    if n.kind in ("state", "final", "sample"):
        fill = "white"
        if n.pivot:
            fill = PIVOT_FILL
            a["peripheries"] = "2" if n.kind == "state" else "3"
        if n.waiting:
            fill = WAIT_FILL
            a.update(shape="hexagon", style="filled,dashed", color=WAIT_LINE)
        if n.visited:
            fill = VISITED_FILL
        if n.current:
            fill = CURRENT_FILL
            a["penwidth"] = "3"
        a["fillcolor"] = fill
    return f"{_quote(n.id)} [{_attrs(a)}];"


def _edge(e: Edge) -> str:
    colour = COLOURS[e.kind]
    a: dict[str, str] = {"color": colour, "fontcolor": colour}
    if e.style != "solid":
        a["style"] = e.style
    label = e.label if not e.note else f"{e.label}\n{e.note}"
    if label:
        a["label"] = label
    if e.kind == "initial":
        a["arrowsize"] = "0.7"
    if e.kind == "join":
        a["arrowhead"] = "empty"
    if e.kind == "rail":
        # Not a transition: one state drawn twice, joined without an arrow.
        a.update(penwidth="3", fontcolor=COLOURS["compensate"], dir="none")
    if e.main:
        a["weight"] = "8"
    if e.loose:
        a["constraint"] = "false"
    if e.taken:
        a["color"] = f"{TAKEN}:{colour}:{TAKEN}" if e.kind not in ("legend", "rail") else TAKEN
        a["penwidth"] = "2.5"
        a["fontcolor"] = "black"
    if e.backward:
        a.setdefault("dir", "back")
        return f"{_quote(e.target)} -> {_quote(e.source)} [{_attrs(a)}];"
    return f"{_quote(e.source)} -> {_quote(e.target)} [{_attrs(a)}];"


def to_dot(graph: Graph) -> str:
    """The DOT text of ``graph``: identical bytes for identical input."""
    lines = [
        f"digraph {_quote(graph.title)} {{",
        f"  graph [{_attrs(_graph_attrs(graph))}];",
        f"  node [{_attrs(_node_defaults())}];",
        f"  edge [{_attrs({'fontname': FONT, 'fontsize': '9', 'arrowsize': '0.6'})}];",
    ]
    clustered: set[str] = set()
    by_id = {n.id: n for n in graph.nodes}
    for c in graph.clusters:
        clustered.update(c.nodes)
        legend = c.id == "legend"
        style = {"label": c.label, "fontname": FONT, "fontsize": "10"}
        style.update({"style": "rounded,dashed", "color": "#bbbbbb"} if legend else {})
        if not legend:
            style.update({"style": "rounded", "color": "#9e9e9e"})
        lines.append(f"  subgraph {_quote('cluster_' + c.id)} {{")
        lines.append(f"    graph [{_attrs(style)}];")
        lines += [f"    {_node(by_id[n])}" for n in c.nodes]
        lines.append("  }")
    lines += [f"  {_node(n)}" for n in graph.nodes if n.id not in clustered]
    lines += [f"  {_edge(e)}" for e in graph.edges]
    for column in graph.columns:
        members = " ".join(f"{_quote(n)};" for n in column)
        order = " -> ".join(_quote(n) for n in column)
        lines.append(f'  {{ rank=same; {members} {order} [style="invis"]; }}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _graph_attrs(graph: Graph) -> dict[str, str]:
    title = graph.title + (" (run overlay)" if graph.overlay else "")
    return {
        "rankdir": "LR",
        "label": title,
        "labelloc": "t",
        "fontname": FONT,
        "fontsize": "14",
        "nodesep": "0.25",
        "ranksep": "0.35",
        "newrank": "true",
        "compound": "true",
    }


def _node_defaults() -> dict[str, str]:
    return {
        "shape": "box",
        "style": "rounded,filled",
        "fillcolor": "white",
        "fontname": FONT,
        "fontsize": "10",
        "margin": "0.08,0.04",
    }


def pipe(dot_text: str, fmt: str) -> bytes:
    """``dot_text`` rendered as ``fmt`` (svg, png or pdf) by the ``dot`` binary.

    Raises:
        RenderError: Graphviz is not installed, or ``dot`` rejected the input.
    """
    import graphviz

    if fmt not in IMAGE_FORMATS:
        raise RenderError(f"cannot render {fmt!r} with Graphviz: use one of {IMAGE_FORMATS}")
    try:
        data: bytes = graphviz.Source(dot_text).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RenderError(INSTALL_HINT) from None
    except graphviz.CalledProcessError as error:
        detail = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        raise RenderError(f"Graphviz failed: {detail[0] if detail else error}") from None
    return data


def to_svg(dot_text: str) -> str:
    """``dot_text`` as SVG text (needs the ``dot`` binary)."""
    return pipe(dot_text, "svg").decode("utf-8")


def render_file(dot_text: str, path: Path | str, fmt: str) -> None:
    """Render ``dot_text`` to ``path`` as ``fmt`` (svg, png or pdf) with the ``dot`` binary.

    Raises:
        RenderError: Graphviz is not installed, ``dot`` failed, or ``path`` is not writable.
    """
    data = pipe(dot_text, fmt)
    try:
        Path(path).write_bytes(data)
    except OSError as error:
        raise RenderError(f"cannot write {str(path)!r}: {error.strerror}") from None
