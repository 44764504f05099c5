"""The inspector's screenshots in docs/ui/: every one docs/ui.md shows exists, and they were
taken with today's templates and stylesheet (``make screenshots`` retakes them and records the
hash of both in docs/ui/screenshots.sha256; tests/test_ui_browser.py takes them)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "ui"
RECORD = SHOTS / "screenshots.sha256"
UI = ROOT / "statesaga" / "ui"
#: What the screenshots show: a change to one of these makes them stale.
LOOKS = ("templates/*.html", "static/*.css")
RETAKE = "run `make screenshots` and commit docs/ui/"


def looks_hash(ui: Path = UI) -> str:
    """The SHA-256 of the templates and stylesheet under ``ui``, each file named and hashed
    in path order (so a renamed, added or removed file changes it too)."""
    digest = hashlib.sha256()
    for pattern in LOOKS:
        for path in sorted(ui.glob(pattern)):
            digest.update(f"{path.relative_to(ui).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def shown() -> list[str]:
    """The docs/ui/ images docs/ui.md shows, as written there (``ui/runs.png``)."""
    text = (ROOT / "docs" / "ui.md").read_text(encoding="utf-8")
    return re.findall(r"!\[[^\]]*\]\((ui/[^)\s]+\.png)\)", text)


def test_docs_show_the_screenshots_and_each_exists() -> None:
    images = shown()
    assert {"ui/runs.png", "ui/run.png", "ui/sagas.png"} <= set(images), images
    missing = [i for i in images if not (ROOT / "docs" / i).is_file()]
    assert not missing, f"docs/ui.md shows {', '.join(missing)}, which do not exist: {RETAKE}"


def test_screenshots_were_taken_with_todays_templates() -> None:
    assert RECORD.is_file(), f"{RECORD.relative_to(ROOT)} is missing: {RETAKE}"
    recorded = RECORD.read_text(encoding="utf-8").split()[0]
    assert recorded == looks_hash(), (
        "the inspector's templates or stylesheet changed since the screenshots in docs/ui/ "
        f"were taken: {RETAKE}"
    )


@pytest.mark.parametrize("changed", ["templates/run_live.html", "static/ui.css"])
def test_a_changed_template_or_stylesheet_changes_the_hash(changed: str, tmp_path: Path) -> None:
    copy = tmp_path / "ui"
    shutil.copytree(UI, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert looks_hash(copy) == looks_hash()
    with (copy / changed).open("a", encoding="utf-8") as file:
        file.write("\n")
    assert looks_hash(copy) != looks_hash()
