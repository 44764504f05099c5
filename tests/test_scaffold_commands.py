"""The commands the README and the generated folder tell a user to run, run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from statesaga.scaffold import new_saga

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


@pytest.mark.slow
@pytest.mark.parametrize(
    "plugins",
    [[], ["-p", "no:asyncio"]],
    ids=["with-pytest-asyncio", "pytest-alone"],
)
def test_generated_tests_run_without_a_warning(tmp_path: Path, plugins: list[str]) -> None:
    """`python -m pytest` in a generated folder runs both its test files and warns of nothing,
    with or without pytest-asyncio."""
    folder = new_saga("order_saga", directory=tmp_path).path
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *plugins],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    passed = [line.split("::")[0] for line in output.splitlines() if line.startswith("PASSED ")]
    assert set(passed) == {"PASSED test_order_saga.py", "PASSED test_failure_space.py"}
    assert f"{len(passed)} passed" in output
    assert "warning" not in output.lower(), output


def readme_block() -> str:
    """The shell commands of the README's "Start a new saga" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Start a new saga\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.slow
@pytest.mark.skipif(not (VENV / "bin" / "activate").is_file(), reason="no .venv (make install)")
def test_readme_start_a_new_saga_runs_in_a_fresh_shell(tmp_path: Path) -> None:
    """The README's commands work after `make test` in a shell whose PATH lacks .venv/bin."""
    (tmp_path / ".venv").symlink_to(VENV)  # the checkout as `make test` leaves it
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != VENV / "bin"
    )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": path}
    done = subprocess.run(
        ["bash", "-e", "-c", readme_block()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\d+ passed", done.stdout), done.stdout
