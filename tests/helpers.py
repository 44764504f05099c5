"""Helpers shared by test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from statesaga.store.base import Commit, StoreError
from statesaga.testing import MemoryStore

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
REGENERATE = "STATESAGA_REGENERATE_GOLDEN"


def check_golden(name: str, text: str) -> None:
    """``text`` is the committed golden file ``tests/golden/<name>`` (rewritten first when
    the environment sets ``STATESAGA_REGENERATE_GOLDEN``)."""
    path = GOLDEN / name
    if os.environ.get(REGENERATE):
        path.write_text(text, encoding="utf-8")
    hint = f"{path} is stale or missing: check the change, then rerun with {REGENERATE}=1"
    assert path.exists(), hint
    assert text == path.read_text(encoding="utf-8"), hint


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``statesaga ARGS`` in a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "statesaga.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


ORDERS_SAGA = """
from statesaga import Saga, Step

async def act(ctx):
    return None

class Orders(Saga):
    steps = (Step("reserve", act, compensate=act), Step("charge", act))
"""


def write_orders_saga(folder: Path) -> Path:
    """A saga file ``orders.py`` (class ``Orders``: reserve, charge) in ``folder``."""
    path = folder / "orders.py"
    path.write_text(ORDERS_SAGA)
    return path


class FailingStore(MemoryStore):
    """A memory store whose ``fail_at``-th commit raises ``StoreError`` (a disk gone full)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.commits = 0

    async def commit(self, commit: Commit) -> Any:
        self.commits += 1
        if self.commits == self.fail_at:
            raise StoreError("disk full")
        return await super().commit(commit)
