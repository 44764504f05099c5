"""The SQLite store's browsing reads (``RunBrowser``), on its reader connection."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._browse_sql import count_sql, page_sql, sagas_sql
from ._rows import OUTBOX_COLUMNS, decoded_runs, outbox_from_row
from .browse import RunCursor, RunQuery, SagaSummary, summaries

if TYPE_CHECKING:
    from .base import OutboxRecord, RunRecord

_A = TypeVar("_A")
_R = TypeVar("_R")

_RUNS = "statesaga_runs"
_SELECT = (
    "SELECT run_id, saga, saga_path, fingerprint, input, status, config, version, lease_owner,"
    f" lease_expires, created_at, updated_at, failed_step, error, wake_at FROM {_RUNS}"
)
_OUTBOX_OF_RUN = (
    f"SELECT {OUTBOX_COLUMNS} FROM statesaga_outbox WHERE run_id = ? ORDER BY seq LIMIT ?"
)


class SQLiteBrowsing:
    """``RunBrowser`` for ``SQLiteStore`` (mixed into it: reads through its ``_read``)."""

    if TYPE_CHECKING:

        def _read(self, operation: Callable[[sqlite3.Connection, _A], _R], arg: _A) -> _R: ...

    async def page_runs(
        self, query: RunQuery, *, after: RunCursor | None = None, limit: int = 50
    ) -> list[RunRecord]:
        text, params = page_sql(_SELECT, query, after, "?")
        return await asyncio.to_thread(self._read, _page, (text, [*params, max(limit, 0)]))

    async def count_runs(self, query: RunQuery) -> dict[str, int]:
        return await asyncio.to_thread(self._read, _counts, count_sql(_RUNS, query, "?"))

    async def saga_summaries(self) -> list[SagaSummary]:
        return await asyncio.to_thread(self._read, _sagas, None)

    async def outbox_of_run(self, run_id: str, limit: int = 100) -> list[OutboxRecord]:
        return await asyncio.to_thread(self._read, _outbox, (run_id, max(limit, 0)))


def _page(conn: sqlite3.Connection, arg: tuple[str, list[Any]]) -> list[RunRecord]:
    return decoded_runs(conn.execute(*arg).fetchall(), "SQLite")


def _counts(conn: sqlite3.Connection, arg: tuple[str, list[Any]]) -> dict[str, int]:
    return {status: int(n) for status, n in conn.execute(*arg)}


def _sagas(conn: sqlite3.Connection, _: None) -> list[SagaSummary]:
    return summaries(conn.execute(sagas_sql(_RUNS)).fetchall())


def _outbox(conn: sqlite3.Connection, arg: tuple[str, int]) -> list[OutboxRecord]:
    return [outbox_from_row(row) for row in conn.execute(_OUTBOX_OF_RUN, arg)]
