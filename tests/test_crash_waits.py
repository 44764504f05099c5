"""Crash tests of waits, on SQLite and real PostgreSQL: the processes that start, signal and
drive waiting runs are real ones, killed with SIGKILL; signals come from the command line.

Every effect goes to a ledger file (``tests/crash/waits.py``), which says how many times each
step ran, with which idempotency key and which payload; the store's rows are read with SQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_store_postgres import URL, drop_schema, require_server

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"completed", "compensated", "failed"}

pytestmark = pytest.mark.slow


class Backend:
    """A store URL as users write it, and its tables read with plain SQL."""

    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.tmp_path = tmp_path
        self.ledger = tmp_path / "ledger.jsonl"
        self.kind = kind
        self.schema = f"crash_waits_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            self.db = tmp_path / "runs.db"
            self.url = f"sqlite:///{self.db}"
        else:
            self.url = f"{URL}{'&' if '?' in URL else '?'}schema={self.schema}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """Run ``query``, its ``{t}`` naming where statesaga's tables are."""
        if self.kind == "sqlite":
            # Read-write but never created here: the processes under test create the store.
            with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=rw", uri=True)) as conn:
                return conn.execute(query.format(t="")).fetchall()
        with psycopg.connect(URL) as pg:
            return pg.execute(query.format(t=f'"{self.schema}".')).fetchall()

    def runs(self) -> dict[str, tuple[str, str | None, float | None, float | None]]:
        """Each run's status, lease owner, lease end and ``wake_at``."""
        query = "SELECT run_id, status, lease_owner, lease_expires, wake_at FROM {t}statesaga_runs"
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in self.rows(query)}

    def statuses(self) -> dict[str, str]:
        return {run: row[0] for run, row in self.runs().items()}

    def steps(self, run_id: str) -> dict[str, tuple[str, int, Any]]:
        """Each step's phase, attempt and result (decoded)."""
        rows = self.rows(
            "SELECT step, phase, attempt, result FROM {t}statesaga_steps"
            f" WHERE run_id = '{run_id}'"
        )
        return {step: (phase, attempt, _json(result)) for step, phase, attempt, result in rows}

    def triggers(self, run_id: str) -> list[str]:
        rows = self.rows(
            f"SELECT \"trigger\" FROM {{t}}statesaga_history WHERE run_id = '{run_id}' ORDER BY seq"
        )
        return [trigger for (trigger,) in rows]

    def history_at(self, run_id: str, trigger: str) -> float:
        [(at,)] = self.rows(
            "SELECT at FROM {t}statesaga_history"
            f" WHERE run_id = '{run_id}' AND \"trigger\" = '{trigger}'"
        )
        return float(at)

    def calls(self) -> list[dict[str, Any]]:
        """Every call the ledger recorded, in order."""
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``python -m args...`` in the project, its output in ``<name>.out``."""
        out = (self.tmp_path / f"{name}.out").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=self.env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def output(self, name: str) -> str:
        return (self.tmp_path / f"{name}.out").read_text(errors="replace")

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "CRASH_LEDGER": str(self.ledger),
            "STATESAGA_LEASE_SECONDS": "1",
            **extra,
        }

    def start(self, *runs: str) -> subprocess.Popen[bytes]:
        """Start ``SAGA:RUN_ID`` runs in a process that follows them, once they all wait."""
        ids = [run.split(":")[1] for run in runs]
        proc = self.spawn("start", "tests.crash.wait_start", self.url, *runs)
        until(
            lambda: (
                proc.poll() is None
                and self.ledger.exists()
                and all(self.statuses_or_none().get(i) == "waiting" for i in ids)
            ),
            what=f"runs {ids} waiting",
            why=lambda: self.output("start"),
        )
        return proc

    def statuses_or_none(self) -> dict[str, str]:
        try:
            return self.statuses()
        except (sqlite3.Error, psycopg.Error):
            return {}  # the store is not created yet

    def signal(self, run_id: str, payload: dict[str, Any], signal_id: str) -> tuple[int, str]:
        """``statesaga runs signal RUN_ID paid --data JSON --id ID``: exit code, output."""
        done = subprocess.run(
            [
                *(sys.executable, "-m", "statesaga.cli", "runs", "signal", run_id, "paid"),
                *("--data", json.dumps(payload), "--id", signal_id, "--store", self.url),
            ],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def worker(self, name: str = "worker", poll: float = 0.2) -> subprocess.Popen[bytes]:
        """``statesaga worker``, a process of its own."""
        return self.spawn(name, "statesaga.cli", "worker", "--store", self.url, "--poll", str(poll))

    def stop(self, proc: subprocess.Popen[bytes], name: str = "worker") -> None:
        """Stop a worker as Ctrl-C does; it exits 0."""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, self.output(name)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def until(
    ready: Callable[[], bool], *, what: str, seconds: float = 10.0, why: Callable[[], str]
) -> None:
    """Wait until ``ready()``; fail naming ``what`` (and showing ``why()``) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"never: {what}\n{why()}"
        time.sleep(0.02)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each durable backend, by URL; its processes are killed and its schema dropped after."""
    if request.param == "postgres":
        require_server()
    store = Backend(tmp_path, request.param)
    try:
        yield store
    finally:
        for proc in store.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if request.param == "postgres":
            drop_schema(store.schema)


def assert_no_live_lease(backend: Backend, run_id: str) -> None:
    _status, owner, expires, _wake = backend.runs()[run_id]
    assert owner is None or (expires is not None and expires < time.time()), (owner, expires)


def assert_same_keys(backend: Backend) -> None:
    """Every call of a step (or of its compensation) in a run, re-run or not, had one key:
    the action's is ``<run>:<step>``."""
    keys: dict[tuple[str, str, str], set[str]] = {}
    for call in backend.calls():
        keys.setdefault((call["run"], call["step"], call["kind"]), set()).add(call["key"])
    for (run, step, kind), seen in keys.items():
        assert len(seen) == 1, f"{run} {step} ({kind}) was called with keys {seen}"
        if kind != "release":
            assert seen == {f"{run}:{step}"}


