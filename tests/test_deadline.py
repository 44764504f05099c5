"""A saga's deadline: past it, nothing before the pivot starts or goes on, and the run unwinds."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from statesaga import InvalidSagaError, Retry, Saga, SagaDeadlineError, SagaStatus, Step
from statesaga.compiler import compile_saga
from statesaga.context import Context
from statesaga.testing import FakeClock, fail_step

CALLS: list[str] = []


async def ok(ctx: Context) -> None:
    CALLS.append(f"{'undo' if ctx.compensating else 'do'}:{ctx.step}")


async def slow(ctx: Context) -> None:
    CALLS.append(f"do:{ctx.step}")
    await asyncio.sleep(5)


async def late(ctx: Context) -> None:
    """Finishes after the deadline without waiting (the clock jumps)."""
    CALLS.append(f"do:{ctx.step}")
    clock = CLOCKS[ctx.saga_id]
    clock.now += 10


CLOCKS: dict[str, FakeClock] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    CLOCKS.clear()


class Interrupted(Saga):
    deadline = 0.05
    steps = (Step("a", ok, compensate=ok), Step("b", slow, compensate=ok), Step("c", ok))


class Between(Saga):
    deadline = timedelta(seconds=1)
    steps = (Step("a", late, compensate=ok), Step("b", ok, compensate=ok))


class Retrying(Saga):
    deadline = 1.0
    steps = (
        Step("a", ok, compensate=ok),
        Step("b", ok, compensate=ok, retry=Retry(attempts=5, delay=0.4, backoff=1, jitter=0)),
    )


class PastPivot(Saga):
    deadline = 1.0
    steps = (Step("a", ok, compensate=ok), Step("p", late, pivot=True), Step("z", ok))


class Dag(Saga):
    deadline = 0.05
    steps = (
        Step("a", ok, compensate=ok),
        Step("b", slow, compensate=ok, depends_on="a"),
        Step("c", ok, compensate=ok, depends_on="a"),
        Step("d", ok, depends_on=("b", "c")),
    )


async def test_a_running_step_is_cut_short_and_compensated() -> None:
    """The step running at the deadline is interrupted; its outcome is unknown, so it is undone."""
    result = await Interrupted().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "b"
    assert isinstance(result.error, SagaDeadlineError)
    assert result.error.interrupted
    assert "passed its deadline of 0.05 s while step 'b' ran" in str(result.error)
    assert CALLS == ["do:a", "do:b", "undo:b", "undo:a"]
    assert "b.time_out" in [h.trigger for h in result.history]


async def test_no_step_starts_after_the_deadline() -> None:
    """A deadline passing between steps stops the next one; what succeeded is compensated."""
    clock = FakeClock()
    CLOCKS["r1"] = clock
    result = await Between().execute(saga_id="r1", clock=clock)
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step is None
    assert isinstance(result.error, SagaDeadlineError)
    assert not result.error.interrupted
    assert CALLS == ["do:a", "undo:a"]


async def test_retries_stop_at_the_deadline() -> None:
    """A step between attempts gives up at the deadline instead of sleeping past it."""
    clock = FakeClock()
    with fail_step("b"):
        result = await Retrying().execute(clock=clock)
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "b"
    assert isinstance(result.error, SagaDeadlineError)
    assert "before step 'b' could try again" in str(result.error)
    attempts = [h.attempt for h in result.history if h.trigger in ("b.start", "b.retry")]
    assert attempts == [1, 2, 3]  # pauses of 0.4 s: the third ends at 0.8 s, the deadline at 1
    assert clock.monotonic() - 1_000_000.0 <= 1.0 + 1e-9
    assert "b.fail" in [h.trigger for h in result.history]  # no attempt was cut: not in doubt


async def test_the_deadline_no_longer_binds_past_the_pivot() -> None:
    """Once the pivot succeeded the run goes forward, however late."""
    clock = FakeClock()
    CLOCKS["r2"] = clock
    result = await PastPivot().execute(saga_id="r2", clock=clock)
    assert result.status is SagaStatus.COMPLETED
    assert CALLS == ["do:a", "do:p", "do:z"]


async def test_dag_siblings_stop_at_the_deadline() -> None:
    """In a DAG the cut-short step and its succeeded sibling are compensated; d never starts."""
    result = await Dag().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert "do:d" not in CALLS
    assert sorted(result.compensated_steps) == ["a", "b", "c"]


async def test_a_resumed_run_counts_from_its_first_start(tmp_path: Path) -> None:
    """A run resumed past its deadline does not call its interrupted step again: it unwinds."""
    from statesaga import resume
    from statesaga.store.sqlite import SQLiteStore

    gate = asyncio.Event()

    async def hang(ctx: Context) -> None:
        CALLS.append(f"do:{ctx.step}")
        gate.set()
        await asyncio.Event().wait()

    class Resumable(Saga):
        deadline = 60.0
        steps = (Step("a", ok, compensate=ok), Step("b", hang, compensate=ok), Step("c", ok))

    store = SQLiteStore(tmp_path / "runs.db")
    await store.open()
    try:
        task = asyncio.ensure_future(Resumable().execute(store=store, saga_id="old"))
        await gate.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # a second cancellation abandons the run, as a dying process would
        with pytest.raises(asyncio.CancelledError):
            await task
        snapshot = await store.load("old")
        assert snapshot.steps["b"].phase == "running"
        CALLS.clear()
        clock = FakeClock(start=snapshot.run.created_at + 120)
        result = await resume(store, "old", saga=Resumable, clock=clock)
    finally:
        await store.close()
    assert result.status is SagaStatus.COMPENSATED
    assert isinstance(result.error, SagaDeadlineError)
    assert result.failed_step == "b"
    assert CALLS == ["undo:b", "undo:a"]


def test_a_bad_deadline_is_listed_with_the_other_problems() -> None:
    """A non-positive deadline is a definition problem, reported with the steps' problems."""
    with pytest.raises(InvalidSagaError) as caught:

        class Bad(Saga):
            deadline = -1
            steps = (Step("a", ok), Step("a", ok))

    text = str(caught.value)
    assert "2 problems" in text
    assert "deadline=-1: a deadline must be a positive number of seconds" in text


def test_the_deadline_is_not_part_of_the_machine() -> None:
    """Changing a deadline keeps the fingerprint: stored runs resume under the new one."""

    class Without(Saga):
        name = "Same"
        steps = (Step("a", ok),)

    class With(Saga):
        name = "Same"
        deadline = 5
        steps = (Step("a", ok),)

    assert compile_saga(With).deadline == 5.0
    assert compile_saga(Without).fingerprint == compile_saga(With).fingerprint
