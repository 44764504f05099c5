"""The SQLite store: the embedded default, one file on disk.

Writes go to one writer thread that owns its own connection. It takes every write queued while
it was busy and applies them in one transaction (group commit), each inside its own SAVEPOINT so
that a write that fails (a stale ``commit``, a duplicate ``create``) is rolled back alone while
the others commit. A batch costs one COMMIT, hence one sync, however many writes it carries.
Reads use a second connection: in WAL mode they neither wait for the writer nor block it.

``synchronous`` trades durability for speed:

- ``FULL`` (default): the WAL is synced on every commit; an acknowledged commit survives a
  power cut.
- ``NORMAL``: the WAL is synced only at checkpoints; a power cut may lose the last commits but
  never corrupts the database, and a crash of the process alone loses nothing.
- ``OFF``: syncing is left to the operating system; an OS crash or power cut may lose commits
  and can corrupt the database.

A write whose caller is cancelled while it waits may still be applied, like a commit whose
acknowledgement was lost; version checks make the next write notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from ._codec import dumps, loads
from .base import (
    SCHEMA_VERSION,
    TERMINAL,
    Commit,
    LeaseHeld,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    StepRecord,
    StoreError,
    TransitionRecord,
    WriteConflict,
)

logger = logging.getLogger("statesaga.store")

#: Accepted values of ``synchronous``.
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "OFF")

_SCHEMA = (
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
_OBJECTS = frozenset(
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
_INSERT_RUN = f"INSERT INTO statesaga_runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 14)})"
_SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM statesaga_runs WHERE run_id = ?"
_SELECT_LEASE = "SELECT version, lease_owner, lease_expires FROM statesaga_runs WHERE run_id = ?"
_COMMIT_RUN = (
    "UPDATE statesaga_runs SET status = ?, config = ?, version = version + 1, updated_at = ?,"
    " failed_step = ?, error = ? WHERE run_id = ? AND version = ? AND lease_owner = ?"
)
_UPSERT_STEP = (
    "INSERT OR REPLACE INTO statesaga_steps (run_id, step, phase, attempt, result, error)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_TRANSITION = (
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
# One prepared text per combination of filters, keyed by (status given, saga given).
_LIST_RUNS = {
    (by_status, by_saga): f"SELECT {_RUN_COLUMNS} FROM statesaga_runs"
    + (" WHERE " if by_status or by_saga else "")
    + " AND ".join(
        clause for clause, on in (("status = ?", by_status), ("saga = ?", by_saga)) if on
    )
    + " ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?"
    for by_status in (False, True)
    for by_saga in (False, True)
}

_A = TypeVar("_A")
_R = TypeVar("_R")
# A queued write: (operation, its argument, run id for messages, future, the future's loop).
_Job = tuple[
    Callable[[sqlite3.Connection, Any], Any],
    Any,
    str | None,
    asyncio.Future[Any],
    asyncio.AbstractEventLoop,
]


@attrs.define
class SQLiteStats:
    """Diagnostics of the writer thread, for tests and tuning (not a stable interface).

    Attributes:
        batches: Transactions the writer committed, one per group of queued writes.
        writes: Writes it handled, failed ones included.
        largest_batch: The most writes one transaction carried.
    """

    batches: int = 0
    writes: int = 0
    largest_batch: int = 0


class SQLiteStore:
    """Runs in one SQLite file, written through a group-committing writer thread.

    Args:
        path: The database file; created with its schema on ``open()`` if missing.
        synchronous: ``FULL``, ``NORMAL`` or ``OFF`` (any case); see the module docstring.
        busy_timeout: Seconds to wait for another process's write lock before failing.

    Attributes:
        url: ``sqlite:///`` followed by ``path`` as given.
        path: The database file.
        synchronous: The normalised ``synchronous`` setting.
        stats: Writer diagnostics (``stats.batches`` counts committed transactions).

    Raises:
        StoreError: ``synchronous`` or ``busy_timeout`` is invalid.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = os.fspath(path)
        self.url = "sqlite:///" + self.path
        mode = synchronous.upper() if isinstance(synchronous, str) else ""
        if mode not in SYNCHRONOUS_MODES:
            raise StoreError(
                f"synchronous={synchronous!r} is not one of {', '.join(SYNCHRONOUS_MODES)} "
                "(case-insensitive)"
            )
        if busy_timeout < 0:
            raise StoreError(f"busy_timeout must be >= 0 seconds, not {busy_timeout}")
        self.synchronous = mode
        self.busy_timeout = float(busy_timeout)
        self.stats = SQLiteStats()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._state_lock = threading.Lock()  # serialises open() and close()
        # Queuing a write and queuing the writer's stop signal exclude each other, so no write
        # can land behind the signal and wait forever.
        self._submit_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, synchronous={self.synchronous!r})"

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file, check or create the schema and start the writer (idempotent).

        Raises:
            StoreError: The path is unusable (saying which and why), the file is not a
                database, or it holds a newer schema than this version of statesaga knows.
        """
        await asyncio.to_thread(self._open)

    async def close(self) -> None:
        """Finish the queued writes, stop the writer and close both connections (idempotent)."""
        await asyncio.to_thread(self._close)

    def _open(self) -> None:
        with self._state_lock:
            if self._writer is not None:
                return
            _check_path(self.path)
            writer = reader = None
            try:
                writer = self._connect()
                self._prepare(writer)
                reader = self._connect()
            except BaseException as error:
                for conn in (writer, reader):
                    if conn is not None:
                        conn.close()
                if isinstance(error, sqlite3.Error):
                    raise StoreError(f"cannot open SQLite store {self.path!r}: {error}") from None
                raise
            self._reader = reader
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._write_forever,
                args=(writer, jobs),
                name=f"statesaga-sqlite-writer {self.path}",
                daemon=True,  # an unclosed store must not keep the interpreter alive
            )
            thread.start()
            with self._submit_lock:
                self._jobs, self._writer = jobs, thread

    def _close(self) -> None:
        with self._state_lock:
            with self._submit_lock:
                writer, self._writer = self._writer, None
                if writer is not None:
                    self._jobs.put(None)  # after every write already queued
            if writer is not None:
                writer.join()
            with self._read_lock:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Check the version before anything that writes (even the switch to WAL changes the
        # file header), so a database we refuse is left byte for byte as it was.
        version, present = _inspect(conn)
        self._check_version(version)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite store {self.path!r} cannot use WAL journal mode ({mode})")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        if version is not None and present >= _OBJECTS:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version, _ = _inspect(conn)  # another process may have created it meanwhile
            self._check_version(version)
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO statesaga_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _check_version(self, version: int | None) -> None:
        if version is None or version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"SQLite store {self.path!r} holds schema version {version}, newer than this "
                f"statesaga understands ({SCHEMA_VERSION}); upgrade statesaga to use it (the "
                "file was left unchanged)"
            )
        raise StoreError(
            f"SQLite store {self.path!r} holds schema version {version} and this statesaga "
            f"(schema {SCHEMA_VERSION}) has no migration for it"
        )

    # -- writes --------------------------------------------------------------------------------

    async def create(self, run: RunRecord) -> None:
        run_id = run.run_id
        row = (
            run_id,
            run.saga,
            run.saga_path,
            run.fingerprint,
            dumps(run.input, run_id=run_id),
            run.status,
            dumps(run.config, run_id=run_id),
            run.version,
            run.lease_owner,
            run.lease_expires,
            run.created_at,
            run.updated_at,
            run.failed_step,
            run.error,
        )
        await self._write(_create, row, run_id)

    async def commit(self, commit: Commit) -> None:
        run_id = commit.run_id
        # Serialised here, on the caller's side: a bad value fails before it is queued.
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
        history = [
            (run_id, t.seq, t.trigger, t.source, t.dest, t.at, t.attempt, t.error)
            for t in commit.transitions
        ]
        update = (
            commit.status,
            dumps(commit.config, run_id=run_id),
            commit.updated_at,
            commit.failed_step,
            commit.error,
            run_id,
            commit.version,
            commit.lease_owner,
        )
        await self._write(_commit, (update, steps, history), run_id)

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        return await self._write(_acquire, (run_id, owner, expires, now), run_id)

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        return await self._write(_renew, (tuple(run_ids), owner, expires), None)

    async def release(self, run_id: str, owner: str) -> None:
        await self._write(_release, (run_id, owner), run_id)

    async def pragmas(self) -> dict[str, Any]:
        """Diagnostics: the writer connection's journal_mode, synchronous and busy_timeout."""
        return await self._write(_pragmas, None, None)

    async def _write(
        self, operation: Callable[[sqlite3.Connection, _A], _R], arg: _A, run_id: str | None
    ) -> _R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_R] = loop.create_future()
        with self._submit_lock:
            if self._writer is None:
                raise self._not_open()
            self._jobs.put((operation, arg, run_id, future, loop))
        return await future

    def _write_forever(
        self, conn: sqlite3.Connection, jobs: queue.SimpleQueue[_Job | None]
    ) -> None:
        try:
            stop = False
            while not stop:
                batch: list[_Job] = []
                job = jobs.get()
                while True:  # take everything queued meanwhile: that is the group in group commit
                    if job is None:
                        stop = True
                    else:
                        batch.append(job)
                    try:
                        job = jobs.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    try:
                        self._run_batch(conn, batch)
                    except Exception as error:  # a bug here must not leave callers waiting
                        logger.exception("SQLite store %s: writer failed", self.path)
                        with contextlib.suppress(sqlite3.Error):
                            self._undo(conn, whole=True)  # or the next batch would inherit it
                        _settle(batch, [(False, self._lost(error, job[2])) for job in batch])
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        # The usual batch: commits of different runs. Try it as one statement per table; if
        # any commit conflicts, that is undone and the one-savepoint-per-write path below runs.
        if (
            len(batch) > 1
            and all(job[0] is _commit for job in batch)
            and self._commit_all(conn, batch)
        ):
            return
        outcomes: list[tuple[bool, Any]] = []
        applied: list[int] = []  # outcomes whose writes sit in the open transaction
        for index, (operation, arg, run_id, _, _) in enumerate(batch):
            if not conn.in_transaction:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as error:
                    outcomes += [(False, self._locked(error, job[2])) for job in batch[index:]]
                    break
            try:
                conn.execute("SAVEPOINT op")
                value = operation(conn, arg)
                conn.execute("RELEASE op")
            except Exception as error:
                outcomes.append((False, self._failure(error, run_id)))
                self._undo(conn)
                if not conn.in_transaction:
                    # SQLite dropped the whole transaction (disk full, I/O error...), taking the
                    # writes before this one with it.
                    for earlier in applied:
                        outcomes[earlier] = (False, self._lost(error, batch[earlier][2]))
                    applied.clear()
            else:
                outcomes.append((True, value))
                applied.append(index)
        if conn.in_transaction:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as error:
                self._undo(conn, whole=True)
                for index in applied:
                    outcomes[index] = (False, self._lost(error, batch[index][2]))
            else:
                self.stats.batches += 1
        self.stats.writes += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        _settle(batch, outcomes)

    def _commit_all(self, conn: sqlite3.Connection, batch: list[_Job]) -> bool:
        """Apply a batch of commits with one statement per table; False if one conflicts."""
        updates, steps, history = [], [], []
        for job in batch:
            update, job_steps, job_history = job[1]
            updates.append(update)
            steps += job_steps
            history += job_history
        try:
            conn.execute("BEGIN IMMEDIATE")
            if conn.executemany(_COMMIT_RUN, updates).rowcount != len(updates):
                conn.execute("ROLLBACK")
                return False
            if steps:
                conn.executemany(_UPSERT_STEP, steps)
            if history:
                conn.executemany(_INSERT_TRANSITION, history)
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._undo(conn, whole=True)
            return False  # the careful path will say which write failed, and why
        self.stats.batches += 1
        self.stats.writes += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        _settle(batch, [(True, None)] * len(batch))
        return True

    @staticmethod
    def _undo(conn: sqlite3.Connection, *, whole: bool = False) -> None:
        if not conn.in_transaction:
            return
        try:
            if whole:
                conn.execute("ROLLBACK")
            else:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _failure(self, error: Exception, run_id: str | None) -> Exception:
        """What the caller of a write that raised ``error`` gets."""
        if isinstance(error, StoreError) or not isinstance(error, sqlite3.Error):
            return error  # our own verdicts, and bugs, reach the caller unchanged
        what = f"write of run {run_id}" if run_id else "write"
        return StoreError(
            f"SQLite store {self.path!r}: {what} failed and was not applied ({error})",
            run_id=run_id,
        )

    def _locked(self, error: Exception, run_id: str | None) -> StoreError:
        """What the caller of a write gets whose transaction could not start."""
        what = f"write of run {run_id}" if run_id else "write"
        return StoreError(
            f"SQLite store {self.path!r}: {what} was not applied, no transaction could start "
            f"({error}); if another process holds the database longer than busy_timeout "
            f"({self.busy_timeout:g} s), raise busy_timeout or retry",
            run_id=run_id,
        )

    def _lost(self, error: Exception, run_id: str | None) -> StoreError:
        """What the caller of a write gets whose transaction could not start or finish."""
        what = f"write of run {run_id}" if run_id else "write"
        return StoreError(
            f"SQLite store {self.path!r}: the transaction carrying a {what} failed ({error}); "
            "it may not have been applied",
            run_id=run_id,
        )

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, run_id: str) -> RunSnapshot:
        return await asyncio.to_thread(self._read, _load, run_id)

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        return await asyncio.to_thread(self._read, self._list_runs, (status, saga, limit))

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        return await asyncio.to_thread(self._read, _unfinished, (now, limit))

    def _read(self, operation: Callable[[sqlite3.Connection, _A], _R], arg: _A) -> _R:
        with self._read_lock:
            conn = self._reader
            if conn is None:
                raise self._not_open()
            try:
                return operation(conn, arg)
            except sqlite3.Error as error:
                raise StoreError(f"SQLite store {self.path!r}: read failed ({error})") from error
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def _list_runs(
        self, conn: sqlite3.Connection, arg: tuple[str | None, str | None, int]
    ) -> list[RunRecord]:
        status, saga, limit = arg
        sql = _LIST_RUNS[status is not None, saga is not None]
        params = [value for value in (status, saga) if value is not None]
        runs: list[RunRecord] = []
        offset = 0
        conn.execute("BEGIN")  # one snapshot across pages
        # Undecodable rows are skipped, so page until ``limit`` good ones or the end.
        while len(runs) < limit:
            wanted = limit - len(runs)
            rows = conn.execute(sql, (*params, wanted, offset)).fetchall()
            for row in rows:
                try:
                    runs.append(_run_from_row(row))
                except StoreError as error:
                    logger.warning("SQLite store %s: skipping run %s: %s", self.path, row[0], error)
            if len(rows) < wanted:
                break
            offset += len(rows)
        return runs

    def _not_open(self) -> StoreError:
        return StoreError(
            f"SQLite store {self.path!r} is not open: call `await store.open()` first or use "
            "`async with store:`"
        )


