"""Lease keepers: renew the leases of the runs a process drives, stopped by their owner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from statesaga.durable.leases import LeaseKeeper, owner_id
from statesaga.store import MemoryStore, RunRecord


class Counting(MemoryStore):
    """A memory store that counts lease renewals and closes."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0
        self.closes = 0

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        self.renewals += 1
        return await super().renew(run_ids, owner, expires)

    async def close(self) -> None:
        self.closes += 1


async def leased_run(store: MemoryStore, run_id: str) -> None:
    now = time.time()
    await store.create(
        RunRecord(
            run_id=run_id,
            saga="S",
            saga_path="m:S",
            fingerprint="f",
            input={},
            status="running",
            config={},
            version=0,
            lease_owner=owner_id(),
            lease_expires=now + 1,
            created_at=now,
            updated_at=now,
        )
    )


async def test_a_keeper_renews_the_leases_it_holds() -> None:
    """While it holds a run, the keeper pushes its lease forward every third of its length."""
    store = Counting()
    await leased_run(store, "r1")
    async with LeaseKeeper(store, seconds=0.3) as keeper:
        keeper.hold("r1")
        await asyncio.sleep(0.25)
    assert store.renewals >= 1
    assert (store._runs["r1"].lease_expires or 0.0) > time.time()


async def test_a_keeper_stops_when_its_owner_closes_it() -> None:
    """Closing the keeper (its owner's ``async with`` ending) stops its task, even with runs
    held, and it takes no run after; the store is left open."""
    store = Counting()
    async with LeaseKeeper(store, seconds=30) as keeper:
        keeper.hold("r1")
        task = keeper._task
        assert keeper.running
    assert task is not None
    assert task.done()
    assert not keeper.running
    assert keeper.held == {}
    with pytest.raises(RuntimeError, match="closed"):
        keeper.hold("r2")
    assert store.closes == 0


async def test_dropping_the_last_run_leaves_no_task_running() -> None:
    """The renewing task ends as soon as the keeper holds no run, not at its next round."""
    keeper = LeaseKeeper(MemoryStore(), seconds=30)
    keeper.hold("r1")
    keeper.hold("r1")
    keeper.hold("r2")
    task = keeper._task
    keeper.drop("r1")
    keeper.drop("r2")
    assert keeper.running  # r1 is still held once
    keeper.drop("r1")
    await asyncio.sleep(0)
    assert task is not None
    assert task.done()
    assert not keeper.running


@pytest.mark.parametrize("text", ["abc", "", "0", "-1", "inf", "nan"])
def test_a_lease_of_no_time_is_refused_with_what_to_give(text: str) -> None:
    """``STATESAGA_LEASE_SECONDS`` must be a finite number of seconds above 0: a lease of no
    time would let two workers drive one run at once."""
    from statesaga.durable.leases import _lease_seconds

    with pytest.raises(ValueError, match=r"STATESAGA_LEASE_SECONDS=.*above 0.*Unset it"):
        _lease_seconds(text)


def test_a_lease_of_some_seconds_is_taken() -> None:
    from statesaga.durable.leases import _lease_seconds

    assert (_lease_seconds("30"), _lease_seconds("0.5")) == (30.0, 0.5)
