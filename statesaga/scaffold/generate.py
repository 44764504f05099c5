"""``new_saga``: templates rendered into a new saga folder that runs and passes its own tests.

Every name is checked before anything is rendered. The folder is rendered into a temporary
folder, its package is imported from there to draw the saga's diagram, and only then is it
moved into place: an error at any point leaves nothing behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from .diagram import draw, load_saga, mermaid
from .names import check_saga_name, step_names
from .target import check_overwrites, check_target, existing, install
from .templates import (
    environment,
    output_paths,
    render_files,
    template_files,
    template_root,
    template_variables,
)


@attrs.frozen
class Scaffolded:
    """What ``new_saga`` wrote.

    Attributes:
        path: The saga's folder.
        files: The files written, relative to ``path`` (POSIX style), sorted.
        kept: Files that were already in the folder and are not generated (with ``force``).
        diagram_problem: Why no SVG diagram was drawn (Graphviz missing, say), or ``None``.
    """

    path: Path
    files: tuple[str, ...]
    kept: tuple[str, ...] = ()
    diagram_problem: str | None = None


def new_saga(
    name: str,
    *,
    steps: str | Sequence[str] | None = None,
    directory: str | Path = ".",
    template: str | Path | None = None,
    force: bool = False,
    progress: Callable[[str], object] | None = None,
) -> Scaffolded:
    """Generate the saga folder ``directory/name`` from templates.

    Args:
        name: The saga's snake_case name: the folder, the package and (in CamelCase, ending in
            ``Saga``) the class.
        steps: Step names, as a sequence or a comma-separated string; ``DEFAULT_STEPS`` if
            ``None``.
        directory: The folder to create the saga's folder in (created if missing).
        template: A folder of templates to use instead of the built-in ones.
        force: Write into an existing, non-empty folder: generated files are overwritten,
            other files are kept.
        progress: Called with a one-line message when a phase is slow (drawing the diagram
            for more than ``diagram.NOTICE_AFTER`` seconds), to show the user what is going on.

    Returns:
        What was written.

    Raises:
        ScaffoldError: A name is unusable, the folder exists, or a template is broken;
            nothing was written.
    """
    check_saga_name(name)
    steps_named = step_names(steps)
    target = Path(directory) / name
    check_target(Path(directory), target, force)
    sources = template_files(template_root(template))
    variables = template_variables(name, steps_named)
    env = environment({k: v for k, v in sources.items() if isinstance(v, str)})
    svg = "diagram.svg"
    outputs = output_paths(env, sources, variables, reserved=svg)
    check_overwrites(target, [*outputs.values(), svg])

    with tempfile.TemporaryDirectory(prefix="statesaga-new-") as tmp:
        stage = Path(tmp) / name
        stage.mkdir()
        python = {k: v for k, v in outputs.items() if v.endswith(".py")}
        render_files(env, sources, python, variables, stage)
        saga = load_saga(stage, str(variables["class_name"]))
        diagram_problem = draw(saga, stage / svg, progress)
        variables["mermaid"] = mermaid(saga)
        variables["svg"] = None if diagram_problem else svg
        others = {k: v for k, v in outputs.items() if k not in python}
        render_files(env, sources, others, variables, stage)
        written = sorted([*outputs.values(), *([] if diagram_problem else [svg])])
        kept = existing(target, set(written))
        install(stage, target, written)
    return Scaffolded(target, tuple(written), kept, diagram_problem)
