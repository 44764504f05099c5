"""One run's path laid over a graph: the nodes each transition is drawn between, and the
graph with what the run visited, took and met highlighted."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import attrs

from .chain import FAILED, HUB, Chain
from .model import Graph, Step

if TYPE_CHECKING:
    from ..compiler import CompiledSaga


@attrs.frozen
class Move:
    """One history entry with the nodes it is drawn between."""

    entry: Step
    source: str
    dest: str


def trace(chain: Chain | None, history: Sequence[Step]) -> tuple[list[Move], list[list[str]]]:
    """The nodes each entry of ``history`` is drawn between, and the drawings of
    ``compensating`` each stay in it passes (the move leaving it tells what it undoes first)."""
    moves: list[Move] = []
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
        moves.append(Move(entry, source, dest))
    return moves, paths


def overlay(
    graph: Graph, compiled: CompiledSaga, moves: Sequence[Move], paths: Sequence[Sequence[str]]
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
