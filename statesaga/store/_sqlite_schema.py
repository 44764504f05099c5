"""The SQLite store's schema: its tables, creating them, and checking a file before use."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..vocabulary import TERMINAL, WAITING_STATUS
from .base import SCHEMA_VERSION, StoreError, StoreNotFound

# Partial indexes are used only for queries that repeat their condition word for word, so the
# queries take these texts too.
#: Unfinished runs that are not waiting: what workers poll.
RUNNABLE = "status NOT IN ({})".format(
    ", ".join(f"'{status}'" for status in (*sorted(TERMINAL), WAITING_STATUS))
)
#: Runs parked in a wait.
WAITING = f"status = '{WAITING_STATUS}'"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS statesaga_meta"
    " (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID",
    # A rowid table: run rows carry the input JSON, too large for a WITHOUT ROWID b-tree.
    "CREATE TABLE IF NOT EXISTS statesaga_runs ("
    " run_id TEXT PRIMARY KEY NOT NULL, saga TEXT NOT NULL, saga_path TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL, input TEXT NOT NULL, status TEXT NOT NULL,"
    " config TEXT NOT NULL, version INTEGER NOT NULL, lease_owner TEXT, lease_expires REAL,"
    " created_at REAL NOT NULL, updated_at REAL NOT NULL, failed_step TEXT, error TEXT,"
    " wake_at REAL)",
    "CREATE INDEX IF NOT EXISTS statesaga_runs_by_status ON statesaga_runs (status, created_at)",
    "CREATE INDEX IF NOT EXISTS statesaga_runs_by_saga ON statesaga_runs (saga, created_at)",
    # Pages of runs, newest first, however deep (``browse``'s keyset pages).
    "CREATE INDEX IF NOT EXISTS statesaga_runs_by_created ON statesaga_runs (created_at, run_id)",
    # What workers poll, without the runs that sleep in a wait (however many) ...
    "CREATE INDEX IF NOT EXISTS statesaga_runs_runnable ON statesaga_runs (created_at, run_id)"
    f" WHERE {RUNNABLE}",
    # ... which are found by when they wake.
    "CREATE INDEX IF NOT EXISTS statesaga_runs_waking ON statesaga_runs (wake_at, run_id)"
    f" WHERE {WAITING}",
    "CREATE TABLE IF NOT EXISTS statesaga_signals ("
    " run_id TEXT NOT NULL, signal_id TEXT NOT NULL, event TEXT NOT NULL,"
    " payload TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (run_id, signal_id),"
    " UNIQUE (run_id, event)) WITHOUT ROWID",
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
    "CREATE INDEX IF NOT EXISTS statesaga_outbox_by_run ON statesaga_outbox (run_id, seq)",
    # What the per-key order checks look at: stays small however many sent messages pile up.
    "CREATE INDEX IF NOT EXISTS statesaga_outbox_unsent_keys ON statesaga_outbox (key, seq)"
    " WHERE status <> 'sent'",
)
#: What brings a store of each older version to the next; ``SCHEMA`` then adds what is new.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE statesaga_runs ADD COLUMN wake_at REAL",),
}
OBJECTS = frozenset(
    {
        "statesaga_outbox",
        "statesaga_outbox_by_status",
        "statesaga_outbox_by_run",
        "statesaga_outbox_unsent_keys",
        "statesaga_meta",
        "statesaga_runs",
        "statesaga_runs_by_status",
        "statesaga_runs_by_saga",
        "statesaga_runs_by_created",
        "statesaga_runs_runnable",
        "statesaga_runs_waking",
        "statesaga_signals",
        "statesaga_steps",
        "statesaga_history",
    }
)


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


def prepare(conn: sqlite3.Connection, path: str, url: str, synchronous: str, create: bool) -> None:
    """Check the schema version, switch to WAL and ``synchronous``, create missing tables, and
    migrate a store of an older version in place (also with ``create`` false: a store that
    exists opens for reads and writes alike, and every query names the current tables).

    Raises:
        StoreNotFound: ``create`` is false and the tables went away since the file was found.
        StoreError: The file holds a schema version this statesaga cannot use, or cannot use
            WAL journal mode.
    """
    # Check the version before anything that writes (even the switch to WAL changes the
    # file header), so a database we refuse is left byte for byte as it was.
    version, present = inspect(conn)
    if version is None and not create:  # its tables went away since it was found
        raise StoreNotFound(url, "the file is a SQLite database with no statesaga tables")
    check_version(path, version)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"SQLite store {path!r} cannot use WAL journal mode ({mode})")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    if version == SCHEMA_VERSION and present >= OBJECTS:
        return
    conn.execute("BEGIN IMMEDIATE")  # DDL is transactional: a migration applies whole or not
    try:
        version, _ = inspect(conn)  # another process may have created or migrated it meanwhile
        check_version(path, version)
        while version is not None and version < SCHEMA_VERSION:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO statesaga_meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def check_version(path: str, version: int | None) -> None:
    """Raise ``StoreError`` unless ``version`` (``None``: no schema yet) is this statesaga's."""
    if version is None or version == SCHEMA_VERSION or version in MIGRATIONS:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"SQLite store {path!r} holds schema version {version}, newer than this "
            f"statesaga understands ({SCHEMA_VERSION}); upgrade statesaga to use it (the "
            "file was left unchanged)"
        )
    raise StoreError(
        f"SQLite store {path!r} holds schema version {version} and this statesaga "
        f"(schema {SCHEMA_VERSION}) has no migration for it"
    )
