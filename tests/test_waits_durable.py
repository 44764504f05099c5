"""Waits of stored runs, on SQLite and real PostgreSQL, by URL as users pass them: a waiting run
is rows, signals come from anywhere, timeouts fire, workers and the starting process drive on."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import statesaga
from statesaga import Saga, SagaStatus, SignalRefused, Step, Wait, WaitTimeoutError
from statesaga.context import Context
from statesaga.durable import follow, open_store, shutdown
from statesaga.errors import RunNotFound, StoreError
from statesaga.store.base import Commit, SagaStore, SignalRecord
from statesaga.worker import Worker

CALLS: list[str] = []


async def reserve(ctx: Context) -> dict[str, Any]:
    CALLS.append(f"reserve:{ctx.idempotency_key}")
    return {"held": True}


async def release(ctx: Context) -> None:
    CALLS.append("release")


async def ship(ctx: Context) -> dict[str, Any]:
    CALLS.append("ship")
    return {"paid": ctx.results.get("paid", {}).get("amount")}


class Booking(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=3600),
        Step("ship", ship),
    )


class Short(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=0.3),
        Step("ship", ship),
    )


class Sleep(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=0.3, on_timeout="continue"),
    )


class DagBooking(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid"),
        Wait("approved"),
        Step("ship", ship, depends_on=["reserve", "paid", "approved"]),
    )


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.clear()


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL of each durable backend, as users write it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sagas.db'}"
    else:
        from test_store_postgres import URL, drop_schema, require_server

        require_server()
        schema = f"waits_{uuid.uuid4().hex[:10]}"
        yield f"{URL}{'&' if '?' in URL else '?'}schema={schema}"
        await shutdown()
        drop_schema(schema)
        return
    await shutdown()


async def _until(store: SagaStore, run_id: str, status: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while (await store.load(run_id)).run.status != status:
        assert time.monotonic() < deadline, f"run {run_id} never became {status}"
        await asyncio.sleep(0.01)


async def test_a_waiting_run_is_rows_until_its_signal(url: str) -> None:
    run = await Booking(order="A-1").start(store=url)
    store = await open_store(url)
    await _until(store, run.saga_id, "waiting")
    # The lease is let go by the park's own commit: nobody holds a run seen waiting.
    record = (await store.load(run.saga_id)).run
    assert (record.lease_owner, record.lease_expires) == (None, None)
    assert record.wake_at is not None
    assert record.wake_at == pytest.approx(time.time() + 3600, abs=30)
    assert [r.run_id for r in await store.list_runs(status="waiting")] == [run.saga_id]
    assert await store.unfinished(time.time()) == []  # asleep: no worker looks at it
    assert await run.signal("paid", {"amount": 42}, signal_id="pay-1") is True
    result = await asyncio.wait_for(run.result(), 10)
    assert result.status == SagaStatus.COMPLETED
    assert result.results["ship"] == {"paid": 42}
    expected = [f"reserve:{run.saga_id}:reserve", "ship"]
    assert expected == CALLS


async def test_a_signal_from_anywhere_before_the_wait_is_kept(url: str) -> None:
    started = asyncio.Event()

    async def slow(ctx: Context) -> None:
        started.set()
        await asyncio.sleep(0.2)

    class Slow(Saga):
        steps = (Step("first", slow), Wait("paid"), Step("ship", ship))

    run = await Slow().start(store=url)
    await started.wait()
    assert await statesaga.signal(url, run.saga_id, "paid", {"amount": 7}, saga=Slow)
    result = await asyncio.wait_for(run.result(), 10)
    assert result.status == SagaStatus.COMPLETED
    assert result.results["paid"] == {"amount": 7}


async def test_signals_are_accepted_once_and_refused_with_reasons(url: str) -> None:
    run = await Booking().start(store=url)
    rid = run.saga_id
    store = await open_store(url)
    await _until(store, rid, "waiting")
    await _abandon(run)  # nobody drives it on while the signals are tried
    assert await statesaga.signal(url, rid, "paid", {"amount": 1}, signal_id="s1") is True
    assert await statesaga.signal(url, rid, "paid", {"amount": 1}, signal_id="s1") is False
    with pytest.raises(SignalRefused, match="s1"):
        await statesaga.signal(url, rid, "paid", {"amount": 2}, signal_id="s1")
    with pytest.raises(SignalRefused, match="already signalled") as second:
        await statesaga.signal(url, rid, "paid", {"amount": 3}, signal_id="s2")
    assert rid in str(second.value)
    with pytest.raises(SignalRefused, match="has no wait for it"):
        await statesaga.signal(url, rid, "shipped")
    with pytest.raises(RunNotFound):
        await statesaga.signal(url, "no-such-run", "paid")
    with pytest.raises(StoreError, match="signal payload"):
        await statesaga.signal(url, rid, "paid", {"x": float("nan")}, signal_id="s3")
    result = await asyncio.wait_for(follow(store, rid, saga=Booking, clock=None, broker=None), 10)
    assert result.results["paid"] == {"amount": 1}
    with pytest.raises(SignalRefused, match="completed"):
        await statesaga.signal(url, rid, "paid", signal_id="s4")


async def test_a_wait_times_out_and_the_run_is_compensated(url: str) -> None:
    run = await Short().start(store=url)
    result = await asyncio.wait_for(run.result(), 10)
    assert result.status == SagaStatus.COMPENSATED
    assert result.failed_step == "paid"
    assert "waited 0.3 s for 'paid'" in str(result.error)
    assert CALLS[-1] == "release"
    with pytest.raises(SignalRefused, match="the run has finished: it is compensated"):
        await run.signal("paid")
    from statesaga.durable.waiting import request_cancel

    # Said as what was asked (a cancellation), not as the signal that carries it.
    with pytest.raises(SignalRefused, match=r"^cancellation of run .* refused: the run has fin"):
        await request_cancel(url, run.saga_id)


async def test_execute_waits_through_a_durable_sleep(url: str) -> None:
    began = time.monotonic()
    result = await asyncio.wait_for(Sleep().execute(store=url), 10)
    assert result.status == SagaStatus.COMPLETED
    assert result.results["paid"] == {}
    assert time.monotonic() - began >= 0.3


async def test_cancelling_a_waiting_run_compensates_it(url: str) -> None:
    run = await Booking().start(store=url)
    store = await open_store(url)
    await _until(store, run.saga_id, "waiting")
    result = await asyncio.wait_for(run.cancel(), 10)
    assert result.status == SagaStatus.COMPENSATED
    assert result.failed_step == "paid"
    assert CALLS[-1] == "release"


async def _abandon(run: statesaga.RunHandle) -> None:
    """Stop following a waiting run, as if the process that started it had gone."""
    task = run._task  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_worker_drives_on_a_signalled_run_nobody_follows(url: str) -> None:
    run = await Booking().start(store=url)
    store = await open_store(url)
    await _until(store, run.saga_id, "waiting")
    await _abandon(run)
    worker = Worker(url, sagas={(await store.load(run.saga_id)).run.saga_path: Booking})
    assert await worker.run_once() == []  # nothing is due
    await statesaga.signal(url, run.saga_id, "paid", {"amount": 5}, saga=Booking)
    done = await worker.run_once()
    assert [d.result.status for d in done if d.result] == [SagaStatus.COMPLETED]
    assert CALLS[-1] == "ship"


async def test_a_worker_fires_a_due_timeout(url: str) -> None:
    run = await Short().start(store=url)
    store = await open_store(url)
    await _until(store, run.saga_id, "waiting")
    await _abandon(run)
    worker = Worker(url, sagas={(await store.load(run.saga_id)).run.saga_path: Short})
    await asyncio.sleep(0.35)
    done = await worker.run_once()
    assert [d.result.status for d in done if d.result] == [SagaStatus.COMPENSATED]
    result = done[0].result
    assert result is not None
    assert isinstance(result.error, WaitTimeoutError) or "waited" in str(result.error)


async def test_a_dag_parks_once_every_branch_waits(url: str) -> None:
    run = await DagBooking().start(store=url)
    store = await open_store(url)
    await _until(store, run.saga_id, "waiting")
    snapshot = await store.load(run.saga_id)
    assert snapshot.steps["reserve"].phase == "succeeded"
    assert {snapshot.steps["paid"].phase, snapshot.steps["approved"].phase} == {"waiting"}
    await run.signal("approved")
    await asyncio.sleep(0.3)
    assert (await store.load(run.saga_id)).run.status == "waiting"  # still waits for paid
    await run.signal("paid", {"amount": 1})
    result = await asyncio.wait_for(run.result(), 10)
    assert result.status == SagaStatus.COMPLETED


class _SignalFirst:
    """A store wrapper that commits a signal just before the commit that would park the run:
    the park must lose, and the run take the signal."""

    def __init__(self, store: SagaStore) -> None:
        self._store = store
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def commit(self, commit: Commit) -> Any:
        if commit.unless_signals and not self.raced:
            self.raced = True
            await self._store.add_signal(
                SignalRecord(commit.run_id, "racer", "paid", {"amount": 9}, time.time())
            )
        return await self._store.commit(commit)


async def test_a_signal_committed_before_the_park_wins(url: str) -> None:
    store = await open_store(url)
    racing = _SignalFirst(store)
    result = await asyncio.wait_for(Booking().execute(store=racing), 10)  # type: ignore[arg-type]
    assert racing.raced
    assert result.status == SagaStatus.COMPLETED
    assert result.results["paid"] == {"amount": 9}
    assert CALLS.count(f"reserve:{result.saga_id}:reserve") == 1


class AfterPivot(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", reserve, pivot=True),
        Wait("paid", timeout=0.2),
        Step("ship", ship),
    )


async def test_a_wait_past_the_pivot_halts_and_a_person_pushes_it_forward(url: str) -> None:
    result = await asyncio.wait_for(AfterPivot().execute(store=url), 10)
    assert result.status == SagaStatus.FAILED
    assert result.failed_step == "paid"
    assert "release" not in CALLS
    # A person resumes it: the wait waits again, its timeout counted afresh.
    again = asyncio.create_task(statesaga.resume(url, result.saga_id, saga=AfterPivot))
    store = await open_store(url)
    await _until(store, result.saga_id, "waiting")
    await asyncio.gather(again, return_exceptions=True)  # it stopped at the wait
    await statesaga.signal(url, result.saga_id, "paid", {"amount": 3}, saga=AfterPivot)
    done = await asyncio.wait_for(
        follow(store, result.saga_id, saga=AfterPivot, clock=None, broker=None), 10
    )
    assert done.status == SagaStatus.COMPLETED
    assert done.results["ship"] == {"paid": 3}


EVALUATED: list[str] = []


def small(ctx: Context) -> bool:
    EVALUATED.append(ctx.saga_id)
    return bool(ctx.data["amount"] < 100)


def large(ctx: Context) -> bool:
    EVALUATED.append(ctx.saga_id)
    return bool(ctx.data["amount"] >= 100)


class Conditional(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("review", reserve, compensate=release, when=large),
        Wait("paid", when=small),
        Step("ship", ship),
    )


async def test_a_skip_is_committed_and_a_resumed_run_keeps_it(url: str) -> None:
    EVALUATED.clear()
    run = await Conditional(amount=5).start(store=url)
    store = await open_store(url)
    await _until(store, run.saga_id, "waiting")
    snapshot = await store.load(run.saga_id)
    assert snapshot.steps["review"].phase == "skipped"
    assert [t.trigger for t in snapshot.history].count("review.skip") == 1
    await _abandon(run)
    await statesaga.signal(url, run.saga_id, "paid", {"amount": 5}, saga=Conditional)
    result = await asyncio.wait_for(
        follow(store, run.saga_id, saga=Conditional, clock=None, broker=None), 10
    )
    assert result.status == SagaStatus.COMPLETED
    assert result.skipped_steps == ("review",)
    assert EVALUATED.count(run.saga_id) == 2  # once per condition, not again on resume
    large = await asyncio.wait_for(Conditional(amount=500).execute(store=url), 10)
    assert large.skipped_steps == ("paid",)  # the wait itself was skipped: no signal needed
    assert large.completed_steps == ("reserve", "review", "ship")
    stored = statesaga.durable.finished_result(await store.load(large.saga_id))
    assert stored.skipped_steps == ("paid",)


async def test_a_resumed_run_s_duration_counts_from_its_start(url: str) -> None:
    result = await asyncio.wait_for(Sleep().execute(store=url), 10)
    assert result.duration >= 0.3  # its sleep included, not only the last stretch


class _ShiftedClock:
    """The wall clock moved by ``offset`` seconds: a run's clock need not be the machine's."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def random(self) -> float:
        return 0.5


@pytest.mark.parametrize("offset", [-86_400.0, 86_400.0], ids=["behind", "ahead"])
async def test_a_followed_wait_times_out_on_the_run_s_own_clock(url: str, offset: float) -> None:
    """The process following a parked run reads its timeout on the clock the run keeps."""
    clock = _ShiftedClock(offset)
    result = await asyncio.wait_for(Sleep().execute(store=url, clock=clock), 10)
    assert result.status == SagaStatus.COMPLETED
    assert result.results["paid"] == {}
