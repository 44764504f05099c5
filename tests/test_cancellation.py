from __future__ import annotations

import asyncio

import pytest

from statesaga import Saga, Step
from statesaga.context import Context


def build(log: list[str], release: asyncio.Event, started: asyncio.Event) -> type[Saga]:
    async def first(ctx: Context) -> None:
        log.append("first")

    async def slow(ctx: Context) -> None:
        started.set()
        await release.wait()
        log.append("slow-done")

    async def never(ctx: Context) -> None:
        log.append("never")

    def undo(name: str):  # type: ignore[no-untyped-def]
        async def compensate(ctx: Context) -> None:
            log.append(f"undo-{name}")

        return compensate

    return type(
        "Cancellable",
        (Saga,),
        {
            "steps": (
                Step("first", first, compensate=undo("first")),
                Step("slow", slow, compensate=undo("slow")),
                Step("never", never),
            )
        },
    )


async def test_cancel_awaits_running_step_compensates_and_reraises() -> None:
    """Cancelling execute() lets the running step finish, compensates, then re-raises."""
    log: list[str] = []
    release, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(build(log, release, started)().execute())
    await started.wait()
    task.cancel()
    await asyncio.sleep(0.01)
    assert log == ["first"]  # the running step was not cancelled: still waiting
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["first", "slow-done", "undo-slow", "undo-first"]


async def test_second_cancel_abandons_remaining_work() -> None:
    """A second cancellation stops the run at once, leaving the rest undone."""
    log: list[str] = []
    release, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(build(log, release, started)().execute())
    await started.wait()
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.sleep(0.01)
    assert log == ["first"]


async def test_cancel_under_asyncio_timeout_becomes_timeout_error() -> None:
    """asyncio.timeout around execute() still works: compensation runs, TimeoutError raised."""
    log: list[str] = []
    release, started = asyncio.Event(), asyncio.Event()
    saga = build(log, release, started)()

    async def later() -> None:
        await started.wait()
        await asyncio.sleep(0.05)
        release.set()

    helper = asyncio.create_task(later())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await saga.execute()
    await helper
    assert log == ["first", "slow-done", "undo-slow", "undo-first"]


async def test_cancel_after_pivot_compensates_nothing() -> None:
    """Past the pivot a cancellation stops new steps but undoes nothing."""
    log: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def step(ctx: Context) -> None:
        log.append(ctx.step)

    async def slow(ctx: Context) -> None:
        started.set()
        await release.wait()
        log.append("slow")

    async def undo(ctx: Context) -> None:
        log.append(f"undo-{ctx.step}")

    S = type(
        "PastPivot",
        (Saga,),
        {
            "steps": (
                Step("a", step, compensate=undo),
                Step("p", step, pivot=True),
                Step("slow", slow),
                Step("late", step),
            )
        },
    )
    task = asyncio.create_task(S().execute())
    await started.wait()
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["a", "p", "slow"]
