"""``statesaga new``: generate a saga folder that runs and passes its tests as it is."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from ..scaffold import DEFAULT_STEPS, new_saga


class _Terminated(BaseException):
    """SIGTERM arrived: raised where the command is, so it unwinds and cleans up as Ctrl-C does."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises ``_Terminated`` instead of ending the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals; its caller owns them
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.argument("name")
@click.option(
    "--steps",
    metavar="A,B,C",
    help=f"Step names, comma-separated, in order [{','.join(DEFAULT_STEPS)}].",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    metavar="DIR",
    help="Folder to create NAME in (created if missing) [current folder].",
)
@click.option(
    "--template",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIR",
    help="Folder of Jinja templates to use instead of the built-in ones.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into an existing folder: overwrite the generated files, keep all others.",
)
def new(
    name: str,
    steps: str | None,
    directory: Path,
    template: Path | None,
    force: bool,
) -> None:
    """Create the saga folder NAME: actions, compensations, tests, README and diagram.

    NAME is snake_case, such as order_saga: it names the folder, the package and the saga
    class (OrderSaga). The saga runs and passes its tests as generated.
    """
    try:
        with _sigterm_unwinds():
            made = new_saga(
                name,
                steps=steps,
                directory=directory,
                template=template,
                force=force,
                progress=lambda line: click.echo(line, err=True),
            )
    except _Terminated:
        click.echo("terminated", err=True)
        sys.exit(128 + signal.SIGTERM)
    click.echo(f"created {made.path}/")
    for file in made.files:
        click.echo(f"  {file}")
    if made.kept:
        click.echo(f"kept {len(made.kept)} other file(s) that were already there")
    if made.diagram_problem:
        click.echo(f"note: no diagram.svg ({made.diagram_problem}); the README has it as Mermaid")
    if "main.py" in made.files:
        folder = shlex.quote(str(made.path))  # a path with a space still pastes as one word
        click.echo(f"next: cd {folder} && python main.py && python -m pytest")
