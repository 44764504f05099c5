"""What the inspector's pages show, read from a store: filters and cursors parsed from a
request's parameters, a page of runs with its counts, one run in full, the sagas seen and
the outbox. No web framework here: the views turn these into pages and JSON."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from ..durable.drive import retriable
from ..store import OUTBOX_STATUSES, OutboxRecord, SagaStore
from ..store.base import RunRecord, RunSnapshot, StepRecord
from ..store.browse import RunCursor, RunQuery, SagaSummary, steps_in_run_order
from ..vocabulary import CANCEL_EVENT, WAITING_STATUS

#: Runs on one page.
PAGE_SIZE = 50
#: Messages of each status the outbox page looks at.
OUTBOX_LIMIT = 500


#: The parameter naming a saga (as ``RunQuery`` names the filter).
SAGA_PARAM = attrs.fields(RunQuery).saga.name


class _InvalidParameter(ValueError):
    """A request parameter that cannot be used; the message says which and what to give."""


@attrs.frozen
class RunFilters:
    """The runs page's filters and where its page starts."""

    query: RunQuery = attrs.field(factory=RunQuery)
    after: RunCursor | None = None

    def params(self, *, status: str | None = "", after: RunCursor | None = None) -> str:
        """The query string of these filters (``status`` replaced unless ``""``), paged from
        ``after``; for links."""
        from urllib.parse import urlencode

        q = self.query
        values = {
            "status": q.status if status == "" else status,
            SAGA_PARAM: q.saga,
            "since": None if q.since is None else time_text(q.since),
            "until": None if q.until is None else time_text(q.until),
            "run": q.run_id,
            "after": None if after is None else cursor_text(after),
        }
        return urlencode({k: v for k, v in values.items() if v})


def parse_filters(params: Mapping[str, str]) -> RunFilters:
    """The filters of ``params`` (``status``, ``saga``, ``since``, ``until``, ``run``,
    ``after``); empty ones are no filter.

    Raises:
        _InvalidParameter: A status that is none of ``STATUSES``, a time or cursor that cannot
            be read.
    """
    from ..cli.runs import STATUSES  # the command line's words, imported when first asked

    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise _InvalidParameter(f"status {status!r} is not one of {', '.join(STATUSES)}")
    since, until = (_time(params.get(name, ""), name) for name in ("since", "until"))
    after = params.get("after") or None
    return RunFilters(
        RunQuery(
            status=status,
            saga=params.get(SAGA_PARAM) or None,
            since=since,
            until=until,
            run_id=params.get("run", "").strip() or None,
        ),
        None if after is None else parse_cursor(after),
    )


#: A time of day, then a space where a UTC offset's ``+`` was: a ``+`` typed in a URL's query
#: arrives as a space (``?since=2024-05-01T12:00+01:00``).
_SPACED_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def _time(text: str, name: str) -> float | None:
    text = _SPACED_OFFSET.sub(r"\1+\2", text.strip())
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise _InvalidParameter(
                f"{name} {text!r} is not a time: give an ISO 8601 date and time "
                "(2024-05-01T12:00, UTC unless it names its offset) or epoch seconds"
            ) from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise _InvalidParameter(f"{name} {text!r} is not a time: give a finite number")
    return value


