"""``statesaga new``: generate a saga folder that runs and passes its tests as it is."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from .scaffold import DEFAULT_STEPS, new_saga


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
def new(name: str, steps: str | None, directory: Path, template: Path | None, force: bool) -> None:
    """Create the saga folder NAME: actions, compensations, tests, README and diagram.

    NAME is snake_case, such as order_saga: it names the folder, the package and the saga
    class (OrderSaga). The saga runs and passes its tests as generated.
    """
    made = new_saga(name, steps=steps, directory=directory, template=template, force=force)
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
