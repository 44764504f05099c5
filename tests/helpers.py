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
