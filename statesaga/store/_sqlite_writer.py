"""The SQLite store's writer thread: each group of queued writes applied in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
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
    """What the writer thread runs, on the connection it owns.

    Args:
        path: The database file, for messages.
        busy_timeout: The store's ``busy_timeout``, for messages.
        stats: Where batches and writes are counted.
    """

    def __init__(self, path: str, busy_timeout: float, stats: SQLiteStats) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.stats = stats

    def write_forever(self, conn: sqlite3.Connection, jobs: queue.SimpleQueue[Job | None]) -> None:
        """Apply the writes queued on ``jobs`` until the stop signal (``None``), then close."""
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
                    try:
                        self._run_batch(conn, batch)
                    except Exception as error:  # a bug here must not leave callers waiting
                        logger.exception("SQLite store %s: writer failed", self.path)
                        with contextlib.suppress(sqlite3.Error):
                            self._undo(conn, whole=True)  # or the next batch would inherit it
                        _settle(batch, [(False, self._lost(error, job[2])) for job in batch])
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Job]) -> None:
        # The usual batch: commits of different runs. Try it as one statement per table; if
        # any commit conflicts, that is undone and the one-savepoint-per-write path below runs.
        if (
            len(batch) > 1
            and all(job[0] is sql.commit for job in batch)
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

    def _commit_all(self, conn: sqlite3.Connection, batch: list[Job]) -> bool:
        """Apply a batch of commits with one statement per table; False if one conflicts."""
        creates, updates, steps, history = [], [], [], []
        for job in batch:
            create, update, job_steps, job_history, _, _ = job[1]
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
                return False
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
            return False  # the careful path will say which write failed, and why
        self.stats.batches += 1
        self.stats.writes += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        _settle(batch, [(True, ids) for ids in claimed])
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


def _settle(batch: Sequence[Job], outcomes: Sequence[tuple[bool, Any]]) -> None:
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
