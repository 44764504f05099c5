"""The PostgreSQL store's writer: queued writes sent in batches, one transaction per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import psycopg
from psycopg import pq
from psycopg.rows import TupleRow

from ._pg_rows import CommitRows, commit_params
from ._pg_sql import Conn, Queries, Row, Statement
from .base import RunNotFound, SignalArrived, StoreError, WriteConflict

if TYPE_CHECKING:
    from ._pg_connections import PostgresStats, State

logger = logging.getLogger("statesaga.store")

_Cursor = psycopg.AsyncCursor[TupleRow]

#: Attempts at a batch that hit a deadlock or serialization failure before replaying it write
#: by write.
_ATTEMPTS = 3


class Stale(Exception):
    """A commit's guarded UPDATE matched nothing: a conflict, an unknown run, or a signal of
    one of the events in ``unless``."""

    def __init__(self, run_id: str, version: int, owner: str, unless: Sequence[str] = ()) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.version = version
        self.owner = owner
        self.unless = tuple(unless)


@attrs.define(eq=False)
class Job:
    """A queued write: its statements, how to read their rows, and who waits for it."""

    statements: list[Statement]
    decode: Callable[[list[list[Row]]], Any]
    run_id: str | None
    future: asyncio.Future[Any]
    commit: CommitRows | None = None  # set for commits, which a batch may merge


class Writer:
    """What the writer task does with each batch it takes from the queue.

    Args:
        store: The store's URL, password hidden, for messages.
        queries: The statements of the store's schema.
        stats: Where the writer's work is counted.
        connect: Opens a new connection (raising ``StoreError`` if it cannot).
        reason: An error's text for messages, any password blanked out.
    """

    def __init__(
        self,
        store: str,
        queries: Queries,
        stats: PostgresStats,
        connect: Callable[[], Awaitable[Conn]],
        reason: Callable[[BaseException], str],
    ) -> None:
        self._store = store
        self._q = queries
        self._stats = stats
        self._connect = connect
        self._reason = reason

    async def write(self, state: State, batch: list[Job], check_after: float) -> None:
        """Apply ``batch`` and resolve its futures.

        The connection is checked first if it sat idle for more than ``check_after`` seconds.
        """
        # Writes to runs go in run id order (stable: one run's writes keep theirs). Two
        # workers taking over a dead worker's runs then lock them in the same order and do
        # not deadlock: a deadlock holds both for PostgreSQL's deadlock_timeout (1 s by
        # default) before one is aborted (and sent again, below).
        batch = sorted(batch, key=lambda job: job.run_id or "")
        try:
            outcomes = await self._run_batch(state, batch, check_after)
        except asyncio.CancelledError:
            # Cut short (``asyncio.run`` ending cancels the writer): the connection is midway
            # through the batch, so it goes, and the callers learn that the outcome is unknown
            # rather than wait for ever.
            await self._drop_connection(state)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(self._cut_short(job.run_id))
            raise
        except Exception as error:  # a bug here must not leave callers waiting
            logger.exception("PostgreSQL store %s: writer failed", self._store)
            await self._drop_connection(state)
            outcomes = [(False, self._failure(error, job.run_id)) for job in batch]
        self._stats.writes += len(batch)
        self._stats.largest_batch = max(self._stats.largest_batch, len(batch))
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if job.future.done():  # its caller was cancelled
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    async def _run_batch(
        self, state: State, batch: list[Job], check_after: float
    ) -> list[tuple[bool, Any]]:
        try:
            conn = await self._connection(state, check_after)
        except StoreError as error:
            return [(False, StoreError(str(error), run_id=job.run_id)) for job in batch]
        try:
            outcomes = await self._apply(conn, batch)
        except psycopg.Error as error:
            # The connection died, or the COMMIT failed: the outcome of the whole batch is
            # unknown (broken) or nothing was applied.
            broken = conn.broken or conn.closed
            if broken:
                await self._drop_connection(state)  # the next batch reconnects
            else:
                await rollback(conn)
            return [(False, self._failure(error, job.run_id, unknown=broken)) for job in batch]
        self._stats.batches += 1
        state.writer_used = state.loop.time()
        stale = [i for i, (ok, value) in enumerate(outcomes) if isinstance(value, Stale)]
        if stale:
            await self._explain_stale(conn, outcomes, stale)
        return outcomes

    async def _apply(self, conn: Conn, batch: list[Job]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one committed transaction; each job's outcome."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                rows = await self._send(conn, batch)
            except psycopg.Error as error:
                if conn.broken or conn.closed:
                    raise
                await rollback(conn)
                if rolled_back(error) and attempt < _ATTEMPTS:
                    # A deadlock with another worker's batch: running it again usually passes.
                    self._stats.retries += 1
                    await asyncio.sleep(random.uniform(0, 0.02 * attempt))
                    continue
                self._stats.replays += 1
                return await self._replay(conn, batch)
            return [_decode(job, job_rows) for job, job_rows in zip(batch, rows, strict=True)]
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, conn: Conn, batch: list[Job]) -> list[list[list[Row]]]:
        # BEGIN, every statement and COMMIT in one pipeline: one round trip per batch. No
        # SAVEPOINTs here: expected failures write nothing and raise nothing, and hundreds of
        # subtransactions per transaction would slow every other session's snapshots.
        commits = [job.commit for job in batch if job.commit is not None]
        if len(commits) == len(batch) > 1 and len({c.run_id for c in commits}) == len(commits):
            # The usual batch: commits of different runs, all in one statement.
            merged = (self._commit_statement(commits), commit_params(commits))
            rows = await pipeline(
                conn, [("BEGIN", None), *self._locks(commits), merged, ("COMMIT", None)]
            )
            applied = {row[0]: row for row in rows[-2]}
            return [[[applied[c.run_id]] if c.run_id in applied else []] for c in commits]
        statements: list[Statement] = [("BEGIN", None)]
        sizes = []
        for job in batch:
            job_statements = self._statements(job)
            statements += job_statements
            sizes.append(len(job_statements))
        statements.append(("COMMIT", None))
        rows = await pipeline(conn, statements)
        by_job = []
        start = 1
        for size in sizes:
            by_job.append(rows[start : start + size])
            start += size
        return by_job

    def _statements(self, job: Job) -> list[Statement]:
        """A job's statements; a commit's own comes last (its ``decode`` reads that one)."""
        if job.commit is not None:
            commit = [job.commit]
            return [*self._locks(commit), (self._commit_statement(commit), commit_params(commit))]
        return job.statements

    def _locks(self, commits: list[CommitRows]) -> list[Statement]:
        """The statement locking the runs of the commits signals can stop, if there are any."""
        guarded = sorted(c.run_id for c in commits if c.guarded)
        return [(self._q.lock_runs, (guarded,))] if guarded else []

    def _commit_statement(self, commits: list[CommitRows]) -> str:
        # Commits without messages (the hot path) keep the statement without the outbox.
        return self._q.commit_outbox if any(c.messages for c in commits) else self._q.commit

    async def _replay(self, conn: Conn, batch: list[Job]) -> list[tuple[bool, Any]]:
        """Run ``batch`` write by write, each in a SAVEPOINT, so a failing write fails alone."""
        outcomes: list[tuple[bool, Any]] = []
        await conn.execute("BEGIN")
        try:
            for job in batch:
                statements = [
                    ("SAVEPOINT statesaga_write", None),
                    *self._statements(job),
                    ("RELEASE SAVEPOINT statesaga_write", None),
                ]
                try:
                    rows = await pipeline(conn, statements)
                except psycopg.Error as error:
                    if conn.broken or conn.closed:
                        raise
                    await conn.execute("ROLLBACK TO SAVEPOINT statesaga_write")
                    await conn.execute("RELEASE SAVEPOINT statesaga_write")
                    outcomes.append((False, self._failure(error, job.run_id)))
                    continue
                outcomes.append(_decode(job, rows[1:-1]))
            await conn.execute("COMMIT")
        except BaseException:
            if not (conn.broken or conn.closed):
                await rollback(conn)
            raise
        return outcomes

    async def _explain_stale(
        self, conn: Conn, outcomes: list[tuple[bool, Any]], stale: list[int]
    ) -> None:
        """Turn ``Stale`` outcomes into ``WriteConflict``, ``RunNotFound`` or ``SignalArrived``
        (one query).

        A run at the version and lease its commit expected was stopped by a signal: signals
        are never deleted, so the one that stopped it is still there.
        """
        marks: list[Stale] = [outcomes[i][1] for i in stale]
        found: dict[str, tuple[int, str | None, list[str]]] | None
        try:
            cur = await conn.execute(self._q.leases, ([m.run_id for m in marks],))
            found = {row[0]: (row[1], row[2], row[3]) for row in await cur.fetchall()}
        except psycopg.Error:
            found = None  # the conflict stands; only its details are missing
        for index, mark in zip(stale, marks, strict=True):
            expected = f"expected version {mark.version} leased to {mark.owner}"
            if found is None:
                error: StoreError = WriteConflict(mark.run_id, expected)
            elif mark.run_id not in found:
                error = RunNotFound(mark.run_id)
            else:
                version, owner, events = found[mark.run_id]
                arrived = [e for e in mark.unless if e in events]
                if (version, owner) == (mark.version, mark.owner) and arrived:
                    error = SignalArrived(mark.run_id, arrived)
                else:
                    error = WriteConflict(
                        mark.run_id, f"{expected}, found version {version} leased to {owner}"
                    )
            outcomes[index] = (False, error)

    async def _connection(self, state: State, check_after: float) -> Conn:
        """The writer's connection: checked if it sat idle, replaced if it is gone."""
        conn = state.writer_conn
        if conn is not None and state.loop.time() - state.writer_used > check_after:
            # A connection idle for a while may have been dropped (server restart, firewall).
            # Finding out now costs one round trip; finding out while sending the batch would
            # leave its outcome unknown and fail every write in it.
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error:
                await self._drop_connection(state)
                conn = None
        if conn is None or conn.closed:
            conn = state.writer_conn = await self._connect()
        return conn

    async def _drop_connection(self, state: State) -> None:
        conn, state.writer_conn = state.writer_conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    def _cut_short(self, run_id: str | None) -> StoreError:
        what = f"write of run {run_id}" if run_id else "write"
        return StoreError(
            f"PostgreSQL store {self._store}: {what} was cut short by a cancellation; it may "
            "or may not have been applied",
            run_id=run_id,
        )

    def _failure(self, error: BaseException, run_id: str | None, *, unknown: bool = False) -> Any:
        if isinstance(error, StoreError) or not isinstance(error, psycopg.Error):
            return error  # our own verdicts, and bugs, reach the caller unchanged
        what = f"write of run {run_id}" if run_id else "write"
        if unknown:
            verdict = "lost its connection; it may or may not have been applied"
        else:
            verdict = "failed and was not applied"
        return StoreError(
            f"PostgreSQL store {self._store}: {what} {verdict} ({self._reason(error)})",
            run_id=run_id,
        )


