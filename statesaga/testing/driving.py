"""How a scenario's run is driven in this process: to its crash point and on from the
store as a worker would, answering its waits as the scenario says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..compiler import CompiledSaga, compile_saga
from ..definition import SagaDefinition
from ..durable.drive import drive_stored, finished_result, start
from ..durable.resources import StoreLike, open_store
from ..durable.waiting import signal
from ..errors import RunWaiting, SignalArrived, SignalRefused
from ..ids import new_run_id
from ..result import SagaResult
from ..store.base import RunSnapshot, SagaStore
from ..store.memory import MemoryStore
from ..vocabulary import Phase, step_state
from .inject import CrashingStore, Runtime, derive
from .kit import FakeClock

__all__ = ["answer_waits", "drive", "resumer", "through_waits"]


async def drive(
    compiled: CompiledSaga,
    saga: type[SagaDefinition],
    data: dict[str, Any],
    runtime: Runtime,
    store: StoreLike | None,
) -> tuple[SagaResult, RunSnapshot | None, RunSnapshot | None]:
    """Run the scenario to its end: crash where it says, then resume as a worker would."""
    derived = derive(saga, compiled)
    plan = compile_saga(derived)
    inner: SagaStore = MemoryStore() if store is None else await open_store(store)
    wrapped: Any = CrashingStore(inner, runtime)
    clock = FakeClock()
    run_id = new_run_id()
    at_crash: RunSnapshot | None = None

    again = resumer(wrapped, run_id, derived, clock)
    try:
        first = start(plan, data, run_id, clock, wrapped, abandon_on_cancel=True)
        result = await through_waits(first, again, inner, run_id, plan, runtime, clock)
    except BaseException:
        if not runtime.crashed:
            raise
        # The process died: whatever its other tasks raised on their way out is moot.
        for _ in range(8):
            await asyncio.sleep(0)
        for task in runtime.dying:  # the crash was handled: no "never retrieved" warning
            if task.done() and not task.cancelled():
                task.exception()
        at_crash = await inner.load(run_id)
        runtime.life = 1
        result = await through_waits(again(), again, inner, run_id, plan, runtime, clock)
    stored = await inner.load(run_id)
    return result, stored, at_crash


def resumer(
    store: Any, run_id: str, saga: type[SagaDefinition], clock: FakeClock
) -> Callable[[], Awaitable[SagaResult | None]]:
    """What drives the stored run on, as a worker resumes it: a run that ended meanwhile is
    reported (``None``), not tried again."""

    def again() -> Awaitable[SagaResult | None]:
        return drive_stored(
            store,
            run_id,
            saga=saga,
            allow_changed_definition=False,
            clock=clock,
            abandon_on_cancel=True,
        )

    return again


async def through_waits(
    first: Awaitable[SagaResult | None],
    again: Callable[[], Awaitable[SagaResult | None]],
    store: SagaStore,
    run_id: str,
    plan: CompiledSaga,
    runtime: Runtime,
    clock: FakeClock,
) -> SagaResult:
    """Drive the run to its end; each time it parks, answer its waits as the scenario says
    (a signal, or the clock moved past the timeout) and drive it again."""
    drive = first
    for _ in range(2 * len(plan.steps) + 2):  # each round settles at least one wait
        try:
            result = await drive
        except (RunWaiting, SignalArrived):
            await answer_waits(store, run_id, plan, runtime, clock)
            drive = again()
            continue
        return result or finished_result(await store.load(run_id))
    raise RuntimeError(f"run {run_id} kept waiting after its waits were answered")


async def answer_waits(
    store: SagaStore, run_id: str, plan: CompiledSaga, runtime: Runtime, clock: FakeClock
) -> None:
    """Signal the waits the scenario signals; for the ones left silent, let time pass."""
    record = (await store.load(run_id)).run
    silent = False
    for step in plan.steps:
        waiting = step_state(step.name, Phase.WAITING)
        if not step.wait or record.config.get(plan.region_of_state[waiting]) != waiting:
            continue
        if step.name in runtime.plan.unsignalled:
            silent = True
            continue
        with contextlib.suppress(SignalRefused):  # signalled before
            await signal(store, run_id, step.name, {}, saga=plan.saga)
    if silent and record.wake_at is not None:
        clock.now = max(clock.now, record.wake_at)
