"""The SQLite store: the embedded default, one file on disk.

Writes go to one writer thread that owns its own connection. It takes every write queued while
it was busy and applies them in one transaction (group commit), each inside its own SAVEPOINT so
that a write that fails (a stale ``commit``, a duplicate ``create``) is rolled back alone while
the others commit. A batch costs one COMMIT, hence one sync, however many writes it carries.
Reads use a second connection: in WAL mode they neither wait for the writer nor block it.

A run alone (at most ``inline_limit`` runs in flight, the writer thread idle with nothing
queued) has its commits applied on the caller's thread, on the writer's connection and under
its lock, each in a transaction of its own: the trip to the thread and back costs a lone run
more than the sync. Such a commit never waits for another process's lock: if one holds it, the
commit goes to the writer thread, which waits ``busy_timeout``. Once runs overlap, their
commits go to the writer thread and are grouped again.

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
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ..vocabulary import TERMINAL
from . import _signals
from . import _sqlite_outbox as outbox
from . import _sqlite_schema as schema
from . import _sqlite_sql as sql
from ._codec import dumps
from ._rows import run_from_row, run_row
from ._sqlite_browse import SQLiteBrowsing
from ._sqlite_writer import Job, Writer, resolve
from .base import (
    AsyncContext,
    Commit,
    OutboxRecord,
    RunRecord,
    RunSnapshot,
    SignalRecord,
    StoreError,
    check_purgeable,
)

logger = logging.getLogger("statesaga.store")

#: Accepted values of ``synchronous``.
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "OFF")

_A = TypeVar("_A")
_R = TypeVar("_R")


@attrs.define
class SQLiteStats:
    """Diagnostics of the writer thread, for tests and tuning (not a stable interface).

    Attributes:
        batches: Transactions the writer committed, one per group of queued writes.
        writes: Writes it handled, failed ones included.
        largest_batch: The most writes one transaction carried.
        inline: Commits applied on the caller's thread (a lone run's; see ``inline_limit``),
            failed ones included; each is also counted as a write, and as a batch if it
            committed.
    """

    batches: int = 0
    writes: int = 0
    largest_batch: int = 0
    inline: int = 0


class SQLiteStore(SQLiteBrowsing, AsyncContext):
    """Runs in one SQLite file, written through a group-committing writer thread.

    Args:
        path: The database file; created with its schema on ``open()`` if missing (unless
            ``open(create=False)``).
        synchronous: ``FULL``, ``NORMAL`` or ``OFF`` (any case); see the module docstring.
        busy_timeout: Seconds to wait for another process's write lock before failing.
        inline_limit: While at most this many runs are in flight in the store and the writer
            thread is idle with nothing queued, a run's commit is applied on the caller's
            thread (the event loop's) rather than handed to the writer thread: a lone run
            saves the trip to the thread and back for each step, and the loop waits for the
            sync as the run would have. The default, 1, does so for a run alone; 0 sends
            every write through the writer thread. Concurrent runs are group-committed
            either way.

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
        inline_limit: int = 1,
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
        if inline_limit < 0:
            raise StoreError(f"inline_limit must be >= 0 runs, not {inline_limit}")
        self.synchronous = mode
        self.busy_timeout = float(busy_timeout)
        self.inline_limit = inline_limit
        self.stats = SQLiteStats()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._connection: Writer | None = None  # the writer connection, also used inline
        # Runs that committed and have not ended or been released: how alone a run is.
        self._runs: set[str] = set()
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._state_lock = threading.Lock()  # serialises open() and close()
        # Queuing a write and queuing the writer's stop signal exclude each other, so no write
        # can land behind the signal and wait forever.
        self._submit_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, synchronous={self.synchronous!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, create: bool = True) -> None:
        """Open the file, check or create the schema and start the writer (idempotent).

        Args:
            create: With ``False``, a missing file, or one that holds no statesaga store, is
                not created or changed (nor are -wal and -shm files made beside it):
                ``StoreNotFound`` is raised. A store that exists opens as usual, for reads and
                writes. Once the store is open, ``create`` is not looked at.

        Raises:
            StoreNotFound: ``create`` is false and the file holds no statesaga store.
            StoreError: The path is unusable (saying which and why), the file is not a
                database, or it holds a newer schema than this version of statesaga knows.
        """
        if self._writer is not None:
            return  # open already: every durable run calls this, so no trip to a thread
        await asyncio.to_thread(self._open, create)

    async def close(self) -> None:
        """Finish the queued writes, stop the writer and close both connections (idempotent)."""
        await asyncio.to_thread(self._close)

    def _open(self, create: bool) -> None:
        with self._state_lock:
            if self._writer is not None:
                return
            if create:
                schema.check_path(self.path)
            else:
                schema.require_store(self.path, self.url)
            writer = reader = None
            try:
                writer = self._connect(create)
                schema.prepare(writer, self.path, self.url, self.synchronous, create)
                reader = self._connect(create)
            except BaseException as error:
                for conn in (writer, reader):
                    if conn is not None:
                        conn.close()
                if isinstance(error, sqlite3.Error):
                    raise StoreError(f"cannot open SQLite store {self.path!r}: {error}") from None
                raise
            self._reader = reader
            jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
            connection = Writer(self.path, self.busy_timeout, self.stats, writer, jobs)
            thread = threading.Thread(
                target=connection.write_forever,
                name=f"statesaga-sqlite-writer {self.path}",
                daemon=True,  # an unclosed store must not keep the interpreter alive
            )
            thread.start()
            with self._submit_lock:
                self._jobs, self._writer, self._connection = jobs, thread, connection

    def _close(self) -> None:
        with self._state_lock:
            with self._submit_lock:
                writer, self._writer, self._connection = self._writer, None, None
                if writer is not None:
                    self._jobs.put(None)  # after every write already queued
            if writer is not None:
                writer.join()
            self._runs.clear()
            with self._read_lock:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None

    def _connect(self, create: bool) -> sqlite3.Connection:
        # mode=rw: a file removed since it was found is not created again.
        target = self.path if create else Path(os.path.abspath(self.path)).as_uri() + "?mode=rw"
        return sqlite3.connect(
            target,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=not create,
        )

    # -- writes --------------------------------------------------------------------------------

    async def create(self, run: RunRecord) -> None:
        await self._write(sql.create, run_row(run), run.run_id)

    def commit(self, commit: Commit) -> asyncio.Future[Sequence[str] | None]:
        run_id = commit.run_id
        arg = sql.commit_rows(commit)  # a value that cannot be stored fails here
        runs = self._runs
        runs.add(run_id)
        alone = len(runs) <= self.inline_limit
        if commit.status in TERMINAL:
            runs.discard(run_id)  # it ends with this commit
        connection = self._connection
        if alone and connection is not None:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Sequence[str] | None] = loop.create_future()
            outcome = connection.apply_inline((sql.commit, arg, run_id, future, loop))
            if outcome is not None:
                # Resolved on the loop's next pass rather than now: tasks that are ready
                # (runs about to start, other requests) go first, and runs that start then
                # commit through the writer thread, grouped, instead of one by one here.
                loop.call_soon(resolve, [(future, *outcome)])
                return future
        return self._write(sql.commit, arg, run_id)

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        return await self._write(sql.acquire, (run_id, owner, expires, now), run_id)

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        return await self._write(sql.renew, (tuple(run_ids), owner, expires), None)

    async def release(self, run_id: str, owner: str) -> None:
        self._runs.discard(run_id)  # its driver let go of it: no longer in flight here
        await self._write(sql.release, (run_id, owner), run_id)

    async def add_signal(self, signal: SignalRecord) -> bool:
        # The writer thread applies writes one at a time, so what the rules read stays true
        # until the signal is stored: no commit of the run can slip in between.
        signal = _signals.as_stored(signal)
        payload = dumps(signal.payload, run_id=signal.run_id)
        return await self._write(sql.add_signal, (signal, payload), signal.run_id)

    # -- the outbox ----------------------------------------------------------------------------

    async def outbox_claim(
        self, owner: str, now: float, until: float, limit: int = 100
    ) -> list[OutboxRecord]:
        return await self._write(outbox.outbox_claim, (owner, now, until, limit), None)

    async def outbox_mark_sent(self, ids: Sequence[str], now: float) -> None:
        if ids:
            await self._write(outbox.outbox_mark_sent, (tuple(ids), now), None)

    async def outbox_mark_failed(
        self, message_id: str, owner: str, error: str, retry_at: float, *, dead: bool
    ) -> None:
        await self._write(
            outbox.outbox_mark_failed, (message_id, owner, error, retry_at, dead), None
        )

    async def outbox_release(
        self, ids: Sequence[str], owner: str, error: str | None = None
    ) -> None:
        if ids:
            await self._write(outbox.outbox_release, (tuple(ids), owner, error), None)

    async def outbox_list(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[OutboxRecord]:
        return await asyncio.to_thread(self._read, outbox.outbox_list, (status, max(limit, 0)))

    async def outbox_retry(self, ids: Sequence[str] | None, now: float) -> int:
        return await self._write(outbox.outbox_retry, (outbox.frozen(ids), now), None)

    async def outbox_purge(
        self, status: str, before: float, ids: Sequence[str] | None = None
    ) -> int:
        check_purgeable(status)
        return await self._write(outbox.outbox_purge, (status, before, outbox.frozen(ids)), None)

    async def pragmas(self) -> dict[str, Any]:
        """Diagnostics: the writer connection's journal_mode, synchronous and busy_timeout."""
        return await self._write(sql.pragmas, None, None)

    def _write(
        self, operation: Callable[[sqlite3.Connection, _A], _R], arg: _A, run_id: str | None
    ) -> asyncio.Future[_R]:
        """Queue a write for the writer thread; await the future for its outcome.

        A plain function rather than a coroutine: every step of every durable run comes
        through here, and the future is all there is to wait for.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_R] = loop.create_future()
        with self._submit_lock:
            if self._writer is None:
                raise self._not_open()
            self._jobs.put((operation, arg, run_id, future, loop))
        return future

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, run_id: str) -> RunSnapshot:
        return await asyncio.to_thread(self._read, sql.load, run_id)

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        return await asyncio.to_thread(self._read, self._list_runs, (status, saga, limit))

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        return await asyncio.to_thread(self._read, sql.unfinished, (now, limit))

    async def leased(self, now: float, limit: int = 100) -> list[RunRecord]:
        return await asyncio.to_thread(self._read, sql.leased, (now, limit))

    async def waiting(self, limit: int = 100) -> list[RunRecord]:
        return await asyncio.to_thread(self._read, sql.waiting, limit)

    async def count_waiting(self) -> dict[str, int]:
        return await asyncio.to_thread(self._read, sql.count_waiting, None)

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
        query = sql.LIST_RUNS[status is not None, saga is not None]
        params = [value for value in (status, saga) if value is not None]
        runs: list[RunRecord] = []
        offset = 0
        conn.execute("BEGIN")  # one snapshot across pages
        # Undecodable rows are skipped, so page until ``limit`` good ones or the end.
        while len(runs) < limit:
            wanted = limit - len(runs)
            rows = conn.execute(query, (*params, wanted, offset)).fetchall()
            for row in rows:
                try:
                    runs.append(run_from_row(row))
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
