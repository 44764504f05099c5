"""``Saga``, the class users subclass: a definition that runs, in memory or durably."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from .clock import SYSTEM_CLOCK, Clock
from .compiler import compile_saga
from .definition import SagaDefinition
from .engine import Driver, run_in_memory, start_task
from .engine.recorder import IN_MEMORY
from .engine.state import RunState
from .handle import DurableRun, InMemoryRun, RunHandle
from .ids import run_id_or_new
from .result import SagaResult

if TYPE_CHECKING:
    from .compiler import CompiledSaga
    from .messaging.broker import Broker
    from .store.base import SagaStore


class Saga(SagaDefinition, abstract=True):
    """Base class of every saga: subclass it and list ``steps``.

    ``SagaClass(**data)`` makes one run's input; ``await instance.execute()`` runs it. The
    definition is checked when the class is created, so a broken saga fails at import time.

    Class attributes:
        steps: The saga's steps, in order.
        name: The saga's name in results, stores and diagrams (default: the class name). Like
            a step name, a Python identifier that starts with a letter.
        deadline: Seconds (or a ``timedelta``) the run has to get past its pivot (or to
            complete, without one), counted from its start. When it passes, no step before
            the pivot starts and a running one is cut short; the run is compensated. Steps
            from the pivot on are never cut short: they must go forward. ``None``: no limit.
    """

    def execute(
        self,
        *,
        saga_id: str | None = None,
        clock: Clock | None = None,
        store: SagaStore | str | None = None,
        broker: Broker | str | None = None,
    ) -> Coroutine[Any, Any, SagaResult]:
        """Run the saga to a final state and report what happened: await it.

        A bad argument raises when it is called, before anything runs.

        Args:
            saga_id: This run's id; when omitted, 32 hex characters unique across processes.
            store: Run durably in this store (or store URL, such as ``sqlite:///sagas.db``):
                every step is recorded before it is called and the run can be resumed
                after a crash. ``None`` runs in memory.
            clock: Where time, sleeps and randomness come from (tests pass a ``FakeClock``).
            broker: Publish the messages steps emit (``ctx.emit``) right after the commit
                that records them (a broker or its URL, such as ``amqp://host``). Needs a
                ``store``, whose outbox keeps them until they are confirmed. Without a broker
                they wait in the outbox for a relay; without a store they are only returned
                in ``result.messages``.

        Returns:
            The run's ``SagaResult``. A failed step does not raise: it shows in the result.
        """
        return start_run(type(self), self.data, saga_id, clock, store, broker)

    async def start(
        self,
        *,
        saga_id: str | None = None,
        clock: Clock | None = None,
        store: SagaStore | str | None = None,
        broker: Broker | str | None = None,
    ) -> RunHandle:
        """Start the saga and return its ``RunHandle`` at once, to signal its waits, cancel
        it or await its result. Takes what ``execute`` takes.

        In memory (no ``store``) the run is scheduled in this event loop and its waits take
        signals only through the handle.
        """
        compiled = compile_saga(type(self))
        saga_id = run_id_or_new(saga_id)
        clock = clock or SYSTEM_CLOCK
        if store is not None:
            return await DurableRun.launch(compiled, self.data, saga_id, clock, store, broker)
        if broker is not None:
            raise ValueError(_BROKER_NEEDS_STORE)
        driver = Driver(RunState.new(compiled, self.data, saga_id), clock, IN_MEMORY)
        loop = asyncio.get_running_loop()
        return InMemoryRun(driver, start_task(driver.drive(), loop, compiled.task_name))

    async def submit(self, *, store: SagaStore | str, saga_id: str | None = None) -> str:
        """Record a new run in ``store`` for a worker to drive, and return its id: no step
        runs in this process, so a service that only starts runs can exit at once and no
        step is cut short (as one driven by ``start`` is when its process stops).

        Args:
            store: The store (or store URL) the workers drive.
            saga_id: The run's id; when omitted, 32 hex characters unique across processes.

        Raises:
            RunExists: ``store`` has a run with that id already (it is left as it was).
            StatesagaError: The input cannot be stored (nothing is).
        """
        if store is None:
            raise ValueError("submit needs the store (or its URL) the workers drive")
        from .durable.drive import submit

        compiled = compile_saga(type(self))
        return await submit(compiled, self.data, run_id_or_new(saga_id), store)


_BROKER_NEEDS_STORE = (
    "a broker needs a store: messages are published from the store's outbox, which keeps "
    "them until the broker confirms; pass store= too (memory:// for one in this process)"
)


def start_run(
    saga: type[SagaDefinition],
    data: Mapping[str, Any],
    saga_id: str | None,
    clock: Clock | None,
    store: SagaStore | str | None,
    broker: Broker | str | None,
) -> Coroutine[Any, Any, SagaResult]:
    """Run ``saga`` on ``data`` to a final state, durably when a ``store`` is given: await it.

    Cancelling the awaiting task stops new steps from starting, awaits the running ones,
    compensates what took effect and then re-raises the cancellation; cancelling it again
    abandons the remaining work at once. A bad saga or argument raises when it is called.
    """
    compiled = compile_saga(saga)
    saga_id = run_id_or_new(saga_id)
    if store is not None:
        return _durable_start()(compiled, data, saga_id, clock or SYSTEM_CLOCK, store, broker)
    if broker is not None:
        raise ValueError(_BROKER_NEEDS_STORE)
    return run_in_memory(compiled, data, saga_id, clock or SYSTEM_CLOCK)


@functools.cache
def _durable_start() -> Callable[
    [CompiledSaga, Mapping[str, Any], str, Clock, SagaStore | str, Broker | str | None],
    Coroutine[Any, Any, SagaResult],
]:
    """``durable.execute``, imported by the first durable run.

    An in-memory run never loads the stores. Cached rather than imported in ``start_run``:
    an import statement costs about 1 µs on every run.
    """
    from .durable import execute

    return execute
