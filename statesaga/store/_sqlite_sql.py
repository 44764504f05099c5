"""SQLite statements, and the operations that run them on the writer's or reader's connection."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from ._rows import list_runs_queries, run_from_row, steps_from_rows
from .base import (
    TERMINAL,
    LeaseHeld,
    RunNotFound,
    RunSnapshot,
    StoreError,
    TransitionRecord,
    WriteConflict,
)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS statesaga_meta"
    " (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID",
    # A rowid table: run rows carry the input JSON, too large for a WITHOUT ROWID b-tree.
    "CREATE TABLE IF NOT EXISTS statesaga_runs ("
    " run_id TEXT PRIMARY KEY NOT NULL, saga TEXT NOT NULL, saga_path TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL, input TEXT NOT NULL, status TEXT NOT NULL,"
    " config TEXT NOT NULL, version INTEGER NOT NULL, lease_owner TEXT, lease_expires REAL,"
    " created_at REAL NOT NULL, updated_at REAL NOT NULL, failed_step TEXT, error TEXT)",
    "CREATE INDEX IF NOT EXISTS statesaga_runs_by_status ON statesaga_runs (status, created_at)",
    "CREATE INDEX IF NOT EXISTS statesaga_runs_by_saga ON statesaga_runs (saga, created_at)",
    "CREATE TABLE IF NOT EXISTS statesaga_steps ("
    " run_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL, attempt INTEGER NOT NULL,"
    " result TEXT, error TEXT, PRIMARY KEY (run_id, step)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS statesaga_history ("
    ' run_id TEXT NOT NULL, seq INTEGER NOT NULL, "trigger" TEXT NOT NULL,'
    " source TEXT NOT NULL, dest TEXT NOT NULL, at REAL NOT NULL, attempt INTEGER NOT NULL,"
    " error TEXT, PRIMARY KEY (run_id, seq)) WITHOUT ROWID",
)
OBJECTS = frozenset(
    {
        "statesaga_meta",
        "statesaga_runs",
        "statesaga_runs_by_status",
        "statesaga_runs_by_saga",
        "statesaga_steps",
        "statesaga_history",
    }
)

_RUN_COLUMNS = (
    "run_id, saga, saga_path, fingerprint, input, status, config, version, lease_owner,"
    " lease_expires, created_at, updated_at, failed_step, error"
)
INSERT_RUN = _INSERT_RUN = (
    f"INSERT INTO statesaga_runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 14)})"
)
_SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM statesaga_runs WHERE run_id = ?"
_SELECT_LEASE = "SELECT version, lease_owner, lease_expires FROM statesaga_runs WHERE run_id = ?"
COMMIT_RUN = (
    "UPDATE statesaga_runs SET status = ?, config = ?, version = version + 1, updated_at = ?,"
    " failed_step = ?, error = ? WHERE run_id = ? AND version = ? AND lease_owner = ?"
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
_UNFINISHED = (
    f"SELECT run_id FROM statesaga_runs WHERE status NOT IN ({_TERMINAL_SQL})"
    " AND (lease_owner IS NULL OR COALESCE(lease_expires, 0) < ?)"
    " ORDER BY created_at, run_id LIMIT ?"
)
LIST_RUNS = list_runs_queries(f"SELECT {_RUN_COLUMNS} FROM statesaga_runs", "?")


def create(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    try:
        conn.execute(INSERT_RUN, row)
    except sqlite3.IntegrityError:
        if conn.execute(_SELECT_LEASE, (row[0],)).fetchone() is None:
            raise
        raise StoreError(f"run {row[0]} already exists", run_id=row[0]) from None


def commit(
    conn: sqlite3.Connection,
    arg: tuple[
        tuple[Any, ...] | None, tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]
    ],
) -> None:
    create_row, update, steps, history = arg
    if create_row is not None:
        create(conn, create_row)
    if conn.execute(COMMIT_RUN, update).rowcount == 0:
        run_id, version, owner = update[5:]
        row = conn.execute(_SELECT_LEASE, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        raise WriteConflict(
            run_id,
            f"expected version {version} leased to {owner}, found version {row[0]} leased to "
            f"{row[1]}",
        )
    if steps:
        conn.executemany(UPSERT_STEP, steps)
    if history:
        conn.executemany(INSERT_TRANSITION, history)


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
    return [row[0] for row in conn.execute(_UNFINISHED, (now, max(limit, 0)))]


def _snapshot(conn: sqlite3.Connection, run_id: str) -> RunSnapshot:
    row = conn.execute(_SELECT_RUN, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    run = run_from_row(row)
    steps = steps_from_rows(run_id, conn.execute(_SELECT_STEPS, (run_id,)))
    history = tuple(
        TransitionRecord(*row) for row in conn.execute(_SELECT_HISTORY, (run_id,)).fetchall()
    )
    return RunSnapshot(run=run, steps=steps, history=history)


def inspect(conn: sqlite3.Connection) -> tuple[int | None, set[str]]:
    """The stored schema version (``None`` if absent) and which of our tables/indexes exist."""
    present = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'statesaga\\_%' ESCAPE '\\'"
        )
    }
    if "statesaga_meta" not in present:
        return None, present
    row = conn.execute("SELECT value FROM statesaga_meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return None, present
    try:
        return int(row[0]), present
    except (TypeError, ValueError):
        raise StoreError(
            f"statesaga_meta.schema_version is {row[0]!r}, not a number: this is not a statesaga "
            "database, or it is damaged"
        ) from None


def check_path(path: str) -> None:
    """Raise ``StoreError`` saying why ``path`` cannot hold a database, before SQLite tries."""
    if path in ("", ":memory:"):
        raise StoreError(
            f"SQLite store {path!r} needs a file path (use memory:// for a store in memory)"
        )
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    reason = None
    if os.path.isdir(target):
        reason = f"{target} is a directory"
    elif not os.path.isdir(directory):
        existing = directory
        while not os.path.exists(existing):  # the nearest ancestor that exists is what to fix
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            reason = f"{existing} is a file, not a directory"
        else:
            reason = f"directory {directory} does not exist (create it first)"
    elif not os.access(directory, os.W_OK | os.X_OK):
        # SQLite creates the -wal and -shm files next to the database.
        reason = f"directory {directory} is not writable"
    elif os.path.exists(target) and not os.access(target, os.R_OK | os.W_OK):
        reason = f"{target} is not readable and writable"
    if reason:
        raise StoreError(f"cannot use SQLite store {path!r}: {reason}")
