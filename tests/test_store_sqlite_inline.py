"""A lone run's commits on SQLite: applied on the loop's thread, and grouped once runs overlap."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from test_store_sqlite import make_commit, make_run

from statesaga import Saga, SagaStatus, Step
from statesaga.store import StoreError, WriteConflict
from statesaga.store.sqlite import SQLiteStore


async def noop(ctx: Any) -> None:
    """A step that does nothing."""
    return None


class Chain(Saga):
    """Four no-op steps: five commits."""

    steps = tuple(Step(name, noop) for name in "abcd")


async def test_a_lone_run_commits_without_the_writer_thread(tmp_path: Path) -> None:
    """Every commit of a run alone is applied inline: none goes through the writer thread."""
    async with SQLiteStore(tmp_path / "runs.db") as store:
        result = await Chain().execute(store=store)
        assert result.status is SagaStatus.COMPLETED
        assert store.stats.inline == 5
        assert store.stats.batches == 5  # one transaction each, all of them inline
        snapshot = await store.load(result.saga_id)
        assert snapshot.run.status == "completed"
        assert len(snapshot.history) == 10


async def test_an_inline_commit_is_made_on_the_callers_thread(tmp_path: Path) -> None:
    """The transaction of an inline commit runs on the thread that called commit()."""
    seen: list[str] = []
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await store.create(make_run("r1"))
        writer = store._connection
        assert writer is not None
        writer.conn.set_trace_callback(lambda _: seen.append(threading.current_thread().name))
        await store.commit(make_commit("r1"))
        writer.conn.set_trace_callback(None)
    assert seen
    assert set(seen) == {threading.current_thread().name}


async def test_runs_in_flight_together_are_group_committed(tmp_path: Path) -> None:
    """50 concurrent runs share few transactions; at most the very first commit is inline."""
    async with SQLiteStore(tmp_path / "runs.db") as store:
        results = await asyncio.gather(*(Chain(i=i).execute(store=store) for i in range(50)))
        assert {r.status for r in results} == {SagaStatus.COMPLETED}
        assert store.stats.inline <= 1
        assert store.stats.writes == 250
        assert store.stats.batches <= 50
        assert store.stats.largest_batch >= 10


async def test_inline_limit_zero_sends_every_commit_to_the_writer(tmp_path: Path) -> None:
    """With inline_limit=0 a lone run's commits all go through the writer thread."""
    async with SQLiteStore(tmp_path / "runs.db", inline_limit=0) as store:
        assert (await Chain().execute(store=store)).status is SagaStatus.COMPLETED
        assert store.stats.inline == 0
        assert store.stats.batches == 5


async def test_inline_limit_counts_runs_in_flight(tmp_path: Path) -> None:
    """A commit is inline while at most inline_limit runs are in flight, else queued."""
    async with SQLiteStore(tmp_path / "runs.db", inline_limit=2) as store:
        for run_id in ("r1", "r2", "r3"):
            await store.create(make_run(run_id))
        await store.commit(make_commit("r1"))
        await store.commit(make_commit("r2"))
        assert store.stats.inline == 2
        await store.commit(make_commit("r3"))  # a third run in flight
        assert store.stats.inline == 2
        await store.release("r3", "w1")  # its driver let go of it
        await store.commit(make_commit("r1", version=1))
        assert store.stats.inline == 3


def test_a_negative_inline_limit_is_refused(tmp_path: Path) -> None:
    """inline_limit below 0 is a StoreError naming it."""
    with pytest.raises(StoreError, match="inline_limit"):
        SQLiteStore(tmp_path / "runs.db", inline_limit=-1)


async def test_a_stale_inline_commit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """An inline commit naming an old version raises WriteConflict and writes nothing."""
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await store.create(make_run("r1"))
        await store.commit(make_commit("r1"))
        before = await store.load("r1")
        with pytest.raises(WriteConflict):
            await store.commit(make_commit("r1", version=0))
        assert store.stats.inline == 2
        assert await store.load("r1") == before
        await store.commit(make_commit("r1", version=1))  # the connection is usable after
        assert (await store.load("r1")).run.version == 2


async def test_another_process_holding_the_lock_sends_the_commit_to_the_writer(
    tmp_path: Path,
) -> None:
    """When another connection holds the write lock, the commit waits in the writer thread
    (busy_timeout), not on the loop's thread, and is applied once the lock is let go."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path, busy_timeout=5.0) as store:
        await store.create(make_run("r1"))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        try:
            pending = store.commit(make_commit("r1"))
            assert store.stats.inline == 0
            ticks = 0
            while ticks < 5:  # the loop goes on while the writer thread waits
                await asyncio.sleep(0.01)
                ticks += 1
            assert not pending.done()
        finally:
            await loop.run_in_executor(None, other.execute, "ROLLBACK")
        await pending
        other.close()
        assert (await store.load("r1")).run.version == 1
        await store.commit(make_commit("r1", version=1))  # alone again: inline once more
        assert store.stats.inline == 1


async def test_a_failed_inline_write_is_undone_alone(tmp_path: Path) -> None:
    """An inline commit that creates a run that exists fails and leaves the store usable."""
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await store.create(make_run("r1"))
        duplicate = make_commit("r1")
        duplicate.create = make_run("r1")
        with pytest.raises(StoreError, match="already exists"):
            await store.commit(duplicate)
        assert store.stats.inline == 1
        assert (await store.load("r1")).run.version == 0
        await store.commit(make_commit("r1"))
        assert (await store.load("r1")).run.version == 1


async def test_a_closed_store_refuses_a_commit(tmp_path: Path) -> None:
    """After close(), a commit is refused as not open rather than applied inline."""
    store = SQLiteStore(tmp_path / "runs.db")
    async with store:
        await store.create(make_run("r1"))
    with pytest.raises(StoreError, match="not open"):
        await store.commit(make_commit("r1"))
