"""The PostgreSQL store: one database shared by every worker, on any number of machines.

Scale-out: start several ``statesaga worker --store postgresql://user@host/db`` processes, on as
many machines as you like, against one database. Each run is leased to one worker at a time
(``acquire`` is a single conditional ``UPDATE``, atomic across processes); the worker renews its
leases while it drives the run. When a worker crashes, its leases stop being renewed and, once
they expire, another worker's recovery loop takes those runs over and finishes them. Lease times
come from the workers' own clocks, so keep the machines' clocks in sync (NTP): a worker whose
clock runs ahead can take over runs whose owner is still alive.

Writes go through one writer task per store, on its own connection. It takes every write queued
while it was busy and sends them as one transaction in one pipelined round trip (group commit):
one COMMIT, hence one WAL flush, per batch; commits of different runs (the usual batch) travel
as a single statement over arrays of rows. Every write checks its own condition (version, lease
owner, existing id) inside its statement and writes nothing when that fails, so a stale commit
or a held lease fails alone without aborting the batch. If a statement does raise (a duplicate
history entry, a value PostgreSQL refuses), the batch is rolled back and replayed one write at a
time, each inside its own SAVEPOINT, so only the bad write fails. Reads use separate connections
(up to ``pool_size``) and never wait behind the writer.

Values are stored as ``json``, not ``jsonb``: ``jsonb`` rewrites numbers (``1e16`` comes back as
an integer, ``-0.0`` as ``0``) and refuses ``\\u0000``, so values would not come back exactly
as stored. ``json`` keeps the text as written and still supports ``->``, ``->>`` and
``::jsonb`` casts for ad-hoc queries.

A write whose caller is cancelled while it waits may still be applied, like a commit whose
acknowledgement was lost; version checks make the next write notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from .._urls import hide_credentials
from ._pg_sql import (
    CommitRows,
    Conn,
    Queries,
    Row,
    Statement,
    commit_rows,
    nul_free,
    prepare_schema,
    snapshot,
)
from ._pg_writer import Job, Stale, Writer, nothing, pipeline, rollback
from ._rows import decoded_runs, outbox_from_row, run_from_row, run_row
from .base import (
    AsyncContext,
    Commit,
    LeaseHeld,
    OutboxRecord,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    StoreError,
    check_purgeable,
)

logger = logging.getLogger("statesaga.store")

_R = TypeVar("_R")

#: Most writes one transaction carries; the rest wait for the next batch, so that one huge
#: burst does not hold row locks (and other workers' acquires) for long.
MAX_BATCH = 500
_CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise
#: Seconds the writer's connection may sit idle before it is checked before use.
WRITER_CHECK_AFTER = 5.0


@attrs.define
class PostgresStats:
    """Diagnostics of the writer, for tests and tuning (not a stable interface).

    Attributes:
        batches: Transactions the writer committed, one per group of queued writes.
        writes: Writes it handled, failed ones included.
        largest_batch: The most writes one transaction carried.
        retries: Batches sent again after a deadlock or serialization failure.
        replays: Batches replayed write by write because one of their statements raised.
    """

    batches: int = 0
    writes: int = 0
    largest_batch: int = 0
    retries: int = 0
    replays: int = 0


@attrs.define(eq=False)
class _State:
    """What one ``open()`` created; bound to the event loop it ran in."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Job | None]
    writer_conn: Conn | None
    read_slots: asyncio.Semaphore
    idle: list[Conn] = attrs.field(factory=list)
    writer: asyncio.Task[None] | None = None
    writer_used: float = 0.0  # loop time of the writer's last successful batch
    closing: bool = False


