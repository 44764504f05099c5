"""Where a run lives: a task of its own, so that a caller's cancellation becomes a request."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from ..clock import Clock
from ..compiler import CompiledSaga
from ..result import SagaResult
from .driver import Driver
from .recorder import IN_MEMORY
from .state import RunState

_T = TypeVar("_T")

if sys.version_info >= (3, 12):

    def start_task(
        coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, name: str
    ) -> asyncio.Task[_T]:
        """A task named ``name`` running ``coro``, started eagerly: a run whose steps never
        wait ends inside the call, with no trip through the loop."""
        return asyncio.Task(coro, loop=loop, name=name, eager_start=True)

else:

    def start_task(
        coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, name: str
    ) -> asyncio.Task[_T]:
        """A task named ``name`` running ``coro`` (3.11 has no eager start)."""
        return loop.create_task(coro, name=name)


async def drive_to_result(driver: Driver, *, abandon_on_cancel: bool = False) -> SagaResult:
    """Drive a run in a task of its own and return its result.

    Cancelling the caller asks the run to stop: no new step starts, running ones are awaited,
    what took effect is compensated, then the cancellation is raised again; a second one
    abandons the run at once. With ``abandon_on_cancel`` the first one does (for durable runs
    driven by a worker, which another worker can take over).
    """
    loop = asyncio.get_running_loop()
    task = start_task(driver.drive(), loop, driver.c.task_name)
    if task.done():  # it ran to its end without waiting (an eager start)
        result = task.result()
        assert result is not None  # with no waiter, drive() raises instead of returning None
        return result
    return await _wait_for(driver, task, loop, abandon_on_cancel)


def run_in_memory(
    compiled: CompiledSaga, data: Mapping[str, Any], saga_id: str, clock: Clock
) -> Coroutine[Any, Any, SagaResult]:
    """Run a new saga that is not stored: await it for its result."""
    return drive_to_result(Driver(RunState.new(compiled, data, saga_id), clock, IN_MEMORY))


async def _wait_for(
    driver: Driver,
    task: asyncio.Task[SagaResult | None],
    loop: asyncio.AbstractEventLoop,
    abandon: bool,
) -> SagaResult:
    # The run lives in its own task so that a cancellation of the caller reaches it as a
    # request instead of cancelling a step whose effect would then be unknown. The caller
    # waits on a plain future that the task fills in: cancelling that future leaves the task
    # alone. (A Task subclass intercepting cancel() would be cheaper, but would also swallow
    # the cancellations asyncio.timeout() makes inside users' actions.)
    driver.waiter = loop.create_future()
    try:
        return await driver.waiter
    except asyncio.CancelledError:
        if task.done():
            raise
        if abandon:
            task.cancel()
            raise
        driver.cancel_requested = True
        driver.waiter = loop.create_future()
        try:
            await driver.waiter
        except asyncio.CancelledError:
            task.cancel()  # a second cancellation: abandon the run at once
        raise  # the caller's cancellation, now that the run has wound down
