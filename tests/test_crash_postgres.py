"""Crash test on PostgreSQL: two worker processes share a store and one is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import psycopg
import pytest
from test_store_postgres import URL, drop_schema, new_schema, require_server

ROOT = Path(__file__).resolve().parent.parent
RUNS = 120


def env(ledger: Path) -> dict[str, str]:
    return {**os.environ, "CRASH_LEDGER": str(ledger), "STATESAGA_LEASE_SECONDS": "1"}


def statuses(schema: str) -> dict[str, str]:
    with psycopg.connect(URL) as conn:
        rows = conn.execute(f'SELECT run_id, status FROM "{schema}".statesaga_runs').fetchall()
    return dict(rows)


def tables_exist(schema: str) -> bool:
    with psycopg.connect(URL) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".statesaga_runs',)).fetchone()
    return row is not None and row[0] is not None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 8])
def test_survivor_takes_over_a_killed_workers_runs(tmp_path: Path, seed: int) -> None:
    """The killed worker's runs are finished by the other, and no step ran in both at once."""
    require_server()
    schema = new_schema()
    url = f"{URL}?schema={schema}"
    ledger = tmp_path / "ledger.txt"
    try:
        doomed = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.run_many", url, str(RUNS), str(seed)],
            cwd=ROOT,
            env=env(ledger),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        survivor = subprocess.Popen(
            [sys.executable, "-m", "statesaga.cli", "worker", "--store", url, "--poll", "0.2"],
            cwd=ROOT,
            env=env(ledger),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Kill once a seeded share of the runs has started: mid-stream, whatever the speed.
        target = RUNS * (0.3 + 0.2 * (seed % 3))
        deadline = time.monotonic() + 30
        while len(statuses(schema) if tables_exist(schema) else {}) < target:
            assert time.monotonic() < deadline, "the worker started too few runs"
            time.sleep(0.01)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        killed_at = time.monotonic()
        assert doomed.returncode == -signal.SIGKILL
        unfinished_at_kill = sum(
            s not in ("completed", "compensated") for s in statuses(schema).values()
        )
        assert unfinished_at_kill > 0, "the worker finished before it was killed"

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = statuses(schema)
            if current and all(s in ("completed", "compensated") for s in current.values()):
                break
            time.sleep(0.2)
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=20)
        final = statuses(schema)
        assert set(final.values()) <= {"completed", "compensated"}, Counter(final.values())

        # Every action's execution, as (pid, start, end); a killed one ends at the kill.
        spans: dict[tuple[str, str], list[tuple[int, float, float]]] = defaultdict(list)
        open_spans: dict[tuple[str, str, int], float] = {}
        for kind, run, step, _key, pid, at in (
            line.split() for line in ledger.read_text().splitlines()
        ):
            if kind == "start":
                open_spans[(run, step, int(pid))] = float(at)
            elif kind == "end":
                started = open_spans.pop((run, step, int(pid)))
                spans[(run, step)].append((int(pid), started, float(at)))
        for (run, step, pid), started in open_spans.items():  # cut short by the kill or a failure
            spans[(run, step)].append((pid, started, killed_at))
        took_over = 0
        for key, executions in spans.items():
            pids = {pid for pid, _, _ in executions}
            if len(pids) > 1:
                took_over += 1
                first, second = sorted(executions, key=lambda e: e[1])[:2]
                assert first[2] <= second[1], f"{key} ran in two processes at once"
        print(f"{unfinished_at_kill} runs unfinished at the kill, {took_over} steps re-run")
        assert took_over > 0 or unfinished_at_kill == 0
    finally:
        drop_schema(schema)