def count(backend: Backend, kind: str) -> Counter[str]:
    """How many times each run called ``kind`` (a step, or ``release``)."""
    return Counter(call["run"] for call in backend.calls() if call["kind"] == kind)


def test_a_run_killed_while_it_waits_takes_a_cli_signal_and_a_worker_ends_it(
    backend: Backend,
) -> None:
    """SIGKILL while waiting: rows, no lease; CLI signal accepted; a worker completes it once."""
    starter = backend.start("Paid:w-1")
    kill(starter)

    status, _owner, _expires, wake_at = backend.runs()["w-1"]
    assert (status, wake_at) == ("waiting", None)  # no timeout: nothing will wake it
    assert_no_live_lease(backend, "w-1")
    steps = backend.steps("w-1")
    assert {name: phase for name, (phase, _, _) in steps.items()} == {
        "reserve": "succeeded",
        "paid": "waiting",
    }

    code, out = backend.signal("w-1", {"amount": 42}, "pay-77")
    assert code == 0, out
    assert "accepted" in out
    assert backend.statuses()["w-1"] == "waiting"  # nobody drives it yet
    assert count(backend, "ship") == Counter()

    worker = backend.worker()
    until(
        lambda: backend.statuses()["w-1"] == "completed",
        what="w-1 completed",
        why=lambda: backend.output("worker"),
    )
    backend.stop(worker)

    assert count(backend, "reserve") == Counter({"w-1": 1})
    [ship] = [call for call in backend.calls() if call["kind"] == "ship"]
    assert ship["paid"] == {"amount": 42}
    steps = backend.steps("w-1")
    assert (steps["paid"][0], steps["paid"][2]) == ("succeeded", {"amount": 42})
    assert (steps["ship"][0], steps["ship"][2]) == ("succeeded", {"charged": 42})
    assert backend.triggers("w-1").count("paid.signal") == 1
    assert_same_keys(backend)


