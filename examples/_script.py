"""Lets ``python main.py`` inside an example's folder behave like ``python -m examples.<name>``."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import NoReturn


def run_as_package(script: str) -> NoReturn:
    """Run the folder of ``script`` as the package ``examples.<folder>``, then exit.

    A script run directly cannot use relative imports, and a saga class defined in
    ``__main__`` would be recorded under that name by durable runs, where no worker could
    import it again. Running the package instead gives the saga one import path either way.
    """
    folder = Path(script).resolve().parent
    runpy.run_module(f"examples.{folder.name}", run_name="__main__", alter_sys=True)
    raise SystemExit(0)
