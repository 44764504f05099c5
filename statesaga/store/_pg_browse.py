"""The PostgreSQL store's browsing reads (``RunBrowser``), on its read connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._browse_sql import count_sql, page_sql, sagas_sql
from ._rows import decoded_runs, outbox_from_row
from .browse import RunCursor, RunQuery, SagaSummary, summaries

if TYPE_CHECKING:
    from ._pg_connections import Connections
    from ._pg_sql import Conn, Queries
    from .base import OutboxRecord, RunRecord


class PostgresBrowsing:
    """``RunBrowser`` for ``PostgresStore`` (mixed into it: reads through its connections)."""

    _db: Connections
    _q: Queries

    async def page_runs(
        self, query: RunQuery, *, after: RunCursor | None = None, limit: int = 50
    ) -> list[RunRecord]:
        text, params = page_sql(self._q.select_runs, query, after, "%s")

        async def read(conn: Conn) -> list[RunRecord]:
            cur = await conn.execute(text, (*params, max(limit, 0)))
            return decoded_runs(await cur.fetchall(), "PostgreSQL")

        return await self._db.read(read)

    async def count_runs(self, query: RunQuery) -> dict[str, int]:
        text, params = count_sql(self._q.runs, query, "%s")

        async def read(conn: Conn) -> dict[str, int]:
            cur = await conn.execute(text, params)
            return {status: int(n) for status, n in await cur.fetchall()}

        return await self._db.read(read)

    async def saga_summaries(self) -> list[SagaSummary]:
        async def read(conn: Conn) -> list[SagaSummary]:
            cur = await conn.execute(sagas_sql(self._q.runs))
            return summaries(await cur.fetchall())

        return await self._db.read(read)

    async def outbox_of_run(self, run_id: str, limit: int = 100) -> list[OutboxRecord]:
        async def read(conn: Conn) -> list[OutboxRecord]:
            cur = await conn.execute(self._q.outbox_of_run, (run_id, max(limit, 0)))
            return [outbox_from_row(row) for row in await cur.fetchall()]

        return await self._db.read(read)
