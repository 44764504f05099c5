"""The store's read queries for tools that browse runs: a page of runs after a cursor, counts
by status, the sagas a store has seen, and one run's outbox messages.

Pages are keyset pages on ``(created_at, run_id)``, newest first: the next page starts after
the last run of the previous one (``RunCursor``), so a page costs the same however deep it is
and runs committed meanwhile never shift a page. Every backend keeps an index on
``(created_at, run_id)`` for them, and one on the outbox's ``(run_id, seq)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

import attrs

from ..vocabulary import parse_name

if TYPE_CHECKING:
    from .base import OutboxRecord, RunRecord, RunSnapshot, StepRecord

#: Appended to a run id prefix for the range that holds every id starting with it: no id holds
#: a character above it (ids compare by code point in every backend).
_PREFIX_END = "\U0010ffff"


@attrs.frozen
class RunQuery:
    """Which runs a page or a count is about; every filter given must hold.

    Attributes:
        status: Only runs in this status.
        saga: Only runs of the saga of this name (matched exactly).
        since: Only runs created at or after this time (epoch seconds).
        until: Only runs created before this time (epoch seconds).
        run_id: Only runs whose id starts with this text (a whole id finds that run).
    """

    status: str | None = None
    saga: str | None = None
    since: float | None = None
    until: float | None = None
    run_id: str | None = None

    def matches(self, run: RunRecord) -> bool:
        """Whether ``run`` passes every filter (the reference for the SQL backends)."""
        return (
            (self.status is None or run.status == self.status)
            and (self.saga is None or run.saga == self.saga)
            and (self.since is None or run.created_at >= self.since)
            and (self.until is None or run.created_at < self.until)
            and (self.run_id is None or run.run_id.startswith(self.run_id))
        )

    def id_range(self) -> tuple[str, str] | None:
        """The ids from ``run_id`` up to (not including) the end of its prefix, if given."""
        return None if self.run_id is None else (self.run_id, self.run_id + _PREFIX_END)


class RunCursor(NamedTuple):
    """Where a page of runs ends: the next page holds the runs older than this one, ordered by
    creation time, then by run id (both descending)."""

    created_at: float
    run_id: str

    @classmethod
    def after(cls, run: RunRecord) -> RunCursor:
        """The cursor after ``run``."""
        return cls(run.created_at, run.run_id)


@attrs.frozen
class SagaSummary:
    """A saga seen in a store.

    Attributes:
        saga: Its name.
        saga_path: The ``module:QualifiedName`` its newest run was started with.
        counts: How many of its runs are in each status (statuses with none left out).
    """

    saga: str
    saga_path: str
    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        """How many runs it has."""
        return sum(self.counts.values())


class RunBrowser(Protocol):
    """The read queries of a store for tools that browse it (part of ``SagaStore``)."""

    async def page_runs(
        self, query: RunQuery, *, after: RunCursor | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Up to ``limit`` runs matching ``query``, newest first (by ``created_at``, then
        ``run_id``, both descending), starting after ``after`` (from the newest without)."""
        ...

    async def count_runs(self, query: RunQuery) -> dict[str, int]:
        """How many runs match ``query``, by status (statuses with none left out)."""
        ...

    async def saga_summaries(self) -> list[SagaSummary]:
        """Every saga name the store holds runs of, by name."""
        ...

    async def outbox_of_run(self, run_id: str, limit: int = 100) -> list[OutboxRecord]:
        """The messages run ``run_id`` emitted, oldest first (by ``seq``), at most ``limit``."""
        ...


def summaries(rows: list[tuple[str, str, str, int, float]]) -> list[SagaSummary]:
    """Rows ``(saga, saga_path, status, count, newest created_at)`` as summaries by name; a
    saga's path is that of its newest run."""
    paths: dict[str, tuple[float, str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for saga, path, status, count, newest in rows:
        if saga not in paths or newest > paths[saga][0]:
            paths[saga] = (newest, path)
        by_status = counts.setdefault(saga, {})
        by_status[status] = by_status.get(status, 0) + int(count)
    return [SagaSummary(name, paths[name][1], counts[name]) for name in sorted(counts)]


def steps_in_run_order(snapshot: RunSnapshot) -> list[StepRecord]:
    """A run's step records in the order the run first reached each (its history's order),
    rather than by name; a step the history does not name comes last."""
    first: dict[str, int] = {}
    for index, entry in enumerate(snapshot.history):
        step, _ = parse_name(entry.dest)
        if step is not None:
            first.setdefault(step, index)
    last = len(snapshot.history)
    return sorted(snapshot.steps.values(), key=lambda s: (first.get(s.step, last), s.step))
