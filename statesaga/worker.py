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
from .durable.waiting import listen_for_signals
from .errors import RunPaused, RunWaiting, SagaNotImportable, SignalArrived, StatesagaError
from .result import SagaResult
from .store.base import LeaseHeld, RunRecord, SagaStore, StoreError

if TYPE_CHECKING:
    from .messaging.broker import Broker

log = logging.getLogger("statesaga.worker")

#: Seconds before a worker tries again a run whose saga it could not import; the longest it
#: waits between looks at a store that does not answer.
IMPORT_RETRY, OUTAGE_RETRY = 60.0, 10.0


@attrs.frozen
class Recovered:
    """What happened to one run a worker picked up.

    Attributes:
        run_id: The run.
        result: Its result, if this worker drove it to a terminal state.
        error: Why it did not (another worker holds it, its saga cannot be imported...).
        finished_elsewhere: Another worker finished it between listing and taking it.
        waiting: It went on until its waits and is stored waiting again (what for, until).
        paused: Drained: the run stopped between steps, committed, its lease released.
    """

    run_id: str
    result: SagaResult | None = None
    error: Exception | None = None
    finished_elsewhere: bool = False
    waiting: RunWaiting | None = None
    paused: bool = False


class Worker:
    """Drives unfinished runs of one store to a terminal state.

    Several workers (processes, machines) may share one store: a run is leased to one worker
    at a time, and another takes it over only after that lease expires.

    A worker needs no closing: a store or broker passed as an object is its caller's; one
    named by URL belongs to the event loop (closed when it ends, or by ``shutdown``).

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
        log_failures: Log why a run could not be driven (off for a caller that reports each
            ``Recovered`` itself, as ``statesaga worker --once`` does).

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
        self._backoff: dict[str, float] = {}  # runs that failed, not taken before then
        self._tasks: set[asyncio.Task[Recovered]] = set()
        self._freed = asyncio.Event()  # a run in hand ended
        self._pause = asyncio.Event()  # set while draining: the runs in hand stop between steps
        #: When ``run``'s loop last went round (``time.monotonic()``): its heartbeat.
        self.beaten_at = time.monotonic()
        self._stopping = False
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None  # cuts run_waiting's wait short

    @property
    def in_hand(self) -> frozenset[str]:
        """The runs this worker is driving right now."""
        return frozenset(self._busy)

    def stop_taking(self) -> None:
        """Take no new run from now on (a wait for leases ends too); runs in hand go on."""
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

    async def run(
        self, stop: asyncio.Event | None = None, *, drain_timeout: float | None = None
    ) -> None:
        """Recover runs until ``stop`` is set (or forever), then drain and return.

        It takes runs as its concurrency frees up, and looks for more every ``poll`` seconds
        while it has room, busy or not: a run whose worker died is taken over within its lease
        and one poll. A store that stops answering is looked at again, less and less often.

        Draining: it takes no new run; each run in hand finishes the steps it is running,
        starts no new one, commits, and releases its lease, so that any worker goes on with
        it at once. Runs still running after ``drain_timeout`` seconds (``None``: no limit)
        are abandoned (left resumable, as a second cancellation does).
        """
        stop = self._stop = stop or asyncio.Event()
        self._stopping = False
        self._pause.clear()
        store = await open_store(self.store)
        signalled = asyncio.Event()
        listening = listen_for_signals(store, signalled)
        outage = 0  # looks in a row the store did not answer
        try:
            while not stop.is_set():
                self.beaten_at = time.monotonic()
                signalled.clear()
                self._freed.clear()
                room = self.concurrency - len(self._tasks)
                try:
                    full = room > 0 and len(await self._take(store, room)) == room
                    # Listing full: more may be free, look again as soon as a run ends.
                    await self._idle(store, stop, signalled, self._freed if full else None)
                except StoreError as error:  # a restart, a failover: wait, look again
                    outage += 1
                    if outage == 1:
                        log.warning("the store does not answer (%s): looking again", error)
                    delay = min(self.poll * 2 ** (outage - 1), OUTAGE_RETRY)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                if outage:
                    log.warning("the store answers again after %d failed look(s)", outage)
                    outage = 0
            await self._drain(drain_timeout)
        finally:
            for task in self._tasks:  # cancelled (a second signal): abandon what is in hand
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            if listening is not None:
                listening.cancel()
                await asyncio.wait([listening])

    @property
    def draining(self) -> bool:
        """Whether ``run`` was asked to stop and is letting the runs in hand settle."""
        return self._pause.is_set()

    async def _take(self, store: SagaStore, room: int) -> list[str]:
        """Start driving up to ``room`` free runs, each in a task of its own; their ids."""
        now = time.time()
        skipped = {*self._unimportable, *self._backoff}
        ids = [
            i
            for i in await store.unfinished(now, limit=room + len(self._busy) + len(skipped))
            if i not in self._busy
            and self._unimportable.get(i, 0.0) <= now
            and self._backoff.get(i, 0.0) <= now
        ][:room]
        for run_id in ids:
            self._busy.add(run_id)  # now: the next listing may come before the task starts
            task = asyncio.ensure_future(self._recover(store, run_id, self._pause))
            self._tasks.add(task)
            task.add_done_callback(self._ended)
        return ids

    def _ended(self, task: asyncio.Task[Recovered]) -> None:
        self._tasks.discard(task)
        self._freed.set()
        if task.cancelled():
            return
        done = task.result()
        if done.error is not None and not isinstance(done.error, SagaNotImportable):
            # Not taken again before the next poll: a run that fails at once must not spin.
            self._backoff[done.run_id] = time.time() + self.poll
        else:
            self._backoff.pop(done.run_id, None)

    async def _drain(self, limit: float | None) -> None:
        """Let the runs in hand settle their running steps and stop (see ``run``)."""
        self._pause.set()
        hand = sorted(self._busy)
        log.info(
            "draining: taking no new runs; %d run(s) in hand finish their running steps%s",
            len(hand),
            "" if limit is None else f" (at most {limit:g} s)",
        )
        until = None if limit is None else time.monotonic() + limit
        while self._tasks and (until is None or time.monotonic() < until):
            self.beaten_at = time.monotonic()  # draining is alive too
            left = self.poll if until is None else min(self.poll, until - time.monotonic())
            await asyncio.wait(list(self._tasks), timeout=max(0.0, left))
        late = list(self._tasks)
        if late:
            log.warning(
                "drain timed out after %g s: abandoning %d run(s) still running (%s); "
                "their leases are released for another worker",
                limit,
                len(late),
                ", ".join(sorted(self._busy)),
            )
            for task in late:
                task.cancel()
            await asyncio.wait(late)
        done = f"the other {len(hand) - len(late)} committed" if late else "every run committed"
        log.info("drained: %s, each lease released", done)

    async def _idle(
        self,
        store: SagaStore,
        stop: asyncio.Event,
        signalled: asyncio.Event,
        freed: asyncio.Event | None = None,
    ) -> None:
        """Wait ``poll`` seconds (less if a waiting run falls due sooner), until a signal is
        heard, ``freed`` is set, or ``stop``."""
        delay = self.poll
        soonest = await store.waiting(limit=1)
        if soonest and soonest[0].wake_at is not None:
            delay = min(delay, max(0.0, soonest[0].wake_at - time.time()))
        events = (stop, signalled) if freed is None else (stop, signalled, freed)
        woken = [asyncio.ensure_future(event.wait()) for event in events]
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
        """Unfinished runs that other drivers (live or dead) hold leases on, soonest to run
        out first (at most ``limit``)."""
        store = await open_store(self.store)
        leased = await store.leased(time.time(), limit)
        return [r for r in leased if r.lease_owner != owner_id()]

    async def run_waiting(
        self, waiting: Callable[[Sequence[RunRecord]], None] | None = None
    ) -> tuple[list[Recovered], list[RunRecord]]:
        """``run_once``, then take over the runs other drivers hold as their leases run out
        (one renewed meanwhile has a live driver: left to it), until none is left or
        ``stop_taking`` is called.

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

    async def _recover(
        self, store: SagaStore, run_id: str, pause: asyncio.Event | None = None
    ) -> Recovered:
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
                pause=pause,
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
        except RunPaused:
            log.info("run %s paused between steps: committed, its lease released", run_id)
            return Recovered(run_id, paused=True)
        except LeaseHeld as error:
            return Recovered(run_id, error=error)
        except SagaNotImportable as error:
            if run_id not in self._unimportable and self.log_failures:
                log.error("run %s cannot be recovered: %s", run_id, error)
            self._unimportable[run_id] = time.time() + IMPORT_RETRY
            return Recovered(run_id, error=error)
        except StatesagaError as error:
            if self.log_failures:
                log.error("run %s not driven to its end (tried again later): %s", run_id, error)
            return Recovered(run_id, error=error)
        except Exception as error:  # a bug in one saga must not stop the others
            if self.log_failures:
                log.exception("run %s failed unexpectedly", run_id)
            return Recovered(run_id, error=error)
        finally:
            self._busy.discard(run_id)


async def resume_all(store: StoreLike, **options: object) -> list[Recovered]:
    """Drive every unfinished, unleased run of ``store`` to a terminal state once."""
    return await Worker(store, **options).run_once()  # type: ignore[arg-type]