class PostgresStore(AsyncContext):
    """Runs in a PostgreSQL database, written through a group-committing writer task.

    Args:
        url: A libpq URL, e.g. ``postgresql://user:password@host:5432/db``.
        schema: The schema holding the tables; created with them on ``open()`` if missing
            (unless ``open(create=False)``).
        pool_size: Most connections used for reads at once (the writer has its own).

    Attributes:
        url: The URL as given.
        schema: The schema.
        stats: Writer diagnostics (``stats.batches`` counts committed transactions).

    Raises:
        StoreError: The URL cannot be parsed, or ``schema`` or ``pool_size`` is invalid.
    """

    def __init__(self, url: str, *, schema: str = "public", pool_size: int = 4) -> None:
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self._safe_url = hide_credentials(url)
        self._password = _url_password(url)  # kept only to blank it out of error messages
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as error:
            raise StoreError(
                f"{self._safe_url!r} is not a valid PostgreSQL URL ({self._reason(error)})"
            ) from None
        self._password = str(params.get("password") or self._password)
        self._connect_args: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._connect_args["connect_timeout"] = _CONNECT_TIMEOUT
        if "application_name" not in params:
            self._connect_args["application_name"] = "statesaga"
        if not schema or "\x00" in schema or len(schema.encode()) > 63:
            raise StoreError(f"schema {schema!r} is not a usable PostgreSQL schema name")
        if pool_size < 1:
            raise StoreError(f"pool_size must be at least 1, not {pool_size}")
        self.stats = PostgresStats()
        self._q = Queries(schema)
        self._writer = Writer(self._safe_url, self._q, self.stats, self._connect, self._reason)
        digest = hashlib.blake2b(f"statesaga schema {schema}".encode(), digest_size=8).digest()
        self._lock_key = int.from_bytes(digest, "big", signed=True)
        digest = hashlib.blake2b(f"statesaga outbox {schema}".encode(), digest_size=8).digest()
        self._outbox_lock_key = int.from_bytes(digest, "big", signed=True)
        self._state: _State | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._safe_url!r}, schema={self.schema!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, create: bool = True) -> None:
        """Connect, check or create the schema and start the writer (idempotent).

        Args:
            create: With ``False``, a missing schema, or one without statesaga's tables, is
                left as it is (no schema, table or version row is created): ``StoreNotFound``
                is raised. A store that exists opens as usual, for reads and writes. Once the
                store is open in this event loop, ``create`` is not looked at.

        Raises:
            StoreNotFound: ``create`` is false and the schema holds no statesaga store.
            StoreError: The server is unreachable or refuses us (the message gives the URL,
                password hidden, and the reason), or the schema holds a newer version than
                this statesaga knows (nothing is written then).
        """
        loop = asyncio.get_running_loop()
        state = self._state
        if state is not None and state.loop is loop and not state.closing:
            return  # open already: every durable run calls this
        async with self._loop_lock(loop):
            state = self._state
            if state is not None and state.loop is loop and not state.closing:
                return
            # A state left by a loop that is gone: its connections died with that loop.
            self._state = None
            conn = await self._connect()
            try:
                await self._prepare(conn, create)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
                raise
            state = _State(loop, asyncio.Queue(), conn, asyncio.Semaphore(self.pool_size))
            state.writer_used = loop.time()
            state.writer = loop.create_task(
                self._write_forever(state), name=f"statesaga-postgres-writer {self._safe_url}"
            )
            self._state = state

    async def close(self) -> None:
        """Finish the queued writes, stop the writer and close the connections (idempotent)."""
        state = self._state
        if state is None:
            return
        loop = asyncio.get_running_loop()
        if state.loop is not loop:
            self._state = None  # opened in a loop that is gone: nothing left to finish
            return
        async with self._loop_lock(loop):
            if self._state is not state:
                return
            state.closing = True  # refuse new work; what is queued still runs
            state.queue.put_nowait(None)
            if state.writer is not None and not state.writer.done():
                await asyncio.shield(state.writer)
            self._state = None
            conns = [*state.idle, *([state.writer_conn] if state.writer_conn else [])]
            state.idle.clear()
            state.writer_conn = None
            for conn in conns:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()

    def _loop_lock(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        # An asyncio.Lock belongs to one loop; tests and CLIs may run several in turn.
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    def _current(self) -> _State:
        state = self._state
        if state is None or state.closing:
            raise StoreError(
                f"PostgreSQL store {self._safe_url} is not open: call `await store.open()` first "
                "or use `async with store:`"
            )
        if state.loop is not asyncio.get_running_loop():
            raise StoreError(
                f"PostgreSQL store {self._safe_url} was opened in another event loop: "
                "open it again in this one"
            )
        return state

    async def _connect(self) -> Conn:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, **self._connect_args
            )
        except psycopg.Error as error:
            raise StoreError(
                f"cannot connect to PostgreSQL store {self._safe_url}: {self._reason(error)}"
            ) from None

    async def _prepare(self, conn: Conn, create: bool) -> None:
        try:
            await prepare_schema(
                conn,
                self._q,
                schema=self.schema,
                lock_key=self._lock_key,
                store=self._safe_url,
                create=create,
            )
        except psycopg.Error as error:
            raise StoreError(
                f"cannot prepare PostgreSQL store {self._safe_url} (schema {self.schema!r}): "
                f"{self._reason(error)}"
            ) from None

    def _reason(self, error: BaseException) -> str:
        text = " ".join(str(error).split()) or type(error).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text

    # -- writes --------------------------------------------------------------------------------

    async def create(self, run: RunRecord) -> None:
        run_id = run.run_id
        row = (*run_row(run)[:-1], nul_free(run.error))

        def decode(rows: list[list[Row]]) -> None:
            if not rows[0]:
                raise StoreError(f"run {run_id} already exists", run_id=run_id)

        await self._write([(self._q.create, row)], decode, run_id)

    async def commit(self, commit: Commit) -> Sequence[str] | None:
        if commit.create is not None:  # one more round trip here; SQLite merges them
            await self.create(commit.create)
        run_id = commit.run_id
        # Serialised here, on the caller's side: a bad value fails before it is queued.
        rows = commit_rows(commit)

        def decode(rows: list[list[Row]]) -> Sequence[str] | None:
            if not rows[0]:  # the applied run ids, filtered to this one
                raise Stale(run_id, commit.version, commit.lease_owner)
            row = rows[0][0]
            return list(row[1] or ()) if len(row) > 1 else None  # the message ids it claimed

        claimed: Sequence[str] | None = await self._write([], decode, run_id, rows)
        return claimed

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        q = self._q
        statements: list[Statement] = [
            (q.acquire, {"run_id": run_id, "owner": owner, "expires": expires, "now": now}),
            # Separate statements, so they see the row as the UPDATE left it (or, if it lost a
            # race, as the winner committed it) rather than the UPDATE's starting snapshot.
            (q.run, (run_id,)),
            (q.steps, (run_id,)),
            (q.history, (run_id,)),
        ]

        def decode(rows: list[list[Row]]) -> RunSnapshot:
            leased, run_rows, step_rows, history_rows = rows
            if not run_rows:
                raise RunNotFound(run_id)
            if leased:
                return snapshot(run_rows[0], step_rows, history_rows)
            owner_now, until = run_rows[0][8], run_rows[0][9]
            raise LeaseHeld(run_id, owner_now or "", until or 0)

        result: RunSnapshot = await self._write(statements, decode, run_id)
        return result

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        ids = list(run_ids)
        if not ids:
            self._current()
            return set()

        def decode(rows: list[list[Row]]) -> set[str]:
            return {row[0] for row in rows[0]}

        kept: set[str] = await self._write([(self._q.renew, (expires, ids, owner))], decode, None)
        return kept

    async def release(self, run_id: str, owner: str) -> None:
        await self._write([(self._q.release, (run_id, owner))], nothing, run_id)

    # -- the outbox ----------------------------------------------------------------------------

    async def outbox_claim(
        self, owner: str, now: float, until: float, limit: int = 100
    ) -> list[OutboxRecord]:
        """See ``SagaStore.outbox_claim``.

        Claims run one at a time across every process (a transaction-scoped advisory lock):
        with ``FOR UPDATE SKIP LOCKED`` alone, two relays could claim consecutive messages of
        one key and publish them out of order.
        """
        params = {"now": now, "until": until, "owner": owner, "limit": max(limit, 0)}

        async def claim(conn: Conn) -> list[OutboxRecord]:
            statements: list[Statement] = [
                ("BEGIN", None),
                ("SELECT pg_advisory_xact_lock(%s)", (self._outbox_lock_key,)),
                (self._q.outbox_claim, params),
                ("COMMIT", None),
            ]
            rows = (await pipeline(conn, statements))[2]
            return sorted((outbox_from_row(row) for row in rows), key=lambda r: r.seq)

        return await self._read(claim, retry=False)

    async def outbox_mark_sent(self, ids: Sequence[str], now: float) -> None:
        if ids:
            statement = (self._q.outbox_mark_sent, (now, list(ids)))
            await self._write([statement], nothing, None)

    async def outbox_mark_failed(
        self, message_id: str, owner: str, error: str, retry_at: float, *, dead: bool
    ) -> None:
        status = "dead" if dead else "pending"
        params = (status, retry_at, nul_free(error), message_id, owner)
        await self._write([(self._q.outbox_mark_failed, params)], nothing, None)

    async def outbox_release(
        self, ids: Sequence[str], owner: str, error: str | None = None
    ) -> None:
        if ids:
            params = (nul_free(error), list(ids), owner)
            await self._write([(self._q.outbox_release, params)], nothing, None)

    async def outbox_list(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[OutboxRecord]:
        query = self._q.outbox_list[status is not None]
        params = (max(limit, 0),) if status is None else (status, max(limit, 0))

        async def read(conn: Conn) -> list[OutboxRecord]:
            cur = await conn.execute(query, params)
            return [outbox_from_row(row) for row in await cur.fetchall()]

        return await self._read(read)

    async def outbox_retry(self, ids: Sequence[str] | None, now: float) -> int:
        if ids is None:
            statement: Statement = (self._q.outbox_retry_dead, (now,))
        else:
            statement = (self._q.outbox_retry, (now, list(ids)))
        count: int = await self._write([statement], _count, None)
        return count

    async def outbox_purge(self, status: str, before: float) -> int:
        check_purgeable(status)
        statement = (self._q.outbox_purge, (status, before))
        count: int = await self._write([statement], _count, None)
        return count

    async def _write(
        self,
        statements: list[Statement],
        decode: Callable[[list[list[Row]]], Any],
        run_id: str | None,
        commit: CommitRows | None = None,
    ) -> Any:
        state = self._current()
        future: asyncio.Future[Any] = state.loop.create_future()
        state.queue.put_nowait(Job(statements, decode, run_id, future, commit))
        return await future

    async def _write_forever(self, state: _State) -> None:
        queue = state.queue
        stop = False
        while not stop:
            job = await queue.get()
            batch: list[Job] = []
            # Take everything queued meanwhile: that is the group in group commit.
            while True:
                if job is None:
                    stop = True
                    break
                batch.append(job)
                if len(batch) >= MAX_BATCH or queue.empty():
                    break
                job = queue.get_nowait()
            if not batch:
                continue
            await self._writer.write(state, batch, WRITER_CHECK_AFTER)

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, run_id: str) -> RunSnapshot:
        q = self._q

        async def read(conn: Conn) -> RunSnapshot:
            # The run, its steps and its history from one snapshot, in one round trip.
            statements: list[Statement] = [
                ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", None),
                (q.run, (run_id,)),
                (q.steps, (run_id,)),
                (q.history, (run_id,)),
                ("COMMIT", None),
            ]
            run_rows, step_rows, history_rows = (await pipeline(conn, statements))[1:-1]
            if not run_rows:
                raise RunNotFound(run_id)
            return snapshot(run_rows[0], step_rows, history_rows)

        return await self._read(read)

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        query = self._q.list_runs[status is not None, saga is not None]
        params = [value for value in (status, saga) if value is not None]
        limit = max(limit, 0)

        async def read(conn: Conn) -> list[RunRecord]:
            runs: list[RunRecord] = []
            offset = 0
            async with conn.transaction():  # one snapshot across pages
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                # Undecodable rows are skipped, so page until ``limit`` good ones or the end.
                while len(runs) < limit:
                    wanted = limit - len(runs)
                    cur = await conn.execute(query, (*params, wanted, offset))
                    rows = await cur.fetchall()
                    for row in rows:
                        try:
                            runs.append(run_from_row(row))
                        except StoreError as error:
                            logger.warning(
                                "PostgreSQL store %s: skipping run %s: %s",
                                self._safe_url,
                                row[0],
                                error,
                            )
                    if len(rows) < wanted:
                        break
                    offset += len(rows)
            return runs

        return await self._read(read)

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        async def read(conn: Conn) -> list[str]:
            cur = await conn.execute(self._q.unfinished, (now, max(limit, 0)))
            return [row[0] for row in await cur.fetchall()]

        return await self._read(read)

    async def leased(self, now: float, limit: int = 100) -> list[RunRecord]:
        async def read(conn: Conn) -> list[RunRecord]:
            cur = await conn.execute(self._q.leased, (now, max(limit, 0)))
            return decoded_runs(await cur.fetchall(), "PostgreSQL")

        return await self._read(read)

    async def _read(self, operation: Callable[[Conn], Awaitable[_R]], *, retry: bool = True) -> _R:
        state = self._current()
        async with state.read_slots:
            for attempt in (1, 2) if retry else (2,):
                reused = bool(state.idle)
                conn = state.idle.pop() if reused else await self._connect()
                try:
                    result = await operation(conn)
                except psycopg.Error as error:
                    broken = conn.broken or conn.closed
                    await self._give_back(state, conn)
                    if broken and reused and attempt == 1:
                        continue  # a pooled connection the server dropped: reads can retry
                    raise StoreError(
                        f"PostgreSQL store {self._safe_url}: read failed ({self._reason(error)})"
                    ) from None
                except BaseException:
                    await self._give_back(state, conn)
                    raise
                await self._give_back(state, conn)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _give_back(self, state: _State, conn: Conn) -> None:
        """Pool ``conn`` again if it is healthy and idle, else close it."""
        clean = not (conn.broken or conn.closed)
        if clean and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            clean = await rollback(conn)
        if clean and self._state is state and not state.closing:
            state.idle.append(conn)
            return
        with contextlib.suppress(psycopg.Error):
            await conn.close()


# -- helpers ---------------------------------------------------------------------------------


def _count(rows: list[list[Row]]) -> int:
    return len(rows[0])


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


__all__ = ["MAX_BATCH", "WRITER_CHECK_AFTER", "PostgresStats", "PostgresStore"]
