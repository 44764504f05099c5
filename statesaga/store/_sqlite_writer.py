"""The SQLite store's writer: each group of queued writes applied in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _sqlite_outbox as outbox
from . import _sqlite_sql as sql
from .base import StoreError

if TYPE_CHECKING:
    from .sqlite import SQLiteStats

logger = logging.getLogger("statesaga.store")


# A queued write: (operation, its argument, run id for messages, future, the future's loop).
Job = tuple[
    Callable[[sqlite3.Connection, Any], Any],
    Any,
    str | None,
    asyncio.Future[Any],
    asyncio.AbstractEventLoop,
]


class Writer:
    """The writer connection and what runs on it: the writer thread, or a lone commit inline.

    Whoever applies writes holds ``lock``: the writer thread for each batch, a caller's thread
    for a write it applies itself (``apply_inline``). Only the writer thread waits for
    another process's write lock (``busy_timeout``); a write applied inline never waits.

    Args:
        path: The database file, for messages.
        busy_timeout: The store's ``busy_timeout``, for messages and the writer thread's waits.
        stats: Where batches and writes are counted.
        conn: The writer connection; the writer thread closes it when it stops.
        jobs: The writes queued for the writer thread; ``None`` stops it.
    """

    def __init__(
        self,
        path: str,
        busy_timeout: float,
        stats: SQLiteStats,
        conn: sqlite3.Connection,
        jobs: queue.SimpleQueue[Job | None],
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.stats = stats
        self.conn = conn
        self.jobs = jobs
        self.lock = threading.Lock()
        self.closed = False
        self._patient = True  # the connection waits busy_timeout for a lock (else 0)

    def write_forever(self) -> None:
        """Apply the writes queued on ``jobs`` until the stop signal (``None``), then close."""
        conn, jobs = self.conn, self.jobs
        try:
            stop = False
            while not stop:
                batch: list[Job] = []
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
                    with self.lock:
                        outcomes = self._apply(conn, batch, patient=True)
                    _settle(batch, outcomes)
        finally:
            with self.lock:
                self.closed = True
                conn.close()

    def apply_inline(self, job: Job) -> tuple[bool, Any] | None:
        """Apply one write on the caller's thread, in a transaction of its own, if the writer
        thread is idle with nothing queued and no other process holds the write lock.

        Returns:
            The write's outcome (``ok``, value or error), or ``None`` when it was not applied:
            queue it for the writer thread then.
        """
        if not self.jobs.empty() or not self.lock.acquire(blocking=False):
            return None
        try:
            conn = self.conn
            if self.closed:
                return None
            if self._patient:
                conn.execute("PRAGMA busy_timeout = 0")
                self._patient = False
            try:  # in WAL mode only BEGIN IMMEDIATE can meet another process's write lock
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return None  # another process writes: the writer thread waits for it instead
            return self._apply_one(conn, job)
        finally:
            self.lock.release()

    def _apply_one(self, conn: sqlite3.Connection, job: Job) -> tuple[bool, Any]:
        """Apply one write in the transaction just begun, and commit it.

        The write is alone in its transaction, so rolling that back undoes the write alone,
        as its savepoint would in a batch: no savepoint is needed.
        """
        operation, arg, run_id = job[0], job[1], job[2]
        try:
            value = operation(conn, arg)
        except Exception as error:
            outcome = (False, self._failure(error, run_id))
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as error:
                outcome = (False, self._lost(error, run_id))
            else:
                self.stats.batches += 1
                outcome = (True, value)
        self._undo(conn, whole=True)  # after a failure; nothing to undo after a commit
        self.stats.writes += 1
        self.stats.inline += 1
        self.stats.largest_batch = max(self.stats.largest_batch, 1)
        return outcome

    def _apply(
        self, conn: sqlite3.Connection, batch: list[Job], *, patient: bool
    ) -> list[tuple[bool, Any]]:
        """Apply a batch in one transaction; each write's outcome, in batch order.

        ``patient``: wait up to ``busy_timeout`` for another process's write lock (the writer
        thread), rather than not at all (a write applied inline has begun its transaction).
        """
        try:
            if patient and not self._patient:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                self._patient = True
            # The usual batch: commits of different runs. Try it as one statement per table;
            # if any commit conflicts, that is undone and the one-savepoint-per-write path runs.
            # A commit guarded by signals (a run parking in a wait) takes that path too.
            if len(batch) > 1 and all(job[0] is sql.commit and not job[1][6] for job in batch):
                outcomes = self._commit_all(conn, batch)
                if outcomes is not None:
                    return outcomes
            return self._run_batch(conn, batch)
        except Exception as error:  # a bug here must not leave callers waiting
            logger.exception("SQLite store %s: writer failed", self.path)
            with contextlib.suppress(sqlite3.Error):
                self._undo(conn, whole=True)  # or the next batch would inherit it
            return [(False, self._lost(error, job[2])) for job in batch]

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Job]) -> list[tuple[bool, Any]]:
        """Apply a batch in one transaction (begun already, or begun here), each write in a
        savepoint of its own: a write that fails is undone alone."""
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
        return outcomes

    def _commit_all(
        self, conn: sqlite3.Connection, batch: list[Job]
    ) -> list[tuple[bool, Any]] | None:
        """Apply a batch of commits with one statement per table; ``None`` if one conflicts."""
        creates, updates, steps, history = [], [], [], []
        for job in batch:
            create, update, job_steps, job_history, *_ = job[1]
            if create is not None:
                creates.append(create)
            updates.append(update)
            steps += job_steps
            history += job_history
        claimed: list[list[str] | None] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            if creates:
                conn.executemany(sql.INSERT_RUN, creates)  # a duplicate raises: careful path
            if conn.executemany(sql.COMMIT_RUN, updates).rowcount != len(updates):
                conn.execute("ROLLBACK")
                return None
            if steps:
                conn.executemany(sql.UPSERT_STEP, steps)
            if history:
                conn.executemany(sql.INSERT_TRANSITION, history)
            # In batch order: a message sees those of earlier commits when its key is checked.
            claimed = [
                outbox.insert_messages(conn, job[1][4], job[1][5]) if job[1][4] else None
                for job in batch
            ]
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._undo(conn, whole=True)
            return None  # the careful path will say which write failed, and why
        self.stats.batches += 1
        self.stats.writes += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        return [(True, ids) for ids in claimed]

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


def _settle(batch: Sequence[Job], outcomes: Sequence[tuple[bool, Any]]) -> None:
    """Resolve a batch's futures with one ``call_soon_threadsafe`` per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (_, _, _, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, ok, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(resolve, items)


def resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # its caller was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
