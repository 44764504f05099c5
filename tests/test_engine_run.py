"""A run's task, its history's times, its result and its id."""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import sys
from typing import Any

import pytest

from statesaga import Saga, SagaResult, SagaStatus, Step
from statesaga.context import Context
from statesaga.ids import new_run_id
from statesaga.observe import Observer, observing
from statesaga.testing import FakeClock

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="caller")


async def noop(ctx: Context) -> None:
    return None


def chain(*actions: Any, undo: Any = noop) -> type[Saga]:
    """A chain of steps a, b, c... running ``actions``, each compensated by ``undo``."""
    steps = tuple(
        Step(chr(ord("a") + i), action, compensate=undo) for i, action in enumerate(actions)
    )
    return type("Chain", (Saga,), {"steps": steps})


Chain = chain(noop, noop, noop)


# -- the run's task starts at once --------------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks came with 3.12")
async def test_a_run_that_never_waits_ends_without_a_trip_through_the_loop() -> None:
    """Its task runs at once, up to its first wait: a callback queued before it runs after."""
    order: list[str] = []
    asyncio.get_running_loop().call_soon(order.append, "callback")
    result = await Chain().execute()
    order.append("run")
    assert result.status is SagaStatus.COMPLETED
    assert order == ["run"]
    assert "call_soon" not in vars(asyncio.get_running_loop())  # the loop is left as it was
    await asyncio.sleep(0)
    assert order == ["run", "callback"]


async def test_actions_run_in_the_runs_own_task_and_the_callers_is_restored() -> None:
    caller = asyncio.current_task()
    tasks: list[asyncio.Task[Any] | None] = []

    async def record(ctx: Context) -> None:
        tasks.append(asyncio.current_task())

    class Record(Saga):
        steps = (Step("a", record), Step("b", record))

    await Record().execute()
    assert tasks[0] is not None
    assert tasks[0] is not caller
    assert tasks[0] is tasks[1]
    assert tasks[0].get_name() == "statesaga:Record"
    assert asyncio.current_task() is caller


async def test_a_timeout_inside_an_action_cuts_the_action_short_not_the_caller() -> None:
    """asyncio.timeout() entered before the first wait targets the run's task."""

    async def patient(ctx: Context) -> dict[str, bool]:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            return {"timed_out": True}
        return {"timed_out": False}

    class Patient(Saga):
        steps = (Step("a", patient),)

    result = await Patient().execute()
    assert result.status is SagaStatus.COMPLETED
    assert result.results["a"] == {"timed_out": True}
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_context_variables_an_action_sets_stay_in_the_run() -> None:
    async def setter(ctx: Context) -> None:
        seen.set("action")

    class Setter(Saga):
        steps = (Step("a", setter),)

    await Setter().execute()
    assert seen.get() == "caller"


async def test_cancelling_the_caller_while_a_step_waits_still_winds_the_run_down() -> None:
    """After a start that ran the first step up to its wait, the usual guarantee holds."""
    started, release = asyncio.Event(), asyncio.Event()
    undone: list[str] = []

    async def slow(ctx: Context) -> None:
        started.set()
        await release.wait()

    async def undo(ctx: Context) -> None:
        undone.append(ctx.step)

    caller = asyncio.create_task(chain(noop, slow, noop, undo=undo)().execute())
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0)
    assert not caller.done()  # the running step is awaited, not interrupted
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert undone == ["b", "a"]


# -- the history ---------------------------------------------------------------------------------


class Ticking(Saga):
    """Each step advances the clock it is given by its index plus one second."""

    @staticmethod
    def step(seconds: float) -> Any:
        async def action(ctx: Context) -> dict[str, float]:
            clock = ctx.data["clock"]
            clock.now += seconds
            return {"at": clock.now}

        return action

    steps = (Step("a", step(1)), Step("b", step(2)), Step("c", step(4)))


@pytest.mark.parametrize("observed", [False, True], ids=["alone", "observed"])
async def test_history_times_are_when_each_transition_happened(observed: bool) -> None:
    """Each transition carries the time it was taken, observed or not."""
    clock = FakeClock(start=100.0)
    if observed:
        with observing(Observer()):
            result = await Ticking(clock=clock).execute(clock=clock)
    else:
        result = await Ticking(clock=clock).execute(clock=clock)
    assert [(e.trigger, e.at) for e in result.history] == [
        ("start", 100.0),
        ("a.start", 100.0),
        ("a.succeed", 101.0),
        ("b.start", 101.0),
        ("b.succeed", 103.0),
        ("c.start", 103.0),
        ("c.succeed", 107.0),
        ("complete", 107.0),
    ]
    assert [e.attempt for e in result.history] == [0, 1, 1, 1, 1, 1, 1, 0]


async def test_a_failure_is_recorded_with_the_steps_before_it() -> None:
    clock = FakeClock(start=10.0)
    undone: list[str] = []

    async def tick(ctx: Context) -> None:
        clock.now += 1

    async def fail(ctx: Context) -> None:
        clock.now += 1
        raise ValueError("no")

    async def undo(ctx: Context) -> None:
        undone.append(ctx.step)

    result = await chain(tick, tick, fail, undo=undo)().execute(clock=clock)
    assert result.status is SagaStatus.COMPENSATED
    assert result.completed_steps == ("a", "b")
    assert result.compensated_steps == ("b", "a") == tuple(undone)
    assert [(e.trigger, e.at) for e in result.history][:7] == [
        ("start", 10.0),
        ("a.start", 10.0),
        ("a.succeed", 11.0),
        ("b.start", 11.0),
        ("b.succeed", 12.0),
        ("c.start", 12.0),
        ("c.fail", 13.0),
    ]


async def test_a_step_with_a_timeout_is_recorded_like_the_others() -> None:
    class Timed(Saga):
        steps = (Step("a", noop), Step("b", noop, timeout=5), Step("c", noop))

    result = await Timed().execute()
    assert result.status is SagaStatus.COMPLETED
    assert [e.trigger for e in result.history] == [
        "start",
        "a.start",
        "a.succeed",
        "b.start",
        "b.succeed",
        "c.start",
        "c.succeed",
        "complete",
    ]


# -- the result ---------------------------------------------------------------------------------


async def test_a_result_is_read_only() -> None:
    result = await Chain().execute()
    with pytest.raises(AttributeError):
        result.status = SagaStatus.FAILED  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.new_field = 1  # type: ignore[attr-defined]
    assert isinstance(result, SagaResult)
    assert result.succeeded
    assert "status=<SagaStatus.COMPLETED: 'completed'>" in repr(result)
    assert result.history is result.history  # built once
    assert result.compensation_errors == {}
    again = SagaResult(
        status=result.status,
        saga_id=result.saga_id,
        completed_steps=result.completed_steps,
        results=dict(result.results),
        duration=result.duration,
        raw_history=[tuple(entry) for entry in result.history],
    )
    assert again == result  # by value: a result equals one built from its parts
    assert again != await Chain().execute()
    with pytest.raises(TypeError):
        hash(result)  # equal by value, and holds mutable mappings


# -- run ids ------------------------------------------------------------------------------------


def test_run_ids_are_32_hex_characters_and_never_repeat() -> None:
    ids = [new_run_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    parent = new_run_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, new_run_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child[:20] != parent[:20]
    assert child != new_run_id()
