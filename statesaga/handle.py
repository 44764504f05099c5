"""``RunHandle``: a started run, to signal, cancel and await."""

from __future__ import annotations

import abc
import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from .engine import Driver
from .engine.waits import check_signal
from .errors import SignalRefused
from .result import SagaResult

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
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SignalRefused(
            run_id,
            event,
            f"its payload is {type(value).__name__}, not a mapping such as a dict (or None)",
        )
    from .json_data import as_stored

    stored: dict[str, Any] = as_stored(dict(value), what="signal payload", run_id=run_id)
    return stored


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
