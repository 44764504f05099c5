"""The ``statesaga`` command: parses arguments, calls one function, prints the answer.

Each command lives in the module named after it; ``_common`` holds what several share.
"""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from ..errors import StatesagaError
from . import bridge, check, machine, new, outbox, relay, runs, signals, ui, worker

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="statesaga")
def cli() -> None:
    """Sagas as explicit state machines."""


cli.add_command(bridge.bridge)
cli.add_command(check.check)
cli.add_command(machine.machine)
cli.add_command(machine.diagram)
cli.add_command(new.new)
cli.add_command(outbox.outbox)
cli.add_command(relay.relay)
cli.add_command(runs.runs)
runs.runs.add_command(signals.signal_run)
runs.runs.add_command(signals.cancel_run)
cli.add_command(ui.ui)
cli.add_command(worker.worker)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning statesaga errors into one line and exit code 1.

    Like ``python -m``, it puts the current folder first on ``sys.path``: the sagas that
    ``module:Class`` references name are imported from there too, with their siblings.
    """
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        cli.main(args=argv, prog_name="statesaga", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except StatesagaError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
