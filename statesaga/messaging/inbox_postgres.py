"""The consumer inbox in PostgreSQL: the handler's writes and the message's id, one transaction.

The id goes in first (``INSERT ... ON CONFLICT DO NOTHING``). If another consumer is handling
the same message at that moment, the insert waits for that transaction: when it commits, this
one sees a duplicate; when it rolls back, this one goes on and runs the handler. So concurrent
deliveries of one message are applied once, at READ COMMITTED or stricter (at REPEATABLE READ
and SERIALIZABLE the waiting one fails with a serialization error instead of seeing the
duplicate; it is nacked, and recognised when it comes again).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import pq

from .broker import hide_credentials
from .inbox import Inbox, InboxError
from .message import Message

#: A handler: given the message and the connection whose transaction records it.
PostgresHandler = Callable[[Message, psycopg.AsyncConnection[Any]], Awaitable[None]]

_CONNECT_TIMEOUT = 10  # seconds


class PostgresInbox(Inbox[PostgresHandler]):
    """An inbox table, ``<schema>.statesaga_inbox``, shared by every consumer name.

    The handler gets the inbox's connection inside its transaction: write with it, and do not
    commit or roll back (the inbox does). Its search path is the server's default, so name
    tables in other schemas with their schema.

    Args:
        url: A libpq URL, e.g. ``postgresql://user:password@host:5432/db``.
        consumer: The name ids are recorded under.
        schema: The schema holding the table; created with it on ``open()`` if missing.
        pool_size: Most connections (hence messages handled) at once.

    Raises:
        InboxError: ``consumer`` is empty, ``pool_size`` is below 1, or ``schema`` is not a
            usable schema name.
    """

    def __init__(
        self, url: str, *, consumer: str, schema: str = "public", pool_size: int = 4
    ) -> None:
        if not consumer:
            raise InboxError("an inbox needs a consumer name, e.g. consumer='billing'")
        if pool_size < 1:
            raise InboxError(f"pool_size must be at least 1, not {pool_size!r}")
        if not schema or "\x00" in schema or len(schema.encode()) > 63:
            # PostgreSQL would refuse it, or cut it to 63 bytes (two names, one schema).
            raise InboxError(f"schema {schema!r} is not a usable PostgreSQL schema name")
        self.url = url
        self.consumer = consumer
        self.schema = schema
        self.pool_size = pool_size
        self._safe_url = hide_credentials(url)
        # Quoted, so any name works. In a statement with parameters psycopg reads ``%`` as a
        # placeholder, so there it is doubled; statements without parameters are sent as is.
        self._schema_sql = '"' + schema.replace('"', '""') + '"'
        self.table = f"{self._schema_sql}.statesaga_inbox"
        table = self.table.replace("%", "%%")
        self._insert = (
            f"INSERT INTO {table} (consumer, message_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        )
        self._select_sql = f"SELECT 1 FROM {table} WHERE consumer = %s AND message_id = %s"
        self._purge_sql = (
            f"WITH gone AS (DELETE FROM {table} WHERE consumer = %s"
            " AND received_at < now() - make_interval(secs => %s) RETURNING 1)"
            " SELECT count(*) FROM gone"
        )
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._opened = False

    def __repr__(self) -> str:
        return (
            f"PostgresInbox({self._safe_url!r}, consumer={self.consumer!r}, schema={self.schema!r})"
        )

    async def open(self) -> None:
        """Create the schema, table and index if missing (safe with many processes starting).

        Raises:
            InboxError: The database is unreachable or refused.
        """
        if self._opened:
            return
        lock = int.from_bytes(hashlib.sha256(f"inbox:{self.schema}".encode()).digest()[:8], "big")
        lock -= 1 << 63 if lock >= 1 << 63 else 0
        try:
            conn = await self._connect()
            async with conn:
                cur = await conn.execute("SELECT to_regclass(%s)", (self.table,))
                row = await cur.fetchone()
                if row is None or row[0] is None:
                    async with conn.transaction():
                        # CREATE ... IF NOT EXISTS races between processes: serialise it.
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                        cur = await conn.execute(
                            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                        )
                        if await cur.fetchone() is None:
                            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema_sql}")
                        await conn.execute(
                            f"CREATE TABLE IF NOT EXISTS {self.table} ("
                            ' consumer text COLLATE "C" NOT NULL,'
                            ' message_id text COLLATE "C" NOT NULL,'
                            " received_at timestamptz NOT NULL DEFAULT now(),"
                            " PRIMARY KEY (consumer, message_id))"
                        )
                        await conn.execute(
                            "CREATE INDEX IF NOT EXISTS statesaga_inbox_by_time"
                            f" ON {self.table} (received_at)"
                        )
        except psycopg.Error as error:
            raise self._error("cannot prepare", error) from None
        self._opened = True

    async def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
        self._opened = False

    async def process(self, message: Message, handler: PostgresHandler) -> bool:
        """Record ``message.id`` and run ``handler`` in one transaction; False if a duplicate."""
        self._check_open()
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                async with conn.transaction():
                    cur = await conn.execute(self._insert, (self.consumer, message.id))
                    if cur.rowcount == 0:
                        return False
                    await handler(message, conn)
                    self._check_still_open(conn, message)
                return True
            finally:
                await self._release(conn)

    async def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` is recorded for this consumer."""
        rows = await self._run(self._select_sql, (self.consumer, message_id))
        return bool(rows)

    async def purge(self, *, older_than: float) -> int:
        """Forget this consumer's ids recorded more than ``older_than`` seconds ago."""
        rows = await self._run(self._purge_sql, (self.consumer, float(older_than)))
        return int(rows[0][0])

    async def _run(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        self._check_open()
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                cur = await conn.execute(query, params)
                return await cur.fetchall()
            finally:
                await self._release(conn)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
        except psycopg.Error as error:
            raise self._error("cannot connect to", error) from None

    async def _release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # A connection left mid-transaction or broken (cancelled, server gone) is not reused.
        if conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
            await conn.close()
        else:
            self._idle.append(conn)

    def _check_still_open(self, conn: psycopg.AsyncConnection[Any], message: Message) -> None:
        # Committing a failed transaction silently rolls it back, and a handler's own COMMIT or
        # ROLLBACK ends the inbox's: either way the id and the writes would not be one commit,
        # and the message would be acked as applied (lost, if nothing was kept).
        status = conn.info.transaction_status
        if status == pq.TransactionStatus.INERROR:
            raise InboxError(
                f"the handler for message {message.id!r} caught a database error and returned, "
                "leaving the inbox's transaction failed: let the error propagate, or run the "
                "statement that may fail in a savepoint ('async with conn.transaction():')"
            )
        if status != pq.TransactionStatus.INTRANS:
            raise InboxError(
                f"the handler for message {message.id!r} committed or rolled back the inbox's "
                "transaction: leave that to the inbox, or its id and your writes are no longer "
                "one commit"
            )

    def _check_open(self) -> None:
        if not self._opened:
            raise InboxError(f"{self!r} is not open: use 'async with inbox:' or await open()")

    def _error(self, doing: str, error: BaseException) -> InboxError:
        text = " ".join(str(error).split())
        return InboxError(
            f"{doing} the inbox in PostgreSQL {self._safe_url} (schema {self.schema!r}): {text}"
        )
