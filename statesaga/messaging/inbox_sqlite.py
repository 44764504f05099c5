"""The consumer inbox in SQLite: the handler's writes and the message's id, one transaction.

One connection per inbox, used by one thread of its own: each message runs as
``BEGIN IMMEDIATE``, insert the id (ignored if present), handler, ``COMMIT``. ``IMMEDIATE`` takes
the database's write lock first, so inboxes in other processes on the same file handle a given
message one after the other, and the second sees the first's id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .inbox import Inbox, InboxError
from .message import Message

#: A handler: a plain function, run in the inbox's thread, given the message and the
#: connection whose transaction records it.
SQLiteHandler = Callable[[Message, sqlite3.Connection], None]

_T = TypeVar("_T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS statesaga_inbox ("
    " consumer TEXT NOT NULL, message_id TEXT NOT NULL, received_at REAL NOT NULL,"
    " PRIMARY KEY (consumer, message_id))",
    "CREATE INDEX IF NOT EXISTS statesaga_inbox_by_time ON statesaga_inbox (received_at)",
)


class SQLiteInbox(Inbox[SQLiteHandler]):
    """An inbox table, ``statesaga_inbox``, in a SQLite file (WAL mode).

    The handler runs in the inbox's own thread and gets its connection inside the transaction:
    write with it, and do not commit or roll back (the inbox does). Messages are handled one at
    a time per inbox.

    Args:
        path: The database file; it may be the one a ``SQLiteStore`` uses.
        consumer: The name ids are recorded under.
        busy_timeout: Seconds to wait for another connection's write lock.
        synchronous: ``FULL`` (a commit survives a power cut) or ``NORMAL``.

    Raises:
        InboxError: ``consumer`` is empty, or ``synchronous`` is neither value.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        consumer: str,
        busy_timeout: float = 30.0,
        synchronous: str = "FULL",
    ) -> None:
        if not consumer:
            raise InboxError("an inbox needs a consumer name, e.g. consumer='billing'")
        if synchronous not in ("FULL", "NORMAL"):
            raise InboxError(f"synchronous={synchronous!r} is not one of FULL, NORMAL")
        self.path = os.fspath(path)
        self.consumer = consumer
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteInbox({self.path!r}, consumer={self.consumer!r})"

    async def open(self) -> None:
        """Open the file and create the table if missing.

        Raises:
            InboxError: The file cannot be opened or written.
        """
        if self._executor is not None:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "statesaga-inbox")
        try:
            self._conn = await self._call(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    async def process(self, message: Message, handler: SQLiteHandler) -> bool:
        """Record ``message.id`` and run ``handler`` in one transaction; False if a duplicate."""
        return await self._call(self._process, message, handler)

    async def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` is recorded for this consumer."""
        return await self._call(self._seen, message_id)

    async def purge(self, *, older_than: float) -> int:
        """Forget this consumer's ids recorded more than ``older_than`` seconds ago."""
        return await self._call(self._purge, time.time() - older_than)

    # -- in the inbox's thread ------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            for statement in _SCHEMA:
                conn.execute(statement)
        except sqlite3.Error as error:
            raise InboxError(
                f"cannot open the inbox in SQLite file {self.path!r}: {error}"
            ) from None
        return conn

    def _process(self, message: Message, handler: SQLiteHandler) -> bool:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT OR IGNORE INTO statesaga_inbox (consumer, message_id, received_at)"
                " VALUES (?, ?, ?)",
                (self.consumer, message.id, time.time()),
            )
            if cur.rowcount == 0:
                conn.execute("ROLLBACK")
                return False
            # Typed to return None, but an ``async def`` passed anyway returns a coroutine.
            result = cast(Callable[..., object], handler)(message, conn)
            if inspect.isawaitable(result):
                # An ``async def`` handler did nothing yet: committing would record the id
                # without its writes, and the message would be lost.
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                raise InboxError(
                    f"the SQLite handler {handler!r} returned an awaitable for message "
                    f"{message.id!r}: a SQLite inbox runs plain functions (def, not async def) "
                    "in its own thread"
                )
            if not conn.in_transaction:
                raise InboxError(
                    f"the handler for message {message.id!r} committed or rolled back the "
                    "inbox's transaction: leave that to the inbox, or its id and your writes "
                    "are no longer one commit"
                )
            conn.execute("COMMIT")
            return True
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _seen(self, message_id: str) -> bool:
        row = (
            self._connection()
            .execute(
                "SELECT 1 FROM statesaga_inbox WHERE consumer = ? AND message_id = ?",
                (self.consumer, message_id),
            )
            .fetchone()
        )
        return row is not None

    def _purge(self, before: float) -> int:
        cur = self._connection().execute(
            "DELETE FROM statesaga_inbox WHERE consumer = ? AND received_at < ?",
            (self.consumer, before),
        )
        return cur.rowcount

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InboxError(f"{self!r} is not open: use 'async with inbox:' or await open()")
        return self._conn

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise InboxError(f"{self!r} is not open: use 'async with inbox:' or await open()")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
