from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import run_cli

from statesaga import __version__
from statesaga.cli import main

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow


@pytest.fixture
def saga_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders.py"
    path.write_text(
        textwrap.dedent(
            """
            from statesaga import Saga, Step

            async def act(ctx):
                return None

            async def undo(ctx):
                return None

            class Orders(Saga):
                steps = (Step("reserve", act, compensate=undo), Step("charge", act))

            not_a_saga = 42
            """
        )
    )
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_machine_lists_transitions_from_a_file(saga_file: Path) -> None:
    """`statesaga machine file.py:Class` prints the compiled machine."""
    done = run_cli("machine", f"{saga_file}:Orders")
    assert done.returncode == 0, done.stderr
    assert "<CompiledSaga Orders: chain of 2 steps" in done.stdout
    assert "reserve.compensate" in done.stdout


def test_machine_json_from_a_module(saga_file: Path) -> None:
    """A module:Class target resolves from the current folder; --json prints the machine."""
    done = run_cli("machine", "orders:Orders", "--json", cwd=saga_file.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["saga"] == "Orders"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nocolon", "not a saga reference"),
        ("no_such_module_xyz:Saga", "cannot import 'no_such_module_xyz'"),
        ("{file}:Missing", "has no attribute 'Missing'"),
        ("{file}:not_a_saga", "is not a subclass of statesaga.Saga (it is a int object)"),
        ("/nonexistent/x.py:Saga", "no such file"),
    ],
)
def test_bad_targets_give_one_line_and_exit_code(
    saga_file: Path, target: str, message: str
) -> None:
    """Bad targets print one error line, no traceback, and exit non-zero."""
    done = run_cli("machine", target.format(file=saga_file))
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_invalid_saga_definition_is_reported_without_traceback(tmp_path: Path) -> None:
    """A saga file whose definition is invalid reports its problems and exits 1."""
    path = tmp_path / "broken.py"
    path.write_text(
        "from statesaga import Saga, Step\n"
        "async def act(ctx):\n    return None\n"
        "class Broken(Saga):\n    steps = (Step('a', act), Step('a', act))\n"
    )
    done = run_cli("machine", f"{path}:Broken")
    assert done.returncode == 1
    assert "used by more than one step" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_command_is_a_usage_error() -> None:
    """An unknown subcommand exits with click's usage code."""
    done = run_cli("frobnicate")
    assert done.returncode == 2
    assert "No such command" in done.stderr


IMPORT_THE_LIBRARY = """
import importlib, pathlib, sys, statesaga
root = pathlib.Path(statesaga.__file__).parent
for file in sorted(root.rglob("*.py")):
    parts = file.relative_to(root.parent).with_suffix("").parts
    if parts[1:2] != ("cli",) and parts[-1] != "__main__":
        importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
print(sorted(name for name in sys.modules if name.startswith("statesaga.cli")))
"""


def test_the_library_never_imports_the_cli() -> None:
    """Importing every module outside statesaga/cli/ imports nothing of the CLI."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_LIBRARY], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_python_m_runs_the_cli() -> None:
    """`python -m statesaga.cli` is the statesaga command."""
    done = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert f"statesaga, version {__version__}" in done.stdout


SIBLINGS = {
    "steps_here.py": "async def act(ctx):\n    return None\n",
    "order_here.py": textwrap.dedent(
        """
        from statesaga import Saga, Step
        from steps_here import act

        class Order(Saga):
            steps = (Step("reserve", act),)
        """
    ),
}


def test_the_installed_command_imports_from_the_current_folder(tmp_path: Path) -> None:
    """`statesaga machine module:Class`, run as the installed command rather than with
    `python -m`, imports a module of the current folder that imports a sibling (like
    `python -m`, it puts that folder on sys.path)."""
    command = Path(sys.executable).with_name("statesaga")
    if not command.exists():
        pytest.skip("the statesaga command is not installed beside this Python")
    for name, text in SIBLINGS.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [str(command), "machine", "order_here:Order"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "<CompiledSaga Order: chain of 1 step," in done.stdout


def test_main_puts_the_current_folder_first_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line's entry point, not the library, adds the current folder to sys.path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    main(["--version"])
    assert sys.path[0] == str(tmp_path)
    length = len(sys.path)
    main(["--version"])
    assert len(sys.path) == length  # once
    capsys.readouterr()
