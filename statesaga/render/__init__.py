"""Draw a saga's compiled machine (and optionally one run's path) as Graphviz or Mermaid.

compiled machine (+ run history) -> ``graph.Graph`` -> DOT text (-> svg/png/pdf via ``dot``)
                                                    -> Mermaid text
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from ..compiler import CompiledSaga, compile_saga
from ..errors import RenderError

# The graph model, its writers and pathlib are imported by the functions that draw: ``import
# statesaga`` exports ``render``, but most programs never draw.
if TYPE_CHECKING:
    from pathlib import Path

    from ..definition import SagaDefinition
    from .graph import Graph, Step

__all__ = ["FORMATS", "RenderError", "dot_of", "graph_of", "mermaid_of", "render", "svg_of"]

#: Output formats ``render`` understands (also the file suffixes it recognises).
FORMATS = ("dot", "mmd", "pdf", "png", "svg")


class _Run(Protocol):
    @property
    def history(self) -> Iterable[Step]: ...


def _compiled(saga: type[SagaDefinition] | CompiledSaga) -> CompiledSaga:
    return saga if isinstance(saga, CompiledSaga) else compile_saga(saga)


def graph_of(saga: type[SagaDefinition] | CompiledSaga, run: _Run | None = None) -> Graph:
    """The graph model of ``saga``, with ``run``'s path on it if given."""
    from .graph import build_graph

    return build_graph(_compiled(saga), None if run is None else run.history)


def dot_of(saga: type[SagaDefinition] | CompiledSaga, run: _Run | None = None) -> str:
    """``saga``'s machine (with ``run``'s path) as Graphviz DOT text, deterministic."""
    from .dot import to_dot

    return to_dot(graph_of(saga, run))


def mermaid_of(saga: type[SagaDefinition] | CompiledSaga, run: _Run | None = None) -> str:
    """``saga``'s machine (with ``run``'s path) as a Mermaid ``stateDiagram-v2``."""
    from .mermaid import to_mermaid

    return to_mermaid(graph_of(saga, run))


def svg_of(saga: type[SagaDefinition] | CompiledSaga, run: _Run | None = None) -> str:
    """``saga``'s machine (with ``run``'s path) as SVG text, for a page or a notebook
    (``IPython.display.SVG(svg_of(OrderSaga))``).

    Raises:
        RenderError: Graphviz's ``dot`` is not installed.
    """
    from .dot import to_svg

    return to_svg(dot_of(saga, run))


def _format(path: Path, format: str | None) -> str:
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    if fmt == "mermaid":
        fmt = "mmd"
    if fmt not in FORMATS:
        raise RenderError(f"unknown diagram format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def render(
    saga: type[SagaDefinition] | CompiledSaga,
    path: str | Path,
    *,
    format: str | None = None,
    run: _Run | None = None,
) -> Path:
    """Draw ``saga`` to ``path`` and return the path.

    Args:
        saga: A saga class or its compiled machine.
        path: The file to write; its suffix gives the format unless ``format`` does
            (``svg`` when neither does).
        format: ``svg``, ``png``, ``pdf`` (need Graphviz's ``dot``), ``dot`` or ``mmd``.
        run: A ``SagaResult`` or a stored ``RunSnapshot`` whose path to highlight.

    Raises:
        RenderError: Unknown format, missing output folder, or Graphviz is not installed.
    """
    from pathlib import Path

    from .dot import render_file, to_dot
    from .mermaid import to_mermaid

    out = Path(path)
    fmt = _format(out, format)
    if not out.parent.is_dir():
        raise RenderError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    graph = graph_of(saga, run)
    if fmt == "mmd":
        _write(out, to_mermaid(graph))
    elif fmt == "dot":
        _write(out, to_dot(graph))
    else:
        render_file(to_dot(graph), out, fmt)
    return out


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise RenderError(f"cannot write {str(path)!r}: {error.strerror}") from None
