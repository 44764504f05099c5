"""SQLite statements and operations on runs: their rows, steps, history and leases."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ..errors import RunExists
from ..vocabulary import CANCEL_EVENT, TERMINAL
from . import _signals
from ._codec import dumps, dumps_config
from ._rows import (
    decoded_runs,
    list_runs_queries,
    message_rows,
    run_from_row,
    run_row,
    signal_from_row,
    steps_from_rows,
)
from ._sqlite_outbox import Claim, insert_messages
from ._sqlite_schema import RUNNABLE, WAITING
from .base import (
    Commit,
    LeaseHeld,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    SignalArrived,
    SignalRecord,
    TransitionRecord,
    WriteConflict,
)

_RUN_COLUMNS = (
    "run_id, saga, saga_path, fingerprint, input, status, config, version, lease_owner,"
    " lease_expires, created_at, updated_at, failed_step, error, wake_at"
)
INSERT_RUN = f"INSERT INTO statesaga_runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM statesaga_runs WHERE run_id = ?"
_SELECT_LEASE = "SELECT version, lease_owner, lease_expires FROM statesaga_runs WHERE run_id = ?"
_SELECT_WAKE = "SELECT status, wake_at FROM statesaga_runs WHERE run_id = ?"
COMMIT_RUN = (
    "UPDATE statesaga_runs SET status = ?, config = ?, version = version + 1, updated_at = ?,"
    " failed_step = ?, error = ?, wake_at = ?,"
    " lease_owner = CASE WHEN ? THEN NULL ELSE lease_owner END,"
    " lease_expires = CASE WHEN ? THEN NULL ELSE lease_expires END"
    " WHERE run_id = ? AND version = ? AND lease_owner = ?"
)
UPSERT_STEP = (
    "INSERT OR REPLACE INTO statesaga_steps (run_id, step, phase, attempt, result, error)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_TRANSITION = (
    'INSERT INTO statesaga_history (run_id, seq, "trigger", source, dest, at, attempt, error)'
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_STEPS = (
    "SELECT step, phase, attempt, result, error FROM statesaga_steps WHERE run_id = ? ORDER BY step"
)
_SELECT_HISTORY = (
    'SELECT seq, "trigger", source, dest, at, attempt, error FROM statesaga_history'
    " WHERE run_id = ? ORDER BY seq"
)
# A lease is free when nobody holds it, the owner asks again, or it ended before ``now``.
_ACQUIRE = (
    "UPDATE statesaga_runs SET lease_owner = ?, lease_expires = ?, version = version + 1"
    " WHERE run_id = ? AND (lease_owner IS NULL OR lease_owner = ?"
    " OR COALESCE(lease_expires, 0) < ?)"
)
_RENEW = "UPDATE statesaga_runs SET lease_expires = ? WHERE run_id = ? AND lease_owner = ?"
_RELEASE = (
    "UPDATE statesaga_runs SET lease_owner = NULL, lease_expires = NULL"
    " WHERE run_id = ? AND lease_owner = ?"
)
_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL))
# Runs a dead driver left (their lease ran out), soonest run out first, then runnable runs
# nobody holds and waiting runs that are due, oldest first: a slot that frees goes to a run in
# flight before one not started. Finished runs and runs asleep in a wait are in neither
# partial index, so they cost the poll nothing; the runs a dead driver left are found by
# reading the runnable ones (an index on the lease would be written by every commit, since
# each sets the status its condition needs). The indexes are named: the planner, without
# statistics, would take statesaga_runs_by_status for the waiting runs and read every one.
_FREE = "(lease_owner IS NULL OR COALESCE(lease_expires, 0) < :now)"
_UNFINISHED = (
    "SELECT run_id FROM (SELECT * FROM (SELECT run_id, 0 AS later, lease_expires AS k"
    f" FROM statesaga_runs INDEXED BY statesaga_runs_runnable WHERE {RUNNABLE}"
    " AND lease_owner IS NOT NULL AND COALESCE(lease_expires, 0) < :now"
    " ORDER BY lease_expires, run_id"
    " LIMIT :limit)"
    " UNION ALL SELECT * FROM (SELECT run_id, 1, created_at FROM statesaga_runs"
    f" INDEXED BY statesaga_runs_runnable WHERE {RUNNABLE} AND lease_owner IS NULL"
    " ORDER BY created_at, run_id LIMIT :limit)"
    " UNION ALL SELECT * FROM (SELECT run_id, 1, created_at FROM statesaga_runs"
    f" INDEXED BY statesaga_runs_waking WHERE {WAITING} AND wake_at <= :now AND {_FREE}"
    " ORDER BY created_at, run_id LIMIT :limit)) ORDER BY later, k, run_id LIMIT :limit"
)
_WAITING = (
    f"SELECT {_RUN_COLUMNS} FROM statesaga_runs INDEXED BY statesaga_runs_waking"
    f" WHERE {WAITING} ORDER BY wake_at IS NULL, wake_at, created_at, run_id LIMIT ?"
)
# Only the waiting runs are read (the index is partial), however many runs there are.
_COUNT_WAITING = (
    "SELECT saga, COUNT(*) FROM statesaga_runs INDEXED BY statesaga_runs_waking"
    f" WHERE {WAITING} GROUP BY saga"
)
_SIGNALS = "SELECT signal_id, event, payload, at FROM statesaga_signals WHERE run_id = ?"
_SIGNALS_ARRIVED = "SELECT event FROM statesaga_signals WHERE run_id = ? AND event IN ({})"
_SAME_SIGNAL = (
    "SELECT signal_id, event, payload, at FROM statesaga_signals"
    f" WHERE run_id = ? AND (signal_id = ? OR event = ? OR event = '{CANCEL_EVENT}')"
)
_INSERT_SIGNAL = (
    "INSERT INTO statesaga_signals (run_id, signal_id, event, payload, at) VALUES (?, ?, ?, ?, ?)"
)
_PHASE = "SELECT phase FROM statesaga_steps WHERE run_id = ? AND step = ?"
_WAKE = "UPDATE statesaga_runs SET wake_at = ? WHERE run_id = ?"
_LEASED = (
    f"SELECT {_RUN_COLUMNS} FROM statesaga_runs WHERE status NOT IN ({_TERMINAL_SQL})"
    " AND lease_owner IS NOT NULL AND lease_expires >= ? ORDER BY lease_expires, run_id LIMIT ?"
)
LIST_RUNS = list_runs_queries(f"SELECT {_RUN_COLUMNS} FROM statesaga_runs", "?")


#: What ``commit`` writes: the run row to insert (a new run), the run's update, its steps'
#: rows, its history rows, its messages' rows and how they are claimed; and the events whose
#: signals stop it (``Commit.unless_signals``).
CommitRows = tuple[
    tuple[Any, ...] | None,
    tuple[Any, ...],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    Claim,
    tuple[str, ...],
]


def commit_rows(commit: Commit) -> CommitRows:
    """The rows of ``commit``, serialised on the caller's side: a bad value fails before the
    write is queued."""
    run_id = commit.run_id
    steps = [
        (
            run_id,
            s.step,
            s.phase,
            s.attempt,
            None if s.result is None else dumps(s.result, run_id=run_id),
            s.error,
        )
        for s in commit.steps
    ]
    history = [(run_id, *t) for t in commit.transitions]  # seq, trigger, ..., error
    update = (
        commit.status,
        dumps_config(commit.config),
        commit.updated_at,
        commit.failed_step,
        commit.error,
        commit.wake_at,
        commit.release,
        commit.release,
        run_id,
        commit.version,
        commit.lease_owner,
    )
    create = None if commit.create is None else run_row(commit.create)
    messages: list[tuple[Any, ...]] = []
    claim: Claim = None
    if commit.messages:
        messages = message_rows(commit.messages, run_id)
        if commit.claim_until is not None:
            claim = (commit.lease_owner, commit.claim_until, time.time())
    return create, update, steps, history, messages, claim, tuple(commit.unless_signals)


def create(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    try:
        conn.execute(INSERT_RUN, row)
    except sqlite3.IntegrityError:
        if conn.execute(_SELECT_LEASE, (row[0],)).fetchone() is None:
            raise
        raise RunExists(row[0]) from None


def commit(conn: sqlite3.Connection, arg: CommitRows) -> list[str] | None:
    create_row, update, steps, history, messages, claim, unless = arg
    if create_row is not None:
        create(conn, create_row)
    if conn.execute(COMMIT_RUN, update).rowcount == 0:
        run_id, version, owner = update[8:]
        row = conn.execute(_SELECT_LEASE, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        raise WriteConflict(
            run_id,
            f"expected version {version} leased to {owner}, found version {row[0]} leased to "
            f"{row[1]}",
        )
    if unless:  # after the version check, in the same transaction: undone with the commit
        query = _SIGNALS_ARRIVED.format(", ".join("?" * len(unless)))
        arrived = {row[0] for row in conn.execute(query, (update[8], *unless))}
        if arrived:
            raise SignalArrived(update[8], [e for e in unless if e in arrived])
    if steps:
        conn.executemany(UPSERT_STEP, steps)
    if history:
        conn.executemany(INSERT_TRANSITION, history)
    return insert_messages(conn, messages, claim) if messages else None


def acquire(conn: sqlite3.Connection, arg: tuple[str, str, float, float]) -> RunSnapshot:
    run_id, owner, expires, now = arg
    if conn.execute(_ACQUIRE, (owner, expires, run_id, owner, now)).rowcount == 0:
        row = conn.execute(_SELECT_LEASE, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        raise LeaseHeld(run_id, row[1] or "", row[2] or 0)
    return _snapshot(conn, run_id)  # inside the write: it sees exactly what was leased


def renew(conn: sqlite3.Connection, arg: tuple[tuple[str, ...], str, float]) -> set[str]:
    run_ids, owner, expires = arg
    return {run_id for run_id in run_ids if conn.execute(_RENEW, (expires, run_id, owner)).rowcount}


def release(conn: sqlite3.Connection, arg: tuple[str, str]) -> None:
    conn.execute(_RELEASE, arg)


def pragmas(conn: sqlite3.Connection, _: None) -> dict[str, Any]:
    synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    return {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(synchronous),
        "busy_timeout": conn.execute("PRAGMA busy_timeout").fetchone()[0],
    }


def load(conn: sqlite3.Connection, run_id: str) -> RunSnapshot:
    conn.execute("BEGIN")  # the run, its steps and its history from one snapshot
    return _snapshot(conn, run_id)


def unfinished(conn: sqlite3.Connection, arg: tuple[float, int]) -> list[str]:
    now, limit = arg
    return [row[0] for row in conn.execute(_UNFINISHED, {"now": now, "limit": max(limit, 0)})]


def waiting(conn: sqlite3.Connection, limit: int) -> list[RunRecord]:
    return decoded_runs(conn.execute(_WAITING, (max(limit, 0),)), "SQLite")


def count_waiting(conn: sqlite3.Connection, _: None) -> dict[str, int]:
    return {saga: int(n) for saga, n in conn.execute(_COUNT_WAITING)}


def add_signal(conn: sqlite3.Connection, arg: tuple[SignalRecord, str]) -> bool:
    """Store a signal (``as_stored``, its payload's JSON given) by the rules of ``_signals``."""
    signal, payload = arg
    run_id = signal.run_id
    row = conn.execute(_SELECT_WAKE, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    status, wake_at = row
    same_id, same_event, cancelled = _signals.found(
        signal,
        (
            signal_from_row(run_id, row)
            for row in conn.execute(_SAME_SIGNAL, (run_id, signal.signal_id, signal.event))
        ),
    )
    phase = conn.execute(_PHASE, (run_id, signal.event)).fetchone()
    if not _signals.check(
        signal,
        status=status,
        same_id=same_id,
        same_event=same_event,
        phase=None if phase is None else phase[0],
        cancelled=cancelled,
    ):
        return False
    conn.execute(_INSERT_SIGNAL, (run_id, signal.signal_id, signal.event, payload, signal.at))
    if status == _signals.WAITING:
        conn.execute(_WAKE, (_signals.wake_at(wake_at, signal, time.time()), run_id))
    return True


def leased(conn: sqlite3.Connection, arg: tuple[float, int]) -> list[RunRecord]:
    now, limit = arg
    return decoded_runs(conn.execute(_LEASED, (now, max(limit, 0))), "SQLite")


def _snapshot(conn: sqlite3.Connection, run_id: str) -> RunSnapshot:
    row = conn.execute(_SELECT_RUN, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    run = run_from_row(row)
    steps = steps_from_rows(run_id, conn.execute(_SELECT_STEPS, (run_id,)))
    history = tuple(
        TransitionRecord(*row) for row in conn.execute(_SELECT_HISTORY, (run_id,)).fetchall()
    )
    signals = (signal_from_row(run_id, row) for row in conn.execute(_SIGNALS, (run_id,)))
    return RunSnapshot(run=run, steps=steps, history=history, signals={s.event: s for s in signals})
