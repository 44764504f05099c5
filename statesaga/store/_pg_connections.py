"""A PostgreSQL store's connections: one writer task on its own connection, a pool for reads.

What one ``open()`` creates is bound to the event loop it ran in; opening again in another loop
starts afresh. The writer takes every write queued while it was busy as one batch (see
``statesaga.store.postgres`` for why, and ``_pg_writer`` for how a batch is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from .._urls import hide_credentials
from ._pg_rows import CommitRows
from ._pg_schema import prepare_schema
from ._pg_sql import Conn, Queries, Row, Statement
from ._pg_writer import Job, Writer, rollback
from .base import StoreError

_R = TypeVar("_R")

_CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise


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
class State:
    """What one ``open()`` created; bound to the event loop it ran in."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Job | None]
    writer_conn: Conn | None
    read_slots: asyncio.Semaphore
    idle: list[Conn] = attrs.field(factory=list)
    writer: asyncio.Task[None] | None = None
    writer_used: float = 0.0  # loop time of the writer's last successful batch
    closing: bool = False
    #: Taken by callers that write themselves once the writer is gone: one at a time on its
    #: connection.
    inline: asyncio.Lock = attrs.field(factory=asyncio.Lock)


class _WriterStopped(Exception):
    """The writer task ended with this write still queued: its caller makes it."""


class Connections:
    """The connections of one PostgreSQL store, and the queue its writes wait in.

    Args:
        url: A libpq URL, e.g. ``postgresql://user:password@host:5432/db``.
        schema: The schema holding the tables (created on ``open()`` unless told not to).
        pool_size: Most connections used for reads at once (the writer has its own).
        max_batch: Most writes one transaction carries.
        check_after: Seconds the writer's connection may sit idle before it is checked.

    Attributes:
        safe_url: The URL with its password hidden, for messages.
        stats: Writer diagnostics.
        queries: The statements of ``schema``.

    Raises:
        StoreError: The URL cannot be parsed, or ``schema`` or ``pool_size`` is invalid.
    """

    def __init__(
        self, url: str, *, schema: str, pool_size: int, max_batch: int, check_after: float
    ) -> None:
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self._max_batch = max_batch
        self._check_after = check_after
        self.safe_url = hide_credentials(url)
        self._password = _url_password(url)  # kept only to blank it out of error messages
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as error:
            raise StoreError(
                f"{self.safe_url!r} is not a valid PostgreSQL URL ({self.reason(error)})"
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
        self.queries = Queries(schema)
        self._writer = Writer(self.safe_url, self.queries, self.stats, self.connect, self.reason)
        digest = hashlib.blake2b(f"statesaga schema {schema}".encode(), digest_size=8).digest()
        self._lock_key = int.from_bytes(digest, "big", signed=True)
        self._state: State | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    async def open(self, *, create: bool = True) -> None:
        """Connect, check or create the schema and start the writer (idempotent); see
        ``PostgresStore.open``."""
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
            conn = await self.connect()
            try:
                await self._prepare(conn, create)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
                raise
            state = State(loop, asyncio.Queue(), conn, asyncio.Semaphore(self.pool_size))
            state.writer_used = loop.time()
            state.writer = loop.create_task(
                self._write_forever(state), name=f"statesaga-postgres-writer {self.safe_url}"
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

    def current(self) -> State:
        """What ``open()`` created, if it is open in the running loop; else ``StoreError``."""
        state = self._state
        if state is None or state.closing:
            raise StoreError(
                f"PostgreSQL store {self.safe_url} is not open: call `await store.open()` first "
                "or use `async with store:`"
            )
        if state.loop is not asyncio.get_running_loop():
            raise StoreError(
                f"PostgreSQL store {self.safe_url} was opened in another event loop: "
                "open it again in this one"
            )
        return state

    async def connect(self) -> Conn:
        """A new autocommit connection; ``StoreError`` (password hidden) if there is none."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, **self._connect_args
            )
        except psycopg.Error as error:
            raise StoreError(
                f"cannot connect to PostgreSQL store {self.safe_url}: {self.reason(error)}"
            ) from None

    async def _prepare(self, conn: Conn, create: bool) -> None:
        try:
            await prepare_schema(
                conn,
                self.queries,
                schema=self.schema,
                lock_key=self._lock_key,
                store=self.safe_url,
                create=create,
            )
        except psycopg.Error as error:
            raise StoreError(
                f"cannot prepare PostgreSQL store {self.safe_url} (schema {self.schema!r}): "
                f"{self.reason(error)}"
            ) from None

    def reason(self, error: BaseException) -> str:
        """``error``'s text on one line, for messages, any password blanked out."""
        text = " ".join(str(error).split()) or type(error).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text

    async def write(
        self,
        statements: list[Statement],
        decode: Callable[[list[list[Row]]], Any],
        run_id: str | None,
        commit: CommitRows | None = None,
    ) -> Any:
        """Queue a write for the writer; what ``decode`` makes of its rows, once committed.

        ``commit`` is set for a commit, which the writer may merge with others of its batch.
        """
        state = self.current()
        future: asyncio.Future[Any] = state.loop.create_future()
        job = Job(statements, decode, run_id, future, commit)
        if state.writer is not None and not state.writer.done():
            state.queue.put_nowait(job)
            try:
                return await future
            except _WriterStopped:
                job.future = future = state.loop.create_future()
        # The writer was cancelled (``asyncio.run`` ending cancels every task): a run's last
        # writes, such as letting its lease go, are made here rather than wait forever.
        async with state.inline:
            await self._writer.write(state, [job], self._check_after)
        return await future

    async def _write_forever(self, state: State) -> None:
        try:
            await self._take_writes(state)
        finally:  # cancelled: what is still queued is written by the callers (see ``write``)
            while not state.queue.empty():
                job = state.queue.get_nowait()
                if job is not None and not job.future.done():
                    job.future.set_exception(_WriterStopped())

    async def _take_writes(self, state: State) -> None:
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
                if len(batch) >= self._max_batch or queue.empty():
                    break
                job = queue.get_nowait()
            if not batch:
                continue
            await self._writer.write(state, batch, self._check_after)

    async def read(
        self, operation: Callable[[Conn], Awaitable[_R]], *, retry: bool = True, what: str = "read"
    ) -> _R:
        """``operation`` run on a pooled connection, never waiting behind the writer.

        With ``retry``, an operation that met a pooled connection the server dropped runs once
        more on a new one. ``what`` names the operation in the error it may raise.
        """
        state = self.current()
        async with state.read_slots:
            for attempt in (1, 2) if retry else (2,):
                reused = bool(state.idle)
                conn = state.idle.pop() if reused else await self.connect()
                try:
                    result = await operation(conn)
                except psycopg.Error as error:
                    broken = conn.broken or conn.closed
                    await self._give_back(state, conn)
                    if broken and reused and attempt == 1:
                        continue  # a pooled connection the server dropped: reads can retry
                    raise StoreError(
                        f"PostgreSQL store {self.safe_url}: {what} failed ({self.reason(error)})"
                    ) from None
                except BaseException:
                    await self._give_back(state, conn)
                    raise
                await self._give_back(state, conn)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _give_back(self, state: State, conn: Conn) -> None:
        """Pool ``conn`` again if it is healthy and idle, else close it."""
        clean = not (conn.broken or conn.closed)
        if clean and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            clean = await rollback(conn)
        if clean and self._state is state and not state.closing:
            state.idle.append(conn)
            return
        with contextlib.suppress(psycopg.Error):
            await conn.close()


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""
