"""The recovery loop: find unfinished runs nobody drives, and drive them to the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from .clock import Clock
from .definition import Saga
from .durable import StoreLike, drive_stored, open_store
from .errors import StatesagaError
from .result import SagaResult
from .store.base import LeaseHeld, SagaStore

if TYPE_CHECKING:
    from .messaging.broker import Broker

log = logging.getLogger("statesaga.worker")


@attrs.frozen
class Recovered:
    """What happened to one run a worker picked up.

    Attributes:
        run_id: The run.
        result: Its result, if this worker drove it to a terminal state.
        error: Why it did not (another worker holds it, its saga cannot be imported...).
        finished_elsewhere: Another worker finished it between listing and taking it.
    """

    run_id: str
    result: SagaResult | None = None
    error: Exception | None = None
    finished_elsewhere: bool = False


class Worker:
    """Drives unfinished runs of one store to a terminal state.

    Several workers (processes, machines) may share one store: a run is leased to one worker
    at a time, and another takes it over only after that lease expires.

    Args:
        store: The store or its URL.
        concurrency: How many runs this worker drives at once.
        poll: Seconds between looks for unfinished runs when there were none.
        sagas: Saga classes by stored import path, for sagas not importable by path.
        allow_changed_definition: Resume runs whose saga definition changed.
        clock: Time and randomness for retries.
        broker: Publish the messages the runs' steps emit right after each commit (a broker
            or its URL); without one they wait in the outbox for a relay.
    """

    def __init__(
        self,
        store: StoreLike,
        *,
        concurrency: int = 32,
        poll: float = 1.0,
        sagas: Mapping[str, type[Saga]] | None = None,
        allow_changed_definition: bool = False,
        clock: Clock | None = None,
        broker: Broker | str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.store = store
        self.concurrency = concurrency
        self.poll = poll
        self.sagas = dict(sagas or {})
        self.allow_changed_definition = allow_changed_definition
        self.clock = clock
        self.broker = broker
        self._busy: set[str] = set()

    async def run_once(self) -> list[Recovered]:
        """Drive every run that is unfinished and unleased right now; report each."""
        store = await open_store(self.store)
        limit = asyncio.Semaphore(self.concurrency)
        outcomes: list[Recovered] = []

        async def one(run_id: str) -> None:
            async with limit:
                outcomes.append(await self._recover(store, run_id))

        while True:
            ids = [i for i in await store.unfinished(time.time(), limit=500) if i not in self._busy]
            if not ids:
                return outcomes
            async with asyncio.TaskGroup() as group:
                for run_id in ids:
                    group.create_task(one(run_id))
            if all(o.error is not None for o in outcomes[-len(ids) :]):
                return outcomes  # nothing could be driven: do not spin

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Recover runs until ``stop`` is set (or forever)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            done = await self.run_once()
            if not any(item.result is not None for item in done):  # nothing to do, or stuck
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)

    async def _recover(self, store: SagaStore, run_id: str) -> Recovered:
        self._busy.add(run_id)
        try:
            saga = None
            if self.sagas:
                saga = self.sagas.get((await store.load(run_id)).run.saga_path)
            result = await drive_stored(
                store,
                run_id,
                saga=saga,
                allow_changed_definition=self.allow_changed_definition,
                clock=self.clock,
                abandon_on_cancel=True,  # a worker stopping leaves runs for another one
                broker=self.broker,
            )
            if result is None:
                return Recovered(run_id, finished_elsewhere=True)
            log.info("run %s recovered: %s", run_id, result.status.value)
            return Recovered(run_id, result=result)
        except LeaseHeld as error:
            return Recovered(run_id, error=error)
        except StatesagaError as error:
            log.error("run %s cannot be recovered: %s", run_id, error)
            return Recovered(run_id, error=error)
        except Exception as error:  # a bug in one saga must not stop the others
            log.exception("run %s failed unexpectedly", run_id)
            return Recovered(run_id, error=error)
        finally:
            self._busy.discard(run_id)


async def resume_all(store: StoreLike, **options: object) -> list[Recovered]:
    """Drive every unfinished, unleased run of ``store`` to a terminal state once."""
    return await Worker(store, **options).run_once()  # type: ignore[arg-type]