async def pipeline(conn: Conn, statements: Sequence[Statement]) -> list[list[Row]]:
    """Send ``statements`` in one round trip and return each one's rows.

    The first error is raised once the pipeline is drained, so psycopg does not log the
    statements the server skipped after it.
    """
    cursors: list[_Cursor] = []
    failure: psycopg.Error | None = None
    async with conn.pipeline() as pipe:
        try:
            for query, params in statements:
                cur = conn.cursor()
                await cur.execute(query, params)
                cursors.append(cur)
            await pipe.sync()
        except psycopg.Error as error:
            failure = error
            with contextlib.suppress(psycopg.Error):
                await pipe.sync()
    if failure is not None:
        raise failure
    return [await _rows(cur) for cur in cursors]


async def _rows(cur: _Cursor) -> list[Row]:
    return await cur.fetchall() if cur.description is not None else []


def rolled_back(error: psycopg.Error) -> bool:
    """Whether the server rolled the transaction back for a deadlock or a serialization
    failure (SQLSTATE class 40): sent again, it usually passes. psycopg's classes for these
    do not derive from its ``TransactionRollback``, so the class is read off the code."""
    return (error.sqlstate or "").startswith("40")


async def rollback(conn: Conn) -> bool:
    """Roll back any open transaction; whether the connection is usable afterwards."""
    try:
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            await conn.execute("ROLLBACK")
    except psycopg.Error:
        with contextlib.suppress(psycopg.Error):
            await conn.close()
        return False
    return True


def _decode(job: Job, rows: list[list[Row]]) -> tuple[bool, Any]:
    try:
        return True, job.decode(rows)
    except Exception as error:
        return False, error


def nothing(_: list[list[Row]]) -> None:
    return None
