"""Crash tests: a real worker process running hundreds of durable sagas is SIGKILLed."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNS = 240


def child_env(ledger: Path) -> dict[str, str]:
    return {**os.environ, "CRASH_LEDGER": str(ledger), "STATESAGA_LEASE_SECONDS": "1"}


def read_ledger(ledger: Path) -> list[list[str]]:
    if not ledger.exists():
        return []
    return [line.split() for line in ledger.read_text().splitlines() if line]


def run_count(db: Path) -> int:
    try:
        with sqlite3.connect(db) as con:
            return int(con.execute("SELECT count(*) FROM statesaga_runs").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


def stored_phases(db: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT run_id, step, phase FROM statesaga_steps").fetchall()
    return {(run, step): phase for run, step, phase in rows}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_resume_loses_nothing_and_repeats_nothing(tmp_path: Path, seed: int) -> None:
    """After SIGKILL and resume: all runs end, no succeeded step reruns, undos happen once."""
    db, ledger = tmp_path / "runs.db", tmp_path / "ledger.txt"
    url = f"sqlite:///{db}"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash.run_many", url, str(RUNS), str(seed)],
        cwd=ROOT,
        env=child_env(ledger),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Kill once a seeded share of the runs has started: mid-stream, whatever the speed.
    target = RUNS * random.Random(seed).uniform(0.3, 0.8)
    deadline = time.monotonic() + 30
    while run_count(db) < target:
        assert time.monotonic() < deadline, "the worker started too few runs"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""

    before = stored_phases(db)
    done_before = {key for key, phase in before.items() if phase == "succeeded"}
    with sqlite3.connect(db) as con:
        (unfinished,) = con.execute(
            "SELECT count(*) FROM statesaga_runs WHERE status NOT IN "
            "('completed', 'compensated', 'failed')"
        ).fetchone()
    assert unfinished > 0, "the worker was killed after it finished: shorten the delay"
    assert done_before, "the worker was killed before it stored anything: raise the delay"
    time.sleep(1.2)  # let the dead worker's leases expire

    resumed = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", "runs", "resume", "--all", "--store", url],
        cwd=ROOT,
        env=child_env(ledger),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    with sqlite3.connect(db) as con:
        statuses = dict(con.execute("SELECT run_id, status FROM statesaga_runs").fetchall())
        done_events = con.execute(
            "SELECT run_id, trigger FROM statesaga_history WHERE trigger LIKE '%.compensation_done'"
        ).fetchall()
    assert set(statuses.values()) <= {"completed", "compensated"}, Counter(statuses.values())

    does: Counter[tuple[str, str]] = Counter()
    undo_keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for kind, run, step, key, _pid, _at in read_ledger(ledger):
        if kind == "do":
            does[(run, step)] += 1
        elif kind == "undo":
            undo_keys[(run, step)].add(key)

    # A step stored as succeeded before the kill never ran again.
    for key in done_before:
        assert does[key] == 1, f"{key} ran {does[key]} times though stored as succeeded"
    # Any step ran at most twice: once before the kill, once when resumed.
    assert max(does.values()) <= 2

    compensated_in_history = Counter((run, trig.split(".")[0]) for run, trig in done_events)
    for run, status in statuses.items():
        if status != "compensated":
            continue
        for r, step in does:
            if r == run and step != "ship":
                # Every step that took effect was compensated exactly once (one idempotency
                # key at the service, one compensation_done in the store).
                assert len(undo_keys[(run, step)]) == 1, (run, step)
                assert compensated_in_history[(run, step)] == 1, (run, step)
