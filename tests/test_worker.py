from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter

import pytest

from statesaga import Saga, SagaStatus, Step
from statesaga.context import Context
from statesaga.errors import BrokerError
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


async def test_a_run_finished_elsewhere_is_not_reported_as_recovered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listed run that another worker finished meanwhile is reported as such, not driven."""
    store = MemoryStore()
    finished = await Pair().execute(store=store, saga_id="gone")
    assert finished.status is SagaStatus.COMPLETED
    listings = iter([["gone"], []])

    async def stale_listing(now: float, limit: int = 100) -> list[str]:
        return next(listings)

    monkeypatch.setattr(store, "unfinished", stale_listing)
    (recovered,) = await Worker(store).run_once()
    assert recovered.finished_elsewhere
    assert recovered.result is None
    assert recovered.error is None


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


async def test_worker_waits_instead_of_spinning_on_a_run_it_cannot_drive() -> None:
    """A run whose saga cannot be imported does not make the loop spin."""
    store = MemoryStore()
    await stranded(store, 1)
    import attrs

    store._runs["s0"] = attrs.evolve(store._runs["s0"], saga_path="nowhere:Missing")
    worker = Worker(store, poll=0.2)
    rounds = 0
    original = worker.run_once

    async def counting() -> list[object]:
        nonlocal rounds
        rounds += 1
        return await original()  # type: ignore[return-value]

    worker.run_once = counting  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await task
    assert rounds <= 4


async def test_an_unexpected_error_in_one_run_spares_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A non-statesaga error while resuming one run is reported; the other run completes."""
    import statesaga.worker as worker_module

    store = MemoryStore()
    await stranded(store, 2)
    real_drive = worker_module.drive_stored

    async def flaky_drive(store_: object, run_id: str, **options: object) -> object:
        if run_id == "s0":
            raise RuntimeError("a bug in one saga")
        return await real_drive(store_, run_id, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(worker_module, "drive_stored", flaky_drive)
    recovered = {r.run_id: r for r in await Worker(store).run_once()}
    assert isinstance(recovered["s0"].error, RuntimeError)
    assert recovered["s1"].result is not None
    assert recovered["s1"].result.status is SagaStatus.COMPLETED
    assert done == Counter({"s1:b": 1})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://h:9092", "unknown broker URL scheme 'kafka'"),
        ("amqp://h/?shards=-1", "shards='-1'"),
    ],
)
def test_a_bad_broker_url_is_refused_when_the_worker_is_made(url: str, message: str) -> None:
    """A broker URL naming no usable broker raises BrokerError at once, not on each run."""
    with pytest.raises(BrokerError, match=re.escape(message)):
        Worker(MemoryStore(), broker=url)


def test_a_usable_broker_url_is_only_checked() -> None:
    """A usable broker URL is taken as it is, nothing listening behind it: runs connect."""
    url = "nats://127.0.0.1:1?shards=2"
    assert Worker(MemoryStore(), broker=url).broker == url


@pytest.mark.parametrize(("log_failures", "logged"), [(True, 1), (False, 0)])
async def test_log_failures_says_whether_the_worker_logs_why_a_run_was_not_driven(
    log_failures: bool, logged: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that cannot be driven is logged once by default, and not at all with
    log_failures=False (its caller reports it); it is reported in the outcome either way."""
    store = MemoryStore()
    await stranded(store, 1)
    import attrs

    store._runs["s0"] = attrs.evolve(store._runs["s0"], saga_path="nowhere:Missing")
    with caplog.at_level(logging.INFO, logger="statesaga.worker"):
        recovered = await Worker(store, log_failures=log_failures).run_once()
    assert [r.run_id for r in recovered if r.error is not None] == ["s0"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == logged
