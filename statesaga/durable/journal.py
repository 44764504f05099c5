"""Write-ahead persistence of one run: the recorder that turns its transitions into commits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..json_data import as_stored
from ..result import describe
from ..store.base import Commit, RunRecord, SagaStore, StepRecord, TransitionRecord
from ..vocabulary import CANCEL_EVENT, SAGA_REGION, WAITING_STATUS, saga_status
from .leases import LEASE_SECONDS

if TYPE_CHECKING:
    from ..engine.state import RunState
    from ..messaging.message import Message
    from ..messaging.sender import Sender


_new_tuple = tuple.__new__  # builds a named tuple without calling its __new__


class Journal:
    """A durable run's recorder: turns its new transitions into ``Commit``s, one flush at a
    time.

    It commits before every action or compensation call, after each call's outcome in a DAG
    (siblings may run on for long; in a chain the next call's commit follows at once) and when
    the run ends or stops, so a step is recorded as running before it is called and its result
    is committed before any dependant starts. A flush takes every transition fired since the
    previous one: a success and the next step's start share one commit.

    Messages the run's steps emitted go into the commit that records their success; with a
    ``sender`` they are claimed by that commit and published right after it, while the run
    goes on (``drain`` waits for that).
    """

    def __init__(
        self,
        store: SagaStore,
        record: RunRecord,
        owner: str,
        clock: Clock,
        flushed: int = 0,
        *,
        create: bool = False,
        sender: Sender | None = None,
        errors: Mapping[str, str] | None = None,
    ):
        self.store = store
        self.now = clock.time
        # A new run is created by its first commit, in the same transaction.
        self.create: RunRecord | None = record if create else None
        self.run_id = record.run_id
        self.owner = owner
        self.version = record.version
        self.flushed = flushed  # history entries already stored
        # Each step's last error, kept by later commits (a resumed run starts from the stored
        # ones, so its first commit of a step does not wipe the error out).
        self.errors: dict[str, str] = dict(errors or {})
        self.sender = sender
        self.emitted = 0  # messages of run.outbox already committed
        self.sending: list[asyncio.Future[Any]] = []
        self.released = False  # its lease went with a commit (it parked)
        self._lock = asyncio.Lock()

    def result(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """A step's result as the store will give it back (``StoreError`` if it cannot be
        stored): the run reads this form from now on, as a resumed run would."""
        stored: dict[str, Any] = as_stored(
            value if type(value) is dict else dict(value), what="result", run_id=self.run_id
        )
        return stored

    parks = True

    async def park(self, run: RunState, events: Sequence[str], wake_at: float | None) -> None:
        """Commit the run as waiting for ``events`` until ``wake_at``, its lease let go in the
        same write (due, any driver takes it at once), unless a signal for one of them (or a
        cancellation) was committed first: then ``SignalArrived``."""
        async with self._lock:
            written = self._commit(
                run,
                status=WAITING_STATUS,
                wake_at=wake_at,
                unless_signals=(*events, CANCEL_EVENT),
                release=True,
            )
            assert written is not None  # made whatever is new: it has a status
            await written
            self.released = True

    def before_call(self, run: RunState) -> Awaitable[Any] | None:
        return self.flush(run)

    def after_outcome(self, run: RunState) -> Awaitable[Any] | None:
        return None if run.compiled.sequential else self.flush(run)

    def at_end(self, run: RunState) -> Awaitable[Any] | None:
        return self.flush(run)

    def flush(self, run: RunState) -> Awaitable[Any] | None:
        """Commit what the run did since the last flush (after earlier flushes), to await;
        ``None`` when there is nothing new."""
        if run.compiled.sequential:
            return self._commit(run)  # a chain flushes from one task, one flush at a time
        return self._locked_commit(run)  # a DAG's steps flush from tasks of their own

    async def _locked_commit(self, run: RunState) -> None:
        async with self._lock:
            pending = self._commit(run)
            if pending is not None:
                await pending

    def _commit(
        self,
        run: RunState,
        *,
        status: str | None = None,
        wake_at: float | None = None,
        unless_signals: tuple[str, ...] = (),
        release: bool = False,
    ) -> Awaitable[Any] | None:
        """The commit of the run's new transitions, to await (``None``: nothing new).

        ``status`` (a parked run's), ``wake_at``, ``unless_signals`` and ``release`` go into
        the commit as they are; with a ``status`` it is made even when there is nothing new.

        Without messages to send afterwards, the store's own awaitable is all there is to
        wait for. The journal counts the commit as made as soon as it is handed over; if the
        store then refuses it, the error stops the run, which another driver resumes from the
        store.
        """
        history = run.history
        end = len(history)
        start = self.flushed
        if end == start and status is None:
            return None
        effects = run.compiled.trigger_effects
        errors = self.errors
        results = run.results
        transitions = []
        touched: dict[str, StepRecord] = {}
        for seq in range(start, end):
            trigger, source, dest, at, attempt, error = history[seq]
            text = describe(error)
            transitions.append(
                _new_tuple(TransitionRecord, (seq + 1, trigger, source, dest, at, attempt, text))
            )
            effect = effects.get(trigger)
            if effect is not None:
                step, phase = effect
                if text is None:  # a success or a start keeps the step's last error
                    text = errors.get(step)
                else:
                    errors[step] = text
                touched[step] = StepRecord(step, phase, attempt, results.get(step), text)
        outbox = run.outbox
        emitted = len(outbox)
        messages = outbox[self.emitted : emitted] if emitted > self.emitted else ()
        claim_until = None
        if messages and self.sender is not None:
            claim_until = time.time() + LEASE_SECONDS
        config = run.config
        commit = Commit(
            run_id=self.run_id,
            version=self.version,
            lease_owner=self.owner,
            status=status or saga_status(config[SAGA_REGION]),
            config=dict(config),
            steps=list(touched.values()),
            transitions=transitions,
            updated_at=self.now(),
            failed_step=run.failed_step,
            error=describe(run.error),
            create=self.create,
            messages=messages,
            claim_until=claim_until,
            wake_at=wake_at,
            unless_signals=unless_signals,
            release=release,
        )
        written = self.store.commit(commit)
        self.create = None
        self.version += 1
        self.flushed = end
        self.emitted = emitted
        if messages:
            return self._sent(written, messages, claim_until)
        return written

    async def _sent(
        self,
        written: Awaitable[Sequence[str] | None],
        messages: Sequence[Message],
        claim_until: float | None,
    ) -> None:
        """Wait for a commit that carries messages, then start publishing them."""
        claimed = await written
        if self.sender is not None and claim_until is not None:
            self.sending.append(self.sender.send(messages, claimed or (), self.owner, claim_until))

    async def drain(self) -> None:
        """Wait until the messages sent so far are marked sent or left to the relay."""
        while self.sending:
            sending, self.sending = self.sending, []
            # Shielded: cancelling the run must not cut a publish short (its claim would hold
            # the message back until it runs out).
            await asyncio.shield(asyncio.gather(*sending, return_exceptions=True))
