from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from statesaga import Saga, SagaStatus, Step
from statesaga.context import Context
from statesaga.store import MemoryStore
from statesaga.worker import Worker, resume_all

done: Counter[str] = Counter()


async def act(ctx: Context) -> None:
    done[f"{ctx.saga_id}:{ctx.step}"] += 1


class Pair(Saga):
    steps = (Step("a", act), Step("b", act))


@pytest.fixture(autouse=True)
def _clear() -> None:
    done.clear()


async def stranded(store: MemoryStore, count: int, *, owner: str = "dead-worker") -> list[str]:
    """Runs left unfinished by a worker that died, its leases long expired."""
    ids = []
    for i in range(count):
        run_id = f"s{i}"
        result = await Pair().execute(store=store, saga_id=run_id)
        assert result.status is SagaStatus.COMPLETED
        ids.append(run_id)
    import attrs

    for run_id in ids:  # rewind each to "a succeeded, b running" under a dead owner's lease
        run = store._runs[run_id]
        store._runs[run_id] = attrs.evolve(
            run,
            status="running",
            config={"saga": "b.running"},
            lease_owner=owner,
            lease_expires=1.0,
        )
        store._history[run_id] = store._history[run_id][:4]  # up to b.start
        store._steps[run_id]["b"] = attrs.evolve(store._steps[run_id]["b"], phase="running")
    done.clear()
    return ids


async def test_run_once_finishes_every_stranded_run() -> None:
    """A worker drives every unfinished, unleased run to its end, running only what is owed."""
    store = MemoryStore()
    ids = await stranded(store, 5)
    recovered = await Worker(store).run_once()
    assert sorted(r.run_id for r in recovered) == ids
    assert all(r.result is not None and r.result.status is SagaStatus.COMPLETED for r in recovered)
    assert done == Counter({f"{i}:b": 1 for i in ids})
    assert await store.unfinished(now=2e9) == []


async def test_two_workers_never_drive_the_same_run_twice() -> None:
    """Workers sharing a store split the runs; each step runs once."""
    store = MemoryStore()
    ids = await stranded(store, 20)
    first, second = await asyncio.gather(Worker(store).run_once(), Worker(store).run_once())
    driven = [r.run_id for r in first + second if r.result is not None]
    assert sorted(driven) == sorted(ids)
    assert all(count == 1 for count in done.values())


async def test_live_lease_is_left_alone() -> None:
    """A run whose lease is still live belongs to its worker: not picked up."""
    store = MemoryStore()
    await stranded(store, 1, owner="alive")
    import attrs

    store._runs["s0"] = attrs.evolve(store._runs["s0"], lease_expires=4e9)
    assert await resume_all(store) == []
    assert done == Counter()


async def test_worker_loop_stops_when_asked() -> None:
    """run() keeps polling until its stop event is set."""
    store = MemoryStore()
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(store, poll=0.01).run(stop))
    await stranded(store, 2)
    for _ in range(500):
        if not await store.unfinished(now=2e9):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert await store.unfinished(now=2e9) == []


def test_concurrency_must_be_positive() -> None:
    """A worker needs at least one slot."""
    with pytest.raises(ValueError, match="concurrency"):
        Worker(MemoryStore(), concurrency=0)
