from __future__ import annotations

import asyncio

import pytest

from statesaga import Saga, SagaStatus, Step
from statesaga.context import Context
from statesaga.testing import FakeClock, InjectedFault, fail_step

calls: list[str] = []


async def act(ctx: Context) -> None:
    calls.append(f"do-{ctx.step}")


async def undo(ctx: Context) -> None:
    calls.append(f"undo-{ctx.step}")


class Two(Saga):
    steps = (Step("a", act, compensate=undo), Step("b", act, compensate=undo))


class Other(Saga):
    steps = (Step("b", act),)


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()


async def test_fail_step_breaks_every_call_by_default() -> None:
    """Without times, every call of the step raises and the action never runs."""
    with fail_step("b") as fault:
        result = await Two().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert isinstance(result.error, InjectedFault)
    assert calls == ["do-a", "undo-a"]
    assert fault.calls == 1


async def test_fail_step_applies_to_any_saga_with_that_step() -> None:
    """The fault is keyed by step name, not by saga class."""
    with fail_step("b"):
        first = await Two().execute()
        second = await Other().execute()
    assert first.failed_step == second.failed_step == "b"


async def test_fail_step_times_then_works() -> None:
    """With times=n, the first n calls fail and later ones run."""
    with fail_step("a", times=1):
        first = await Two().execute()
        second = await Two().execute()
    assert first.status is SagaStatus.COMPENSATED
    assert second.status is SagaStatus.COMPLETED


async def test_fail_step_compensation() -> None:
    """compensation=True breaks the compensation, not the action."""
    with fail_step("a", compensation=True), fail_step("b"):
        result = await Two().execute(clock=FakeClock())
    assert result.status is SagaStatus.FAILED
    assert set(result.compensation_errors) == {"a"}
    assert calls == ["do-a"]


async def test_fail_step_is_scoped_to_its_block() -> None:
    """Runs after the block, or in tasks started outside it, are unaffected."""
    gate = asyncio.Event()

    async def outside() -> SagaStatus:
        await gate.wait()
        return (await Two().execute()).status

    task = asyncio.create_task(outside())
    with fail_step("a"):
        gate.set()
        await asyncio.sleep(0)
        inside = (await Two().execute()).status
        assert await task is SagaStatus.COMPLETED
    assert inside is SagaStatus.COMPENSATED
    assert (await Two().execute()).status is SagaStatus.COMPLETED


async def test_fail_step_follows_tasks_started_inside() -> None:
    """A run started in a task created inside the block sees the fault."""
    with fail_step("a"):
        task = asyncio.create_task(Two().execute())
    assert (await task).status is SagaStatus.COMPENSATED


def test_fail_step_rejects_negative_times() -> None:
    """times must be None or >= 0."""
    with pytest.raises(ValueError, match="times"), fail_step("a", times=-1):
        pass


async def test_fake_clock_records_sleeps_and_advances() -> None:
    """FakeClock.sleep returns at once, records the delay and moves time."""
    clock = FakeClock(start=10)
    await clock.sleep(2.5)
    assert clock.sleeps == [2.5]
    assert clock.monotonic() == 12.5
    assert 0 <= clock.random() < 1