def test_signals_sent_while_no_worker_runs_are_applied_once_by_a_later_worker(
    backend: Backend,
) -> None:
    """CLI signals (duplicates too) while nothing runs; a later worker ends just those runs."""
    runs = [f"s-{i}" for i in range(5)]
    kill(backend.start(*(f"Paid:{run}" for run in runs)))
    signalled = {"s-0": 10, "s-1": 11, "s-3": 13}
    for run, amount in signalled.items():
        code, out = backend.signal(run, {"amount": amount}, f"pay-{run}")
        assert code == 0, out
        assert "accepted" in out, out
    for run in ("s-0", "s-3"):  # sent again, as a retrying webhook would
        code, out = backend.signal(run, {"amount": signalled[run]}, f"pay-{run}")
        assert code == 0, out
        assert "duplicate" in out, out
    code, out = backend.signal("s-1", {"amount": 99}, "pay-s-1")  # same id, another payload
    assert code == 1, out
    assert "refused" in out, out
    code, out = backend.signal("s-1", {"amount": 98}, "pay-again")  # another id, same wait
    assert code == 1, out
    assert "already signalled" in out, out
    assert set(backend.statuses().values()) == {"waiting"}
    assert count(backend, "ship") == Counter()

    worker = backend.worker()
    until(
        lambda: all(backend.statuses()[run] == "completed" for run in signalled),
        what=f"{sorted(signalled)} completed",
        why=lambda: backend.output("worker"),
    )
    time.sleep(0.5)  # a few more polls: the others must stay parked
    backend.stop(worker)

    statuses = backend.statuses()
    assert {run: statuses[run] for run in ("s-2", "s-4")} == {"s-2": "waiting", "s-4": "waiting"}
    assert count(backend, "ship") == Counter(dict.fromkeys(signalled, 1))
    for call in backend.calls():
        if call["kind"] == "ship":
            assert call["paid"] == {"amount": signalled[call["run"]]}
    for run, amount in signalled.items():
        assert backend.triggers(run).count("paid.signal") == 1
        assert backend.steps(run)["ship"][2] == {"charged": amount}
    for run in ("s-2", "s-4"):
        assert "paid.signal" not in backend.triggers(run)
        assert_no_live_lease(backend, run)
    code, out = backend.signal("s-0", {"amount": 10}, "pay-s-0")  # a retry once it has ended
    assert code == 0, out
    assert "duplicate" in out, out

    # The rest end too: one is signalled, one cancelled (its reservation released once).
    code, out = backend.signal("s-2", {"amount": 12}, "pay-s-2")
    assert code == 0, out
    cancelled = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", "runs", "cancel", "s-4", "--store", backend.url],
        cwd=ROOT,
        env=backend.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    once = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", "worker", "--once", "--store", backend.url],
        cwd=ROOT,
        env=backend.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert once.returncode == 0, once.stdout + once.stderr
    statuses = backend.statuses()
    assert statuses == {**dict.fromkeys(runs, "completed"), "s-4": "compensated"}
    assert count(backend, "ship") == Counter(dict.fromkeys(["s-0", "s-1", "s-2", "s-3"], 1))
    assert count(backend, "release") == Counter({"s-4": 1})
    assert count(backend, "reserve") == Counter(dict.fromkeys(runs, 1))
    assert_same_keys(backend)


