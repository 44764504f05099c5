"""Draw a saga's compiled machine (and optionally one run's path) as Graphviz or Mermaid.

compiled machine (+ run history) -> ``graph.Graph`` -> DOT text (-> svg/png/pdf via ``dot``)
                                                    -> Mermaid text
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .graph import Graph, RenderError, Step, build_graph

if TYPE_CHECKING:
    from ..compiler import CompiledSaga
    from ..definition import Saga

__all__ = ["FORMATS", "RenderError", "graph_of", "render"]

#: Output formats ``render`` understands (also the file suffixes it recognises).
FORMATS = ("dot", "mmd", "pdf", "png", "svg")


class _Run(Protocol):
    @property
    def history(self) -> Iterable[Step]: ...


def _compiled(saga: type[Saga] | CompiledSaga) -> CompiledSaga:
    from ..compiler import CompiledSaga, compile_saga

    return saga if isinstance(saga, CompiledSaga) else compile_saga(saga)


def graph_of(saga: type[Saga] | CompiledSaga, run: _Run | None = None) -> Graph:
    """The graph model of ``saga``, with ``run``'s path on it if given."""
    return build_graph(_compiled(saga), None if run is None else run.history)


def _format(path: Path, format: str | None) -> str:
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    if fmt == "mermaid":
        fmt = "mmd"
    if fmt not in FORMATS:
        raise RenderError(f"unknown diagram format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def render(
    saga: type[Saga] | CompiledSaga,
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
