"""``statesaga machine`` and ``statesaga diagram``: show the state machine a saga compiles to,
as text or drawn."""

from __future__ import annotations

import asyncio
import json
from pathlib import PurePath

import click

from ..compiler import compile_saga
from ..loader import load_saga
from ..render import RenderError, graph_of, render
from ..render.dot import to_dot  # graphviz itself is imported only to draw a file
from ..render.mermaid import to_mermaid
from ._common import load_run


@click.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the machine as JSON.")
def machine(target: str, as_json: bool) -> None:
    """Show the state machine a saga compiles to.

    TARGET is package.module:SagaClass or path/to/file.py:SagaClass.
    """
    compiled = compile_saga(load_saga(target))
    if as_json:
        click.echo(json.dumps(compiled.to_dict(), indent=2))
        return
    click.echo(f"{compiled!r}  fingerprint {compiled.fingerprint}")
    width = max(len(t.trigger) for t in compiled.transitions)
    for t in compiled.transitions:
        mark = "compensate" if t.kind == "compensate" else "forward"
        click.echo(f"  {t.trigger:<{width}}  {t.source} -> {t.dest}  [{mark}]")


@click.command()
@click.argument("target")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File to write [<SagaName>.svg]; - writes dot or mmd text to standard output.",
)
@click.option("--format", "fmt", help="svg, png, pdf, dot or mmd [from the file's suffix].")
@click.option("--run", "run_id", help="Highlight the path of this stored run.")
@click.option(
    "--store",
    "store_url",
    envvar="STATESAGA_STORE",
    help="Store URL holding --run (sqlite:///file.db, postgresql://...); $STATESAGA_STORE sets it.",
)
def diagram(
    target: str, output: str | None, fmt: str | None, run_id: str | None, store_url: str | None
) -> None:
    """Draw the state machine a saga compiles to (optionally with one run's path on it).

    TARGET is package.module:SagaClass or path/to/file.py:SagaClass.
    """
    if store_url is not None and not store_url.strip():
        raise click.BadParameter(
            "names no store: give the store URL holding --run", param_hint="--store"
        )
    if output == "-" and fmt not in ("dot", "mmd", "mermaid"):
        raise click.BadParameter(
            "only text goes to standard output: add --format dot or --format mmd, or name a file",
            param_hint="--output",
        )
    compiled = compile_saga(load_saga(target))
    run = asyncio.run(load_run(store_url, run_id)) if run_id else None
    if run is not None and run.run.saga != compiled.name:
        raise RenderError(
            f"run {run_id} belongs to saga {run.run.saga!r}, not {compiled.name!r}: "
            "name that saga as TARGET"
        )
    if output == "-":
        graph = graph_of(compiled, run)
        click.echo(to_dot(graph) if fmt == "dot" else to_mermaid(graph), nl=False)
        return
    path = output
    if path is None:  # the default is a plain file in the current folder, never elsewhere
        name = str(compiled.name)
        if name in ("", ".", "..") or PurePath(name).name != name:
            raise RenderError(
                f"saga name {name!r} cannot name a file in the current folder: "
                "name the file to write with -o"
            )
        suffix = "mmd" if fmt == "mermaid" else (fmt or "svg")
        path = f"{name}.{suffix}"
    click.echo(render(compiled, path, format=fmt, run=run))
