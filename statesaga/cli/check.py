"""``statesaga check``: prove the saga's machine, then run its generated failure space."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click

from ..compiler import compile_saga
from ..errors import StatesagaError
from ..loader import load_saga
from ..testing import Outcome, explore, scenarios
from ..testing.proofs import prove


def _load_function(target: str, option: str) -> Callable[..., Any]:
    """The function ``module:name`` or ``path/file.py:name`` names (a usage error if none)."""
    module_ref, _, name = target.rpartition(":")
    if not module_ref or not name:
        raise click.BadParameter(f"{target!r}: give module:function", param_hint=option)
    try:
        if module_ref.endswith(".py"):
            path = Path(module_ref).resolve()
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_ref)
        found = getattr(module, name)
    except (ImportError, AttributeError, OSError) as error:
        raise click.BadParameter(f"{target!r}: {error}", param_hint=option) from None
    if not callable(found):
        raise click.BadParameter(f"{target!r} is not a function", param_hint=option)
    return found  # type: ignore[no-any-return]


@click.command()
@click.argument("target")
@click.option("--data", "data_text", default="{}", help="The saga's input, as a JSON object.")
@click.option("--setup", "setup_ref", help="module:function run before each scenario.")
@click.option("--check", "check_ref", help="module:function(result, scenario) run after each.")
@click.option("--no-crashes", is_flag=True, help="Leave out the crash points.")
@click.option(
    "--process-crashes",
    is_flag=True,
    help="Kill a real process at each crash point (runs on SQLite) instead of simulating it.",
)
@click.option("--pairs", is_flag=True, help="Add two faults at once.")
@click.option("--store", "store_url", help="Store URL for the runs [a memory store each].")
def check(
    target: str,
    data_text: str,
    setup_ref: str | None,
    check_ref: str | None,
    no_crashes: bool,
    process_crashes: bool,
    pairs: bool,
    store_url: str | None,
) -> None:
    """Prove a saga's machine, then run every failure and crash scenario it generates.

    TARGET is package.module:SagaClass or path/to/file.py:SagaClass. Exits 0 when every
    scenario holds, 1 when one fails, 2 on a usage error.
    """
    try:
        data = json.loads(data_text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--data") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    try:
        saga = load_saga(target)
    except StatesagaError as error:
        raise click.BadParameter(str(error), param_hint="TARGET") from None
    setup = _load_function(setup_ref, "--setup") if setup_ref else None
    checker = _load_function(check_ref, "--check") if check_ref else None
    compiled = compile_saga(saga)
    proofs = prove(compiled)
    for proof in proofs:
        click.echo(str(proof))
    if no_crashes and process_crashes:
        raise click.UsageError("--no-crashes and --process-crashes contradict each other")
    crashes: bool | Literal["process"] = "process" if process_crashes else not no_crashes
    try:
        count = len(scenarios(saga, crashes=crashes, pairs=pairs, store=store_url))
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"{compiled.name}: {count} scenarios")

    def show(outcome: Outcome) -> None:
        mark = "ok  " if outcome.ok else "FAIL"
        click.echo(
            f"{mark} {outcome.name} | expected: {outcome.expected} | observed: {outcome.observed}"
        )

    report = asyncio.run(
        explore(
            saga,
            data,
            setup=setup,
            check=checker,
            crashes=crashes,
            pairs=pairs,
            store=store_url,
            on_outcome=show,
        )
    )
    click.echo(report.summary())
    if not report.ok or not all(p.holds for p in proofs):
        sys.exit(1)
