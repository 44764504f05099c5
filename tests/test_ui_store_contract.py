"""The store contract's browsing reads (``RunBrowser``): keyset pages, counts, sagas and one
run's outbox, the same on every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import attrs
import test_store_contract
from test_store_contract import make_commit, make_run, message

from statesaga.store import SagaStore
from statesaga.store.base import RunRecord
from statesaga.store.browse import RunCursor, RunQuery, SagaSummary
from statesaga.store.sqlite import SQLiteStore

#: Every backend, open and empty (the contract suite's fixture).
store = test_store_contract.store


def ids(runs: list[RunRecord]) -> list[str]:
    return [r.run_id for r in runs]


async def fill(store: SagaStore) -> None:
    """Runs a..f: two share a creation time (ties go by run id), two sagas, three statuses."""
    for run_id, created, status, saga in (
        ("a", 1.0, "running", "Order"),
        ("b", 2.0, "completed", "Order"),
        ("c", 3.0, "waiting", "Refund"),
        ("d", 3.0, "completed", "Refund"),
        ("e", 4.0, "failed", "Order"),
        ("f", 5.0, "completed", "Order"),
    ):
        path = f"shop:{saga}" if run_id != "f" else f"shop.v2:{saga}"
        await store.create(
            make_run(run_id, created_at=created, status=status, saga=saga, saga_path=path)
        )


async def test_pages_walk_every_run_newest_first_without_gaps(store: SagaStore) -> None:
    """Keyset pages cover every run once, newest first, equal times ordered by run id."""
    await fill(store)
    seen: list[str] = []
    after = None
    while True:
        page = await store.page_runs(RunQuery(), after=after, limit=2)
        if not page:
            break
        seen += ids(page)
        after = RunCursor.after(page[-1])
    assert seen == ["f", "e", "d", "c", "b", "a"]
    assert await store.page_runs(RunQuery(), limit=0) == []
    assert (await store.page_runs(RunQuery(), limit=1))[0] == (await store.load("f")).run


async def test_pages_filter_by_status_saga_time_and_id_prefix(store: SagaStore) -> None:
    """Every filter holds, alone and together, with a cursor too."""
    await fill(store)

    async def page(**filters: object) -> list[str]:
        after = filters.pop("after", None)
        query = RunQuery(**filters)  # type: ignore[arg-type]
        return ids(await store.page_runs(query, after=after, limit=10))  # type: ignore[arg-type]

    assert await page(status="completed") == ["f", "d", "b"]
    assert await page(saga="Refund") == ["d", "c"]
    assert await page(status="completed", saga="Order") == ["f", "b"]
    assert await page(since=3.0) == ["f", "e", "d", "c"]
    assert await page(until=3.0) == ["b", "a"]
    assert await page(since=2.0, until=4.0) == ["d", "c", "b"]
    assert await page(run_id="c") == ["c"]
    assert await page(run_id="nope") == []
    assert await page(status="completed", after=RunCursor(3.0, "d")) == ["b"]
    assert await page(after=RunCursor(3.0, "d")) == ["c", "b", "a"]


async def test_run_id_prefix_finds_ids_starting_with_it(store: SagaStore) -> None:
    """A prefix finds exactly the ids that start with it, odd characters included."""
    for run_id in ("ord-1", "ord-10", "ord-2", "or", "ord%", "ord_x", "x-ord-1"):
        await store.create(make_run(run_id))
    assert sorted(ids(await store.page_runs(RunQuery(run_id="ord-1")))) == ["ord-1", "ord-10"]
    assert sorted(ids(await store.page_runs(RunQuery(run_id="ord")))) == [
        "ord%",
        "ord-1",
        "ord-10",
        "ord-2",
        "ord_x",
    ]
    assert ids(await store.page_runs(RunQuery(run_id="ord%"))) == ["ord%"]


async def test_counts_by_status_honour_the_filters(store: SagaStore) -> None:
    """count_runs counts matching runs by status, leaving out statuses with none."""
    await fill(store)
    assert await store.count_runs(RunQuery()) == {
        "running": 1,
        "completed": 3,
        "waiting": 1,
        "failed": 1,
    }
    assert await store.count_runs(RunQuery(saga="Refund")) == {"waiting": 1, "completed": 1}
    assert await store.count_runs(RunQuery(since=4.0, status="completed")) == {"completed": 1}
    assert await store.count_runs(RunQuery(saga="None")) == {}


async def test_saga_summaries_name_each_saga_with_its_newest_path(store: SagaStore) -> None:
    """Every saga seen, by name, with the path of its newest run and its runs by status."""
    assert await store.saga_summaries() == []
    await fill(store)
    assert await store.saga_summaries() == [
        SagaSummary("Order", "shop.v2:Order", {"running": 1, "completed": 2, "failed": 1}),
        SagaSummary("Refund", "shop:Refund", {"waiting": 1, "completed": 1}),
    ]


async def test_outbox_of_run_lists_its_messages_oldest_first(store: SagaStore) -> None:
    """outbox_of_run gives one run's messages in seq order, up to the limit."""
    sent = [message(1), message(2, key=None), message(3)]
    await store.commit(attrs.evolve(make_commit(messages=sent), create=make_run()))
    await store.create(make_run("r2"))
    assert [r.message for r in await store.outbox_of_run("r1")] == sent
    assert [r.id for r in await store.outbox_of_run("r1", limit=2)] == [sent[0].id, sent[1].id]
    assert await store.outbox_of_run("r2") == []
    assert await store.outbox_of_run("unknown") == []


async def test_sqlite_pages_use_the_creation_index(tmp_path: Path) -> None:
    """A SQLite page walks the (created_at, run_id) index instead of sorting every run."""
    async with SQLiteStore(tmp_path / "plan.db") as db:
        await db.create(make_run("a"))
        conn = db._reader
        assert conn is not None
        from statesaga.store._browse_sql import page_sql
        from statesaga.store._sqlite_browse import _SELECT

        text, params = page_sql(_SELECT, RunQuery(), RunCursor(5.0, "x"), "?")
        plan = " ".join(
            str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + text, (*params, 5))
        )
        assert "statesaga_runs_by_created" in plan
        assert "TEMP B-TREE" not in plan