@pytest.mark.parametrize("when", ["before", "after", "in-step"])
def test_a_worker_killed_at_the_signal_commit_leaves_it_to_another_once(
    backend: Backend, when: str
) -> None:
    """SIGKILL before/after the commit recording paid.signal, or in the next step: applied once."""
    kill(backend.start("Paid:k-1"))
    code, out = backend.signal("k-1", {"amount": 7}, "pay-k-1")
    assert code == 0, out

    if when == "in-step":
        doomed = backend.spawn(
            "doomed",
            "statesaga.cli",
            "worker",
            "--store",
            backend.url,
            "--poll",
            "0.1",
            CRASH_DIE_IN_SHIP="1",
        )
    else:
        doomed = backend.spawn("doomed", "tests.crash.wait_worker", backend.url, when)
    assert doomed.wait(timeout=10) == -signal.SIGKILL, backend.output("doomed")

    status, owner, _expires, _wake = backend.runs()["k-1"]
    assert owner is not None  # the dead worker's lease: the next one waits for it to run out
    steps = backend.steps("k-1")
    ships = count(backend, "ship")["k-1"]
    if when == "before":  # nothing of the signal's taking was stored
        assert (status, steps["paid"][0], "ship" in steps) == ("waiting", "waiting", False)
        assert "paid.signal" not in backend.triggers("k-1")
        assert ships == 0
    else:  # the wait's outcome is stored and ship is recorded as running
        assert (status, steps["paid"][0], steps["paid"][2]) == (
            "running",
            "succeeded",
            {"amount": 7},
        )
        assert steps["ship"][:2] == ("running", 1)
        assert ships == (1 if when == "in-step" else 0)

    worker = backend.worker()
    until(
        lambda: backend.statuses()["k-1"] == "completed",
        what="k-1 completed",
        why=lambda: backend.output("worker"),
    )
    backend.stop(worker)

    assert backend.triggers("k-1").count("paid.signal") == 1
    steps = backend.steps("k-1")
    assert (steps["paid"][0], steps["paid"][2]) == ("succeeded", {"amount": 7})
    assert (steps["ship"][0], steps["ship"][2]) == ("succeeded", {"charged": 7})
    calls = [call for call in backend.calls() if call["kind"] == "ship"]
    # Killed in the step, it is run again, with the same key and the same payload.
    assert len(calls) == (2 if when == "in-step" else 1)
    assert [call["paid"] for call in calls] == [{"amount": 7}] * len(calls)
    assert len({call["pid"] for call in calls}) == len(calls)
    assert count(backend, "reserve") == Counter({"k-1": 1})
    assert_same_keys(backend)


def test_timeouts_fire_after_restarts_within_a_poll(backend: Backend) -> None:
    """Parked, every process killed, the timeouts pass: a new worker fires them at its first
    look; a signal sent after a timeout passed but before any worker fired it wins."""
    timed = {"t-fail-0": "PaidOrFail", "t-fail-1": "PaidOrFail"}
    timed |= {"t-go-0": "PaidOrGoOn", "t-go-1": "PaidOrGoOn"}
    runs = {**timed, "t-late": "PaidOrFail"}
    starter = backend.start(*(f"{saga}:{run}" for run, saga in runs.items()))
    kill(starter)  # within the second the timeouts take: the starter fires none of them
    parked = backend.runs()
    assert {run: row[0] for run, row in parked.items()} == dict.fromkeys(runs, "waiting"), (
        "the starting process fired the timeouts before it was killed: it is too slow"
    )
    wake = max(row[3] or 0.0 for row in parked.values())
    assert wake > 0.0
    for run in runs:
        assert_no_live_lease(backend, run)
    time.sleep(max(0.0, wake - time.time()) + 0.3)  # the timeouts pass while nothing runs
    assert set(backend.statuses().values()) == {"waiting"}
    code, out = backend.signal("t-late", {"amount": 5}, "pay-late")  # first committed wins
    assert code == 0, out
    assert "accepted" in out, out

    poll = 3.0
    started = time.time()
    worker = backend.worker(poll=poll)
    until(
        lambda: not set(backend.statuses().values()) - TERMINAL,
        what="every run ended",
        why=lambda: backend.output("worker"),
    )
    backend.stop(worker)

    statuses = backend.statuses()
    for run, saga in timed.items():
        assert statuses[run] == ("compensated" if saga == "PaidOrFail" else "completed")
        assert backend.triggers(run).count("paid.time_out") == 1
        assert backend.history_at(run, "paid.time_out") - started < poll
        phase, _, result = backend.steps(run)["paid"]
        assert (phase, result) == (("failed", None) if saga == "PaidOrFail" else ("succeeded", {}))
    assert statuses["t-late"] == "completed"
    assert "paid.time_out" not in backend.triggers("t-late")
    assert backend.steps("t-late")["paid"][2] == {"amount": 5}
    assert count(backend, "release") == Counter({"t-fail-0": 1, "t-fail-1": 1})
    assert count(backend, "ship") == Counter({"t-go-0": 1, "t-go-1": 1, "t-late": 1})
    paid = {call["run"]: call["paid"] for call in backend.calls() if call["kind"] == "ship"}
    assert paid == {"t-go-0": {}, "t-go-1": {}, "t-late": {"amount": 5}}
    assert count(backend, "reserve") == Counter(dict.fromkeys(runs, 1))
    assert_same_keys(backend)
