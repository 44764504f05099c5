"""``RunHandle``: a started run, to signal, cancel and await."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .compiler import CompiledSaga
from .engine import Driver
from .engine.waits import check_signal
from .errors import RunPaused, SignalRefused
from .result import SagaResult

if TYPE_CHECKING:
    from .messaging.broker import Broker
    from .store.base import SagaStore

# Runs started with no one awaiting them yet: the loop keeps only weak references to tasks.
_STARTED: set[asyncio.Task[Any]] = set()


class RunHandle(abc.ABC):
    """A run that ``Saga.start`` started: signal it, cancel it, await its result.

    Attributes:
        saga_id: The run's id.
    """

    saga_id: str

    @abc.abstractmethod
    async def signal(
        self,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        signal_id: str | None = None,
    ) -> bool:
        """Deliver the signal ``event`` (with ``payload``, JSON data) to the run's wait of
        that name; it is kept if the run has not reached the wait yet.

        Returns:
            ``True`` if accepted, ``False`` if ``signal_id`` was accepted before with the
            same event and payload (a duplicate, not applied again).

        Raises:
            SignalRefused: The saga has no wait for ``event``, its wait is over or already
                signalled, the run has ended, or ``signal_id`` was used with another event
                or payload.
            StoreError: ``payload`` is not JSON data (nothing is delivered).
        """

    @abc.abstractmethod
    async def result(self) -> SagaResult:
        """Wait for the run's end and return its result (cancelling the caller leaves the
        run alone: use ``cancel``)."""

    @abc.abstractmethod
    async def cancel(self) -> SagaResult:
        """Ask the run to stop and return its result: no new step starts, a waiting run
        stops waiting, and what took effect before the pivot is compensated."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.saga_id}>"


def payload_of(value: Mapping[str, Any] | None, run_id: str, event: str) -> dict[str, Any]:
    """A signal's payload as it is delivered (``None`` is ``{}``), or ``SignalRefused``
    when it is not a mapping, or ``StoreError`` when it is not JSON data."""
    # What a stored run would keep, also in memory: the same payload works in both.
    from .durable.waiting import payload_as_stored

    return payload_as_stored(value, run_id, event)


class InMemoryRun(RunHandle):
    """The handle of a run that is not stored: it lives in this process's event loop."""

    def __init__(self, driver: Driver, task: asyncio.Task[SagaResult | None]) -> None:
        self.saga_id = driver.state.saga_id
        self._driver = driver
        self._task = task
        self._signal_ids: dict[str, tuple[str, Mapping[str, Any]]] = {}
        _STARTED.add(task)
        task.add_done_callback(_STARTED.discard)

    async def signal(
        self,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        signal_id: str | None = None,
    ) -> bool:
        data = payload_of(payload, self.saga_id, event)
        if signal_id is not None and signal_id in self._signal_ids:
            if self._signal_ids[signal_id] == (event, data):
                return False
            raise SignalRefused(
                self.saga_id,
                event,
                f"signal id {signal_id!r} was already used with another event or payload",
            )
        check_signal(self._driver, event)
        self._signal_ids[signal_id or uuid.uuid4().hex] = (event, data)
        self._driver.state.signals[event] = data
        self._driver.wake(event)
        return True

    async def result(self) -> SagaResult:
        result = await asyncio.shield(self._task)
        assert result is not None  # with no waiter, drive() raises instead of returning None
        return result

    async def cancel(self) -> SagaResult:
        if not self._task.done():
            self._driver.cancel_requested = True
            self._driver.wake()
        return await self.result()


class DurableRun(RunHandle):
    """The handle of a stored run. While this process runs, it drives the run on whenever
    the run is due (workers may too: the lease decides). If the process's event loop ends
    first (a script that returns after ``start``), the run is left unfinished with no lease,
    for a worker to take over at once, as after a crash."""

    def __init__(
        self,
        store: SagaStore | str,
        saga_id: str,
        task: asyncio.Task[SagaResult],
    ) -> None:
        from .durable.resources import loop_resources

        self.saga_id = saga_id
        self._store = store
        self._task = task
        loop_resources().drive_in_background(task)  # kept, and stopped by ``shutdown``

    @classmethod
    async def launch(
        cls,
        compiled: CompiledSaga,
        data: Mapping[str, Any],
        saga_id: str,
        clock: Clock,
        store: SagaStore | str,
        broker: Broker | str | None,
    ) -> DurableRun:
        """Record a new run and drive it in a task of its own; returns once it is stored."""
        from .durable import execute

        loop = asyncio.get_running_loop()
        recorded: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(
            # Cancelled only when its loop shuts down (a script that returns): the run is
            # then left to a worker, as after a crash, not compensated.
            execute(
                compiled,
                data,
                saga_id,
                clock,
                store,
                broker,
                recorded=recorded,
                abandon_on_cancel=True,
            ),
            name=compiled.task_name,
        )
        await asyncio.wait((recorded, task), return_when=asyncio.FIRST_COMPLETED)
        if not recorded.done():
            recorded.cancel()
            task.result()  # raises why it could not be recorded
        error = recorded.exception()
        if error is not None:  # not recorded (its id is another run's): the task fails too
            with contextlib.suppress(BaseException):
                await task
            raise error
        return cls(store, saga_id, task)

    async def signal(
        self,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        signal_id: str | None = None,
    ) -> bool:
        from .durable import signal

        return await signal(self._store, self.saga_id, event, payload, signal_id=signal_id)

    async def result(self) -> SagaResult:
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            awaiting = asyncio.current_task()
            if not self._task.cancelled() or (awaiting is not None and awaiting.cancelling()):
                raise  # the caller is cancelled, not the run
            raise RunPaused(self.saga_id, "was stopped by statesaga.shutdown()") from None

    async def cancel(self) -> SagaResult:
        from .durable import request_cancel

        if not self._task.done():
            await request_cancel(self._store, self.saga_id)
        return await self.result()