# -- operations (run on the writer's or the reader's connection) ---------------------------------


def _create(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    try:
        conn.execute(_INSERT_RUN, row)
    except sqlite3.IntegrityError:
        if conn.execute(_SELECT_LEASE, (row[0],)).fetchone() is None:
            raise
        raise StoreError(f"run {row[0]} already exists", run_id=row[0]) from None


def _commit(
    conn: sqlite3.Connection,
    arg: tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]],
) -> None:
    update, steps, history = arg
    if conn.execute(_COMMIT_RUN, update).rowcount == 0:
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
        conn.executemany(_UPSERT_STEP, steps)
    if history:
        conn.executemany(_INSERT_TRANSITION, history)


def _acquire(conn: sqlite3.Connection, arg: tuple[str, str, float, float]) -> RunSnapshot:
    run_id, owner, expires, now = arg
    if conn.execute(_ACQUIRE, (owner, expires, run_id, owner, now)).rowcount == 0:
        row = conn.execute(_SELECT_LEASE, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        raise LeaseHeld(run_id, row[1] or "", row[2] or 0)
    return _snapshot(conn, run_id)  # inside the write: it sees exactly what was leased


def _renew(conn: sqlite3.Connection, arg: tuple[tuple[str, ...], str, float]) -> set[str]:
    run_ids, owner, expires = arg
    return {run_id for run_id in run_ids if conn.execute(_RENEW, (expires, run_id, owner)).rowcount}


def _release(conn: sqlite3.Connection, arg: tuple[str, str]) -> None:
    conn.execute(_RELEASE, arg)


def _pragmas(conn: sqlite3.Connection, _: None) -> dict[str, Any]:
    synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    return {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(synchronous),
        "busy_timeout": conn.execute("PRAGMA busy_timeout").fetchone()[0],
    }


def _load(conn: sqlite3.Connection, run_id: str) -> RunSnapshot:
    conn.execute("BEGIN")  # the run, its steps and its history from one snapshot
    return _snapshot(conn, run_id)


def _unfinished(conn: sqlite3.Connection, arg: tuple[float, int]) -> list[str]:
    now, limit = arg
    return [row[0] for row in conn.execute(_UNFINISHED, (now, max(limit, 0)))]


def _snapshot(conn: sqlite3.Connection, run_id: str) -> RunSnapshot:
    row = conn.execute(_SELECT_RUN, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    run = _run_from_row(row)
    steps = {
        step: StepRecord(
            step, phase, attempt, loads(result, run_id=run_id, what=f"result of step {step}"), error
        )
        for step, phase, attempt, result, error in conn.execute(_SELECT_STEPS, (run_id,))
    }
    history = tuple(
        TransitionRecord(*row) for row in conn.execute(_SELECT_HISTORY, (run_id,)).fetchall()
    )
    return RunSnapshot(run=run, steps=steps, history=history)


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    run_id = row[0]
    data = loads(row[4], run_id=run_id, what="input")
    config = loads(row[6], run_id=run_id, what="config")
    if not isinstance(data, dict) or not isinstance(config, dict):
        raise StoreError(
            f"run {run_id}: stored input or config is not a JSON object", run_id=run_id
        )
    return RunRecord(run_id, row[1], row[2], row[3], data, row[5], config, *row[7:])


def _inspect(conn: sqlite3.Connection) -> tuple[int | None, set[str]]:
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


def _check_path(path: str) -> None:
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


def _settle(batch: Sequence[_Job], outcomes: Sequence[tuple[bool, Any]]) -> None:
    """Resolve a batch's futures with one ``call_soon_threadsafe`` per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (_, _, _, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, ok, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # its caller was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