def time_text(epoch: float) -> str:
    """``epoch`` as the ISO 8601 UTC text the time filters read back (to the second)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def cursor_text(cursor: RunCursor) -> str:
    """``cursor`` as a request parameter (the time's ``repr`` reads back exactly)."""
    return f"{cursor.created_at!r}~{cursor.run_id}"


def parse_cursor(text: str) -> RunCursor:
    """The cursor ``cursor_text`` wrote."""
    created, sep, run_id = text.partition("~")
    try:
        value = float(created)
    except ValueError:
        value = math.nan
    if not sep or not math.isfinite(value):
        raise _InvalidParameter(
            f"page cursor {text!r} is not one this inspector wrote: start again from the first page"
        )
    return RunCursor(value, run_id)


@attrs.frozen
class RunsPage:
    """One page of runs: the runs, the cursor of the next page (``None``: the last), the
    counts by status of every run the filters other than status match, and the sagas of
    unfinished runs that cannot be imported here, with why."""

    runs: Sequence[RunRecord]
    next: RunCursor | None
    counts: Mapping[str, int]
    problems: Mapping[str, str]

    @property
    def total(self) -> int:
        """Runs matching the filters other than status."""
        return sum(self.counts.values())


async def runs_page(store: SagaStore, filters: RunFilters, limit: int = PAGE_SIZE) -> RunsPage:
    """The page of runs ``filters`` asks for."""
    runs = await store.page_runs(filters.query, after=filters.after, limit=limit + 1)
    counts = await store.count_runs(attrs.evolve(filters.query, status=None))
    more = len(runs) > limit
    runs = runs[:limit]
    following = RunCursor.after(runs[-1]) if more else None
    from ..cli.runs import _import_problems

    return RunsPage(runs, following, counts, _import_problems(runs))


def waits_text(run: RunRecord) -> str:
    """What a waiting run waits for and until when (as ``runs list`` shows it)."""
    from ..cli.runs import _waits_text

    return _waits_text(run) if run.status == WAITING_STATUS else ""


@attrs.frozen
class RunDetail:
    """One run in full, with its outbox messages and how a failed run can go on, as it was
    read at ``now``."""

    snapshot: RunSnapshot
    outbox: Sequence[OutboxRecord]
    retriable: str | None
    now: float = attrs.field(factory=time.time)

    @property
    def run(self) -> RunRecord:
        return self.snapshot.run

    @property
    def due(self) -> bool:
        """Whether the run waits no longer: a signal came, its time is up, or it was asked to
        stop; it goes on when something drives it."""
        run = self.run
        return run.status == WAITING_STATUS and run.wake_at is not None and run.wake_at <= self.now

    @property
    def cancel_requested(self) -> bool:
        """Whether the unfinished run was asked to stop (it is compensated when next driven)."""
        return not self.run.finished and CANCEL_EVENT in self.snapshot.signals

    @property
    def open_waits(self) -> list[str]:
        """The events the run waits for that no signal has come for yet."""
        from ..cli._common import waits_of

        return [event for event in waits_of(self.run) if event not in self.snapshot.signals]

    @property
    def lease_expired(self) -> bool:
        """Whether the run's lease ran out: any worker may take the run over."""
        return self.run.lease_owner is not None and (self.run.lease_expires or 0.0) <= self.now

    @property
    def steps(self) -> list[StepRecord]:
        """The steps in the order the run reached them."""
        return steps_in_run_order(self.snapshot)


async def run_detail(store: SagaStore, run_id: str) -> RunDetail:
    """Run ``run_id`` (``RunNotFound`` if there is none)."""
    snapshot = await store.load(run_id)
    outbox = await store.outbox_of_run(run_id, limit=OUTBOX_LIMIT)
    return RunDetail(snapshot, outbox, retriable(snapshot))


async def sagas(store: SagaStore) -> list[SagaSummary]:
    """Every saga the store has runs of."""
    return await store.saga_summaries()


@attrs.frozen
class OutboxGroup:
    """The messages of one topic and key in one status, newest first, and the pending ones
    held back behind a dead message of their key: message id to the dead one's."""

    status: str
    topic: str
    key: str | None
    messages: Sequence[OutboxRecord]
    held: Mapping[str, str] = attrs.field(factory=dict)


async def outbox_groups(store: SagaStore) -> tuple[list[OutboxGroup], dict[str, bool]]:
    """Pending and dead messages grouped by status, topic and key, and for each status
    whether there were more than ``OUTBOX_LIMIT`` (only the newest are grouped then)."""
    groups: dict[tuple[str, str, str | None], list[OutboxRecord]] = {}
    cut: dict[str, bool] = {}
    listed: dict[str, list[OutboxRecord]] = {}
    for status in (OUTBOX_STATUSES[0], OUTBOX_STATUSES[-1]):  # pending, dead
        records = await store.outbox_list(status=status, limit=OUTBOX_LIMIT + 1)
        cut[status] = len(records) > OUTBOX_LIMIT
        listed[status] = records[:OUTBOX_LIMIT]
        for record in listed[status]:
            key = (status, record.message.topic, record.message.key)
            groups.setdefault(key, []).append(record)
    held = held_behind(listed[OUTBOX_STATUSES[0]], listed[OUTBOX_STATUSES[-1]])
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or ""))
    return [
        OutboxGroup(s, t, k, m, {r.id: held[r.id] for r in m if r.id in held})
        for (s, t, k), m in ordered
    ], cut


def held_behind(pending: Sequence[OutboxRecord], dead: Sequence[OutboxRecord]) -> dict[str, str]:
    """The ``pending`` messages that wait behind one of ``dead``: an earlier message of their
    key (whatever its topic) that a relay gave up on holds every later one of the key until
    it is retried or purged. Message id to the id of the first dead message before it."""
    first: dict[str, OutboxRecord] = {}
    for record in sorted(dead, key=lambda r: r.seq, reverse=True):
        if record.message.key is not None:
            first[record.message.key] = record  # the earliest is written last
    held: dict[str, str] = {}
    for record in pending:
        blocker = None if record.message.key is None else first.get(record.message.key)
        if blocker is not None and blocker.seq < record.seq:
            held[record.id] = blocker.id
    return held


def pretty(data: Any) -> str:
    """``data`` as indented JSON, keys sorted (for input, results and payloads)."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# -- the JSON API's forms ------------------------------------------------------------------


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run as the API gives it (its lease and wake time included)."""
    return attrs.asdict(run)


def detail_json(detail: RunDetail) -> dict[str, Any]:
    """One run in full as the API gives it."""
    snap = detail.snapshot
    return {
        "run": run_json(snap.run),
        "steps": [attrs.asdict(step) for step in detail.steps],
        "history": [t._asdict() for t in snap.history],
        "signals": [attrs.asdict(s) for s in snap.signals.values()],
        "outbox": [outbox_json(r) for r in detail.outbox],
        "retriable": detail.retriable,
    }


def outbox_json(record: OutboxRecord) -> dict[str, Any]:
    """An outbox message as the API gives it."""
    data = attrs.asdict(record, recurse=False)
    data["message"] = attrs.asdict(record.message)
    return data
