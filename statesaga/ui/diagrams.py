"""The inspector's diagrams: a saga's machine, and a run's path on it, as inline SVG drawn by
Graphviz's ``dot`` (the same drawing as ``statesaga diagram --run``).

A saga is imported from the reference stored with its runs; one that cannot be imported here
has no diagram, and the page says why. Drawing runs in a thread, and the SVG of a DOT text is
kept, so a run that has not moved is not drawn again.
"""

from __future__ import annotations

import asyncio
import functools

import attrs

from ..compiler import CompiledSaga, compile_saga
from ..errors import StatesagaError
from ..loader import load_saga, unimportable
from ..render import dot_of
from ..render.dot import to_svg
from ..store.base import RunSnapshot


@attrs.frozen
class Diagram:
    """An SVG to show (``svg``), or why there is none (``note``), or both: a drawing with a
    caveat (the saga changed since the run started)."""

    svg: str | None = None
    note: str | None = None


@functools.lru_cache(maxsize=128)
def _compiled(reference: str) -> CompiledSaga | str:
    """The machine of the saga ``reference`` names, or why it cannot be had here."""
    why = unimportable(reference)
    if why is not None:
        return f"its saga {reference} cannot be imported here: {why}"
    try:
        return compile_saga(load_saga(reference))
    except StatesagaError as error:
        return f"its saga {reference} cannot be imported here: {error}"


@functools.lru_cache(maxsize=256)
def _svg(dot_text: str) -> str:
    """``dot_text`` drawn, without the XML prologue (the SVG goes inside a page)."""
    svg = to_svg(dot_text)
    return svg[svg.find("<svg") :]


def _draw(reference: str, run: RunSnapshot | None) -> Diagram:
    compiled = _compiled(reference)
    if isinstance(compiled, str):
        return Diagram(note=compiled.replace("its saga", "the saga", 1))
    note = None
    if run is not None and run.run.fingerprint != compiled.fingerprint:
        note = (
            f"the saga's definition changed since this run started (definition "
            f"{run.run.fingerprint}, now {compiled.fingerprint}): the path is drawn on "
            "today's machine"
        )
    try:
        return Diagram(_svg(dot_of(compiled, run)), note)
    except StatesagaError as error:  # dot missing or failing: say so, show the rest
        return Diagram(note=f"no diagram: {error}")


async def saga_diagram(reference: str) -> Diagram:
    """The machine of the saga ``reference`` names."""
    return await asyncio.to_thread(_draw, reference, None)


async def run_diagram(snapshot: RunSnapshot) -> Diagram:
    """``snapshot``'s path on its saga's machine."""
    return await asyncio.to_thread(_draw, snapshot.run.saga_path, snapshot)
