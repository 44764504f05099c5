from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(path: Path) -> list[tuple[str, str]]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", ["concepts.md", "waits.md"])
def test_docs_snippets_run_and_print_what_the_page_shows(page: str) -> None:
    """Every python block of the page runs in order; a following text block is its output."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    printed: str | None = None
    checked = 0
    for lang, body in blocks(ROOT / "docs" / page):
        if lang == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, f"docs/{page}", "exec"), namespace)
            printed = out.getvalue()
        elif lang == "text" and printed is not None:
            assert printed.rstrip() == body.rstrip()
            checked += 1
            printed = None
        else:
            printed = None
    assert checked > 0


def test_demo_shows_success_compensation_and_crash_recovery(tmp_path: Path) -> None:
    """`make demo`'s script runs and tells its three stories, then lists the runs."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        env={**os.environ, "STATESAGA_DEMO_DIR": str(tmp_path / "demo")},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "order-0001: COMPLETED" in done.stdout
    assert "COMPENSATED" in done.stdout
    assert "charge_card.compensation_done" in done.stdout
    assert "stock={'BOOK-1': 3}" in done.stdout
    assert "order-0003 after resume: COMPLETED" in done.stdout
    assert "steps called again: ['ship']" in done.stdout
    assert "order-0002  OrderSaga  compensated" in done.stdout


def test_readme_tour_prints_what_its_comments_say() -> None:
    """The README's tour runs, and prints exactly its '# ' comment lines after the calls."""
    ((body),) = [b for lang, b in blocks(ROOT / "README.md") if lang == "python"]
    expected = [
        line[2:]
        for line in body.splitlines()
        if line.startswith("# ") and not line.startswith("# retried")
    ]
    done = subprocess.run(
        [sys.executable, "-c", body], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == expected


def test_committed_diagrams_match_their_sagas() -> None:
    """Every diagram in docs/diagrams and in the examples is current (run `make docs` if not)."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import diagrams
    finally:
        sys.path.remove(str(ROOT / "docs"))
    stale = "is stale: run `make docs` and commit the result"
    for name in diagrams.SAGAS:
        machine = diagrams.compiled(name)
        for path, text in diagrams.texts(name, machine).items():
            assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(ROOT)} {stale}"
        svg, *copies = diagrams.svgs(name)
        assert svg.exists(), f"{svg.relative_to(ROOT)} is missing: run `make docs`"
        for copy in copies:
            assert copy.read_bytes() == svg.read_bytes(), f"{copy.relative_to(ROOT)} {stale}"
