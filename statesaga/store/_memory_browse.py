"""The memory store's browsing reads (``RunBrowser``), the reference for the SQL backends."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .browse import RunCursor, RunQuery, SagaSummary, summaries

if TYPE_CHECKING:
    from .base import OutboxRecord, RunRecord


class MemoryBrowsing:
    """``RunBrowser`` over the memory store's dicts (mixed into ``MemoryStore``)."""

    _runs: dict[str, RunRecord]
    _outbox: dict[str, OutboxRecord]

    async def page_runs(
        self, query: RunQuery, *, after: RunCursor | None = None, limit: int = 50
    ) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if query.matches(r) and (after is None or RunCursor.after(r) < after)
        ]
        runs.sort(key=RunCursor.after, reverse=True)
        return runs[: max(limit, 0)]

    async def count_runs(self, query: RunQuery) -> dict[str, int]:
        return dict(Counter(r.status for r in self._runs.values() if query.matches(r)))

    async def saga_summaries(self) -> list[SagaSummary]:
        rows = [(r.saga, r.saga_path, r.status, 1, r.created_at) for r in self._runs.values()]
        return summaries(rows)

    async def outbox_of_run(self, run_id: str, limit: int = 100) -> list[OutboxRecord]:
        mine = [r for r in self._outbox.values() if r.message.saga_id == run_id]
        return mine[: max(limit, 0)]
