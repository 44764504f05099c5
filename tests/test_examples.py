"""Every example runs as a script and as a module, in memory and on SQLite, as documented."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

EXAMPLES = ["order_processing", "travel_booking", "trade_execution", "payment_processing"]
READMES = ["README.md", *(f"{name}/README.md" for name in EXAMPLES)]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", EXAMPLES)
def test_main_tells_a_success_and_a_compensated_failure(name: str) -> None:
    """`python main.py` in the example's folder prints a completed and a compensated run."""
    out = run(["main.py"], ROOT / "examples" / name)
    assert "-> COMPLETED" in out
    assert "-> COMPENSATED" in out
    assert " undone" in out
    assert out.count("before: ") == out.count("after: ") >= 2


@pytest.mark.parametrize("name", EXAMPLES)
def test_module_run_records_the_runs_in_a_store(name: str, tmp_path: Path) -> None:
    """`python -m examples.NAME --store sqlite:///FILE` records every run it tells."""
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    out = run(["-m", f"examples.{name}", "--store", store], ROOT)
    listed = run(["-m", "statesaga.cli", "runs", "list", "--store", store], ROOT)
    assert listed.count("completed") == out.count("-> COMPLETED") >= 1
    assert listed.count("compensated") == out.count("-> COMPENSATED") >= 1


@pytest.mark.parametrize(
    ("args", "cwd"),
    [(["main.py"], "examples/order_processing"), (["-m", "examples.travel_booking"], ".")],
    ids=["script", "module"],
)
def test_a_store_that_cannot_be_used_is_one_line_before_any_run(args: list[str], cwd: str) -> None:
    """A bad --store is refused on one line, exit code 1, before any story is told."""
    done = subprocess.run(
        [sys.executable, *args, "--store", "sqlite:////nonexistent/dir/runs.db"],
        cwd=ROOT / cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: cannot use SQLite store '/nonexistent/dir/runs.db'")
    assert done.stderr.count("\n") == 1


def test_usage_names_the_command_that_runs_the_example() -> None:
    """`--help` names `python -m examples.NAME`, not `__main__.py`."""
    out = run(["main.py", "--help"], ROOT / "examples" / "trade_execution")
    assert out.startswith("usage: python -m examples.trade_execution [-h] [--store URL]")


def test_a_copied_example_runs_under_its_new_name(tmp_path: Path) -> None:
    """`cp -r examples/order_processing examples/my_saga` gives a saga that runs as is."""
    examples = tmp_path / "examples"
    examples.mkdir()
    for shared in (ROOT / "examples").glob("*.py"):
        shutil.copy(shared, examples)
    shutil.copytree(
        ROOT / "examples" / "order_processing",
        examples / "my_saga",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    assert "-> COMPENSATED" in run(["main.py"], examples / "my_saga")
    assert "-> COMPLETED" in run(["-m", "examples.my_saga"], tmp_path)


@pytest.mark.parametrize("page", READMES)
def test_readme_snippets_run_and_print_what_they_show(page: str) -> None:
    """Each README's python blocks run in order; a text block right after one is its output."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    namespace: dict[str, object] = {"__name__": "__readme__"}
    printed: str | None = None
    for lang, body in BLOCK.findall((ROOT / "examples" / page).read_text(encoding="utf-8")):
        # A block opening with a `# path` comment is an excerpt of a file, not a snippet.
        if lang == "python" and not body.startswith("# "):
            # The quick start awaits at top level, as in `python -m asyncio`.
            code = compile(body, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                awaited = eval(code, namespace)
                if inspect.iscoroutine(awaited):
                    asyncio.run(awaited)
            printed = out.getvalue()
        elif lang == "text" and printed is not None:
            assert printed.rstrip() == body.rstrip()
            printed = None
        else:
            printed = None
    result = namespace.get("result")
    assert result is not None, f"{page} shows no run"
