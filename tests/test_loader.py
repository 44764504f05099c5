"""``load_saga``: saga classes found by reference, without changing the import path."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from statesaga.loader import TargetError, load_saga

SAGA = """
from statesaga import Saga, Step

async def act(ctx):
    return None

class Order(Saga):
    steps = (Step("reserve", act),)
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder, not on ``sys.path`` (as in a program started from elsewhere)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path


def unique(prefix: str) -> str:
    """A module name no other test imported (``sys.modules`` outlives a test)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_loading_an_importable_reference_leaves_sys_path_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``module:Class`` reference importable from ``sys.path`` loads, and ``sys.path`` is
    exactly as it was."""
    name = unique("on_path")
    (tmp_path / f"{name}.py").write_text(SAGA)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = list(sys.path)
    assert load_saga(f"{name}:Order").__name__ == "Order"
    assert sys.path == before


def test_loading_a_file_reference_leaves_sys_path_unchanged(folder: Path) -> None:
    """A ``path/to/file.py:Class`` reference loads, and ``sys.path`` is exactly as it was."""
    (folder / "order.py").write_text(SAGA)
    before = list(sys.path)
    assert load_saga(f"{folder / 'order.py'}:Order").__name__ == "Order"
    assert sys.path == before


def test_a_module_of_the_current_folder_loads_without_joining_sys_path(folder: Path) -> None:
    """A module (or package) in the current folder is found there, as ``python -m`` would,
    and the folder is not added to ``sys.path``."""
    module = unique("here")
    package = unique("shop")
    (folder / f"{module}.py").write_text(SAGA)
    (folder / package).mkdir()
    (folder / package / "__init__.py").write_text("")
    (folder / package / "sagas.py").write_text(SAGA)
    before = list(sys.path)
    assert load_saga(f"{module}:Order").__module__ == module
    assert load_saga(f"{package}.sagas:Order").__module__ == f"{package}.sagas"
    assert sys.path == before


def test_a_module_that_imports_a_sibling_needs_the_folder_on_sys_path(folder: Path) -> None:
    """A module of the current folder importing a sibling by its top-level name is refused,
    saying what is missing (the command line puts the folder on ``sys.path``; a program does
    it itself)."""
    sibling, module = unique("actions"), unique("main")
    (folder / f"{sibling}.py").write_text("async def act(ctx):\n    return None\n")
    (folder / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from statesaga import Saga, Step
            from {sibling} import act

            class Order(Saga):
                steps = (Step("reserve", act),)
            """
        )
    )
    before = list(sys.path)
    with pytest.raises(TargetError, match=f"No module named '{sibling}'"):
        load_saga(f"{module}:Order")
    assert sys.path == before
    assert module not in sys.modules  # a later try, with the folder on sys.path, runs it again


def test_a_module_found_nowhere_is_a_target_error(folder: Path) -> None:
    """A module neither on ``sys.path`` nor in the current folder raises ``TargetError``."""
    with pytest.raises(TargetError, match="cannot import 'no_such_module_anywhere'"):
        load_saga("no_such_module_anywhere:Order")
