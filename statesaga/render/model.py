"""The graph model renderers draw: nodes, edges and clusters of plain data in a stable order."""

from __future__ import annotations

from typing import Literal, Protocol

import attrs

NodeKind = Literal["start", "state", "final", "legend", "note", "sample"]
EdgeKind = Literal["initial", "forward", "compensate", "failure", "join", "rail", "legend"]
EdgeStyle = Literal["solid", "dashed", "dotted"]

START = "__start__"
LEGEND = "legend"


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
            end), ``note`` (a line of legend text) or ``sample`` (a legend's sample of a
            state, drawn like the states it stands for).
        pivot: Whether the state belongs to a pivot step.
        waiting: Whether the state is a wait's ``waiting`` (or a legend's sample of one).
        visited: Whether the overlaid run entered it.
        current: Whether the overlaid run is (or ended) in it.
        state: The machine state it draws (its id unless it is one of several drawings).
    """

    id: str
    label: str
    kind: NodeKind
    pivot: bool = False
    waiting: bool = False
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
