"""SQLite statements, and the operations that run them on the writer's or reader's connection."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from ..vocabulary import TERMINAL
from ._rows import (
    OUTBOX_COLUMNS,
    decoded_runs,
    list_runs_queries,
    outbox_from_row,
    run_from_row,
    steps_from_rows,
)
from .base import (
    LeaseHeld,
    OutboxRecord,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    StoreError,
    StoreNotFound,
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
    # seq is the rowid: a new row always gets a larger one than every row present, which is
    # all the per-key order needs.
    "CREATE TABLE IF NOT EXISTS statesaga_outbox ("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL,"
    " step TEXT NOT NULL, topic TEXT NOT NULL, key TEXT, payload TEXT NOT NULL,"
    " headers TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL,"
    " attempts INTEGER NOT NULL, retry_at REAL NOT NULL, claim_owner TEXT, claim_until REAL,"
    " sent_at REAL, last_error TEXT)",
    "CREATE INDEX IF NOT EXISTS statesaga_outbox_by_status ON statesaga_outbox (status, seq)",
    # What the per-key order checks look at: stays small however many sent messages pile up.
    "CREATE INDEX IF NOT EXISTS statesaga_outbox_unsent_keys ON statesaga_outbox (key, seq)"
    " WHERE status <> 'sent'",
)
OBJECTS = frozenset(
    {
        "statesaga_outbox",
        "statesaga_outbox_by_status",
        "statesaga_outbox_unsent_keys",
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
_LEASED = (
    f"SELECT {_RUN_COLUMNS} FROM statesaga_runs WHERE status NOT IN ({_TERMINAL_SQL})"
    " AND lease_owner IS NOT NULL AND lease_expires >= ? ORDER BY lease_expires, run_id LIMIT ?"
)
LIST_RUNS = list_runs_queries(f"SELECT {_RUN_COLUMNS} FROM statesaga_runs", "?")

# A new message is due at once (retry_at 0): not at its created_at, which comes from the
# emitting worker's clock and would hold its key back if that clock ran ahead of the relay's.
INSERT_MESSAGE = (
    "INSERT OR IGNORE INTO statesaga_outbox (id, run_id, step, topic, key, payload, headers,"
    " created_at, status, attempts, retry_at, claim_owner, claim_until)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
)
# Another unsent message of the key that the claiming owner is not sending right now.
_KEY_BLOCKED = (
    "SELECT 1 FROM statesaga_outbox WHERE key = ? AND status <> 'sent'"
    " AND (COALESCE(claim_owner, '') <> ? OR COALESCE(claim_until, 0) < ?) LIMIT 1"
)
# Due, unclaimed pending messages whose key has no message being sent and no earlier message
# that cannot go now: taking the first ``limit`` of them in seq order never skips one of a key.
# The keys being sent are found once, not once per candidate: with a backlog of one key (a
# long broker outage) a per-candidate scan of the key would make every claim quadratic.
_CLAIMABLE = (
    "WITH busy AS (SELECT DISTINCT key FROM statesaga_outbox WHERE status <> 'sent'"
    " AND key IS NOT NULL AND claim_until >= :now)"
    " SELECT seq FROM statesaga_outbox r WHERE r.status = 'pending' AND r.retry_at <= :now"
    " AND COALESCE(r.claim_until, 0) < :now AND (r.key IS NULL OR (r.key NOT IN busy"
    " AND NOT EXISTS (SELECT 1 FROM statesaga_outbox o WHERE o.key = r.key"
    " AND o.status <> 'sent' AND o.seq < r.seq AND (o.status = 'dead' OR o.retry_at > :now))))"
    " ORDER BY r.seq LIMIT :limit"
)
_CLAIM = "UPDATE statesaga_outbox SET claim_owner = ?, claim_until = ? WHERE seq = ?"
_SELECT_MESSAGE = f"SELECT {OUTBOX_COLUMNS} FROM statesaga_outbox WHERE seq = ?"
_UNCLAIM = "UPDATE statesaga_outbox SET claim_owner = NULL, claim_until = NULL WHERE seq = ?"
_BURY = (
    "UPDATE statesaga_outbox SET status = 'dead', claim_owner = NULL, claim_until = NULL,"
    " last_error = ? WHERE seq = ?"
)
_MARK_SENT = (
    "UPDATE statesaga_outbox SET status = 'sent', sent_at = ?, claim_owner = NULL,"
    " claim_until = NULL WHERE id = ? AND status = 'pending'"
)
_MARK_FAILED = (
    "UPDATE statesaga_outbox SET status = ?, attempts = attempts + 1, retry_at = ?,"
    " last_error = ?, claim_owner = NULL, claim_until = NULL"
    " WHERE id = ? AND claim_owner = ? AND status = 'pending'"
)
_RELEASE_MESSAGE = (
    "UPDATE statesaga_outbox SET claim_owner = NULL, claim_until = NULL,"
    " last_error = COALESCE(?, last_error) WHERE id = ? AND claim_owner = ? AND status = 'pending'"
)
_RETRY_DEAD = (
    "UPDATE statesaga_outbox SET status = 'pending', attempts = 0, retry_at = ?"
    " WHERE status = 'dead'"
)
_RETRY_ONE = (
    "UPDATE statesaga_outbox SET status = 'pending', attempts = 0, retry_at = ?"
    " WHERE id = ? AND status <> 'sent'"
)
_PURGE = "DELETE FROM statesaga_outbox WHERE status = ? AND created_at < ?"
LIST_OUTBOX = {
    False: f"SELECT {OUTBOX_COLUMNS} FROM statesaga_outbox ORDER BY seq DESC LIMIT ?",
    True: f"SELECT {OUTBOX_COLUMNS} FROM statesaga_outbox WHERE status = ?"
    " ORDER BY seq DESC LIMIT ?",
}

#: How ``commit`` claims its messages: (owner, until, now), or None to leave them unclaimed.
Claim = tuple[str, float, float] | None


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
        tuple[Any, ...] | None,
        tuple[Any, ...],
        list[tuple[Any, ...]],
        list[tuple[Any, ...]],
        list[tuple[Any, ...]],
        Claim,
    ],
) -> list[str] | None:
    create_row, update, steps, history, messages, claim = arg
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
    return insert_messages(conn, messages, claim) if messages else None


def insert_messages(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], claim: Claim
) -> list[str]:
    """Insert outbox rows, claiming what ``claim`` may take; the ids claimed."""
    if claim is None:
        conn.executemany(INSERT_MESSAGE, [(*row, 0.0, None, None) for row in rows])
        return []
    owner, until, now = claim
    # Each key is looked at once, before the inserts: the rows this commit claims are claimed
    # by ``owner`` and live, so they never block one another, and rows it leaves unclaimed
    # are behind a blocking one anyway. Once per message would be quadratic in a big commit.
    blocked = {
        key: conn.execute(_KEY_BLOCKED, (key, owner, now)).fetchone() is not None
        for key in {row[4] for row in rows if row[4] is not None}
    }
    claimed = []
    for row in rows:
        key = row[4]
        take = key is None or not blocked[key]
        values = (*row, 0.0, owner, until) if take else (*row, 0.0, None, None)
        if conn.execute(INSERT_MESSAGE, values).rowcount and take:
            claimed.append(row[0])
    return claimed


def outbox_claim(
    conn: sqlite3.Connection, arg: tuple[str, float, float, int]
) -> list[OutboxRecord]:
    owner, now, until, limit = arg
    seqs = [row[0] for row in conn.execute(_CLAIMABLE, {"now": now, "limit": max(limit, 0)})]
    conn.executemany(_CLAIM, [(owner, until, seq) for seq in seqs])
    records = []
    stopped: set[str] = set()  # keys whose head cannot be read: the rest wait behind it
    for seq in seqs:
        row = conn.execute(_SELECT_MESSAGE, (seq,)).fetchone()
        key = row[5]
        if key is not None and key in stopped:
            conn.execute(_UNCLAIM, (seq,))
            continue
        try:
            records.append(outbox_from_row(row))
        except StoreError as error:
            # A row damaged outside statesaga: dead, or it would fail every relay round and
            # stop every key. Its key's later messages wait behind it, as behind any dead one.
            conn.execute(_BURY, (f"cannot be read: {error}", seq))
            if key is not None:
                stopped.add(key)
    return records


def outbox_mark_sent(conn: sqlite3.Connection, arg: tuple[tuple[str, ...], float]) -> None:
    ids, now = arg
    conn.executemany(_MARK_SENT, [(now, message_id) for message_id in ids])


def outbox_mark_failed(conn: sqlite3.Connection, arg: tuple[str, str, str, float, bool]) -> None:
    message_id, owner, error, retry_at, dead = arg
    status = "dead" if dead else "pending"
    conn.execute(_MARK_FAILED, (status, retry_at, error, message_id, owner))


def outbox_release(conn: sqlite3.Connection, arg: tuple[tuple[str, ...], str, str | None]) -> None:
    ids, owner, error = arg
    conn.executemany(_RELEASE_MESSAGE, [(error, message_id, owner) for message_id in ids])


def outbox_retry(conn: sqlite3.Connection, arg: tuple[tuple[str, ...] | None, float]) -> int:
    ids, now = arg
    if ids is None:
        return int(conn.execute(_RETRY_DEAD, (now,)).rowcount)
    return sum(conn.execute(_RETRY_ONE, (now, message_id)).rowcount for message_id in ids)


def outbox_purge(conn: sqlite3.Connection, arg: tuple[str, float]) -> int:
    return int(conn.execute(_PURGE, arg).rowcount)


def outbox_list(conn: sqlite3.Connection, arg: tuple[str | None, int]) -> list[OutboxRecord]:
    status, limit = arg
    params = (limit,) if status is None else (status, limit)
    return [outbox_from_row(row) for row in conn.execute(LIST_OUTBOX[status is not None], params)]


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


def require_store(path: str, url: str) -> None:
    """Raise ``StoreNotFound`` unless the file at ``path`` holds a statesaga store.

    Writes nothing: neither the file nor the -wal and -shm files beside it are created or
    changed. A store of another schema version passes (opening it says what is wrong).

    Raises:
        StoreNotFound: The file is missing, empty, not SQLite, or has no statesaga tables.
        StoreError: ``path`` cannot hold a database, or the file cannot be read.
    """
    if path not in ("", ":memory:") and not os.path.exists(path):
        raise StoreNotFound(url, "no such file")
    check_path(path)
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as error:
        raise StoreError(f"cannot read SQLite store {path!r}: {error}") from None
    if not header:
        raise StoreNotFound(url, "the file is empty")
    if not header.startswith(b"SQLite format 3\x00"):
        raise StoreNotFound(url, "the file is not a SQLite database", foreign=True)
    # Read-only. A WAL-mode database (header bytes 18-19) would still get -wal and -shm files
    # beside it, unless it is read as immutable: safe when it has no -wal file, as then all
    # of its content is in the main file.
    immutable = header[18:20] == b"\x02\x02" and not os.path.exists(path + "-wal")
    uri = Path(os.path.abspath(path)).as_uri() + (
        "?mode=ro&immutable=1" if immutable else "?mode=ro"
    )
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            version, present = inspect(conn)
            empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise StoreError(f"cannot open SQLite store {path!r}: {error}") from None
    if version is None:
        if empty:
            raise StoreNotFound(url, "the file is an empty SQLite database")
        what = "statesaga tables but no schema version" if present else "no statesaga tables"
        raise StoreNotFound(url, f"the file is a SQLite database with {what}", foreign=True)
