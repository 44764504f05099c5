"""The recovery loop: find unfinished runs nobody drives, and drive them to the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from .clock import Clock
from .definition import SagaDefinition
from .durable.drive import drive_stored
from .durable.leases import owner_id
from .durable.resources import StoreLike, open_store
from .errors import RunWaiting, SagaNotImportable, SignalArrived, StatesagaError
from .result import SagaResult
from .store.base import LeaseHeld, RunRecord, SagaStore

if TYPE_CHECKING:
    from .messaging.broker import Broker

log = logging.getLogger("statesaga.worker")

#: Seconds a worker waits before it tries again a run whose saga it could not import.
IMPORT_RETRY = 60.0


@attrs.frozen
class Recovered:
    """What happened to one run a worker picked up.

    Attributes:
        run_id: The run.
        result: Its result, if this worker drove it to a terminal state.
        error: Why it did not (another worker holds it, its saga cannot be imported...).
        finished_elsewhere: Another worker finished it between listing and taking it.
        waiting: It went on until its waits and is stored waiting again (what for, and
            until when).
    """

    run_id: str
    result: SagaResult | None = None
    error: Exception | None = None
    finished_elsewhere: bool = False
    waiting: RunWaiting | None = None


class Worker:
    """Drives unfinished runs of one store to a terminal state.

    Several workers (processes, machines) may share one store: a run is leased to one worker
    at a time, and another takes it over only after that lease expires.

    A worker opens nothing of its own, so it needs no closing: a store or broker passed as an
    object is its caller's; one named by URL, and the lease keepers and senders of its runs,
    belong to the event loop (closed when it ends, or by ``statesaga.shutdown``).

    Args:
        store: The store or its URL.
        concurrency: How many runs this worker drives at once.
        poll: Seconds between looks for unfinished runs when there were none.
        sagas: Saga classes by stored import path, for sagas not importable by path.
        allow_changed_definition: Resume runs whose saga definition changed.
        clock: Time and randomness for retries.
        broker: Publish the messages the runs' steps emit right after each commit (a broker
            or its URL, checked here: see ``check_broker_url``); without one they wait in the
            outbox for a relay.
        log_failures: Log why a run could not be driven. A caller that reports each run's
            ``Recovered`` itself (``statesaga worker --once``) turns it off, so that a failure
            is told once.

    Raises:
        BrokerError: ``broker`` is a URL that names no usable broker.
    """

    def __init__(
        self,
        store: StoreLike,
        *,
        concurrency: int = 32,
        poll: float = 1.0,
        sagas: Mapping[str, type[SagaDefinition]] | None = None,
        allow_changed_definition: bool = False,
        clock: Clock | None = None,
        broker: Broker | str | None = None,
        log_failures: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if isinstance(broker, str):
            # Refused now, not found out on every run it drives.
            from .messaging.brokers import check_broker_url

            check_broker_url(broker)
        self.store = store
        self.concurrency = concurrency
        self.poll = poll
        self.sagas = dict(sagas or {})
        self.allow_changed_definition = allow_changed_definition
        self.clock = clock
        self.broker = broker
        self.log_failures = log_failures
        self._busy: set[str] = set()
        # Runs whose saga could not be imported, and when to try each again: the error is
        # logged once per run, not once per poll.
        self._unimportable: dict[str, float] = {}
        self._stopping = False
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None  # cuts run_waiting's wait short

    @property
    def in_hand(self) -> frozenset[str]:
        """The runs this worker is driving right now."""
        return frozenset(self._busy)

    def stop_taking(self) -> None:
        """Take no new run from now on (a wait for leases ends too); the runs in hand go on
        to their end."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def run_once(self) -> list[Recovered]:
        """Drive every run that is unfinished and unleased right now; report each."""
        store = await open_store(self.store)
        limit = asyncio.Semaphore(self.concurrency)
        outcomes: list[Recovered] = []

        async def one(run_id: str) -> None:
            async with limit:
                if self.taking:
                    outcomes.append(await self._recover(store, run_id))

        while self.taking:
            now = time.time()
            ids = [
                i
                for i in await store.unfinished(now, limit=500)
                if i not in self._busy and self._unimportable.get(i, 0.0) <= now
            ]
            if not ids:
                return outcomes
            async with asyncio.TaskGroup() as group:
                for run_id in ids:
                    group.create_task(one(run_id))
            if all(o.error is not None for o in outcomes[-len(ids) :]):
                return outcomes  # nothing could be driven: do not spin
        return outcomes

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Recover runs until ``stop`` is set (or forever); once it is set, take no new run
        and return when the runs in hand have ended."""
        stop = self._stop = stop or asyncio.Event()
        self._stopping = False
        store = await open_store(self.store)
        signalled = asyncio.Event()
        listening = _listen(store, signalled)
        try:
            while not stop.is_set():
                signalled.clear()
                done = await self.run_once()
                if not any(item.result is not None for item in done):  # nothing to do, or stuck
                    await self._idle(store, stop, signalled)
        finally:
            if listening is not None:
                listening.cancel()
                await asyncio.wait([listening])

    async def _idle(self, store: SagaStore, stop: asyncio.Event, signalled: asyncio.Event) -> None:
        """Wait ``poll`` seconds, less when a waiting run's timeout falls due sooner, until a
        signal is heard (a store that announces them), or until ``stop``."""
        delay = self.poll
        soonest = await store.waiting(limit=1)
        if soonest and soonest[0].wake_at is not None:
            delay = min(delay, max(0.0, soonest[0].wake_at - time.time()))
        woken = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(signalled.wait())]
        try:
            await asyncio.wait(woken, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in woken:
                waiter.cancel()

    @property
    def taking(self) -> bool:
        """Whether it still takes new runs (``stop_taking`` or ``run``'s ``stop`` ends it)."""
        return not self._stopping and not (self._stop is not None and self._stop.is_set())

    async def leased_elsewhere(self, limit: int = 10_000) -> list[RunRecord]:
        """Unfinished runs that other drivers hold live leases on, soonest to run out first
        (at most ``limit``): runs being driven, or left by a process that died, to be taken
        over once their lease runs out."""
        store = await open_store(self.store)
        leased = await store.leased(time.time(), limit)
        return [r for r in leased if r.lease_owner != owner_id()]

    async def run_waiting(
        self, waiting: Callable[[Sequence[RunRecord]], None] | None = None
    ) -> tuple[list[Recovered], list[RunRecord]]:
        """``run_once``, then wait for the leases other drivers hold and take those runs over
        as their leases run out, until none is left or ``stop_taking`` is called.

        A run whose lease is renewed meanwhile has a live driver: it is left to it.

        Args:
            waiting: Called with the runs it is about to wait for, before each wait.

        Returns:
            What it did to each run it picked up, and the runs still leased to others when it
            returned (those of live drivers, or also those it was waiting for when stopped).
        """
        outcomes = await self.run_once()
        first_seen: dict[str, float] = {}
        leased: list[RunRecord] = []
        wake = self._wake = asyncio.Event()
        while self.taking:
            leased = await self.leased_elsewhere()
            # Renewed since first seen: a live driver holds it, and it is not waited for.
            pending = [
                r
                for r in leased
                if (r.lease_expires or 0.0)
                <= first_seen.setdefault(r.run_id, r.lease_expires or 0.0)
            ]
            if not pending:
                break
            if waiting is not None:
                waiting(pending)
            # Until the soonest lease runs out, then take what is free.
            soonest = min(r.lease_expires or 0.0 for r in pending)
            with contextlib.suppress(TimeoutError):
                delay = max(0.0, soonest - time.time()) + min(self.poll, 1.0)
                await asyncio.wait_for(wake.wait(), delay)
            outcomes += await self.run_once()
        return outcomes, leased

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
            self._unimportable.pop(run_id, None)
            log.info("run %s recovered: %s", run_id, result.status.value)
            return Recovered(run_id, result=result)
        except RunWaiting as waits:
            log.info("run %s waits for %s", run_id, ", ".join(waits.events))
            return Recovered(run_id, waiting=waits)
        except SignalArrived:  # it is due again at once: the next look takes it
            return Recovered(run_id)
        except LeaseHeld as error:
            return Recovered(run_id, error=error)
        except SagaNotImportable as error:
            if run_id not in self._unimportable and self.log_failures:
                log.error("run %s cannot be recovered: %s", run_id, error)
            self._unimportable[run_id] = time.time() + IMPORT_RETRY
            return Recovered(run_id, error=error)
        except StatesagaError as error:
            if self.log_failures:
                log.error("run %s cannot be recovered: %s", run_id, error)
            return Recovered(run_id, error=error)
        except Exception as error:  # a bug in one saga must not stop the others
            if self.log_failures:
                log.exception("run %s failed unexpectedly", run_id)
            return Recovered(run_id, error=error)
        finally:
            self._busy.discard(run_id)


def _listen(store: SagaStore, signalled: asyncio.Event) -> asyncio.Task[None] | None:
    """A task that sets ``signalled`` whenever ``store`` announces a signal (PostgreSQL's
    notifications), or ``None`` for a store that does not (it is polled)."""
    heard = getattr(store, "signals_heard", None)
    if heard is None:
        return None

    async def listen() -> None:
        while True:
            try:
                async for _ in heard():
                    signalled.set()
            except StatesagaError as error:  # the connection went: poll meanwhile, then again
                log.warning("not hearing signals (%s); polling until it works again", error)
            except Exception:
                log.exception("not hearing signals; polling until it works again")
            await asyncio.sleep(5.0)

    return asyncio.get_running_loop().create_task(listen(), name="statesaga:signals")


async def resume_all(store: StoreLike, **options: object) -> list[Recovered]:
    """Drive every unfinished, unleased run of ``store`` to a terminal state once."""
    return await Worker(store, **options).run_once()  # type: ignore[arg-type]
