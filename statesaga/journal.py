"""Write-ahead persistence of one run: the engine's transitions become store commits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from . import _faults
from .compiler import saga_status
from .leases import LEASE_SECONDS
from .store._codec import dumps
from .store.base import Commit, RunRecord, SagaStore, StepRecord, TransitionRecord

if TYPE_CHECKING:
    from .engine import _Run
    from .messaging.sender import Sender


def _new_record(fields: tuple[Any, ...]) -> TransitionRecord:
    return tuple.__new__(TransitionRecord, fields)


def describe(error: object) -> str | None:
    """An error as stored text (already-stored text passes through)."""
    if error is None or isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"


class Journal:
    """Turns a run's new transitions into ``Commit``s, one flush at a time.

    The engine flushes before every action or compensation call and when the run ends, so a
    step is recorded as running before it is called and its result is committed before any
    dependant starts. A flush takes every transition fired since the previous one: a success
    and the next step's start share one commit.

    Messages the run's steps emitted go into the commit that records their success; with a
    ``sender`` they are claimed by that commit and published right after it, while the run
    goes on (``drain`` waits for that).
    """

    def __init__(
        self,
        store: SagaStore,
        record: RunRecord,
        owner: str,
        flushed: int = 0,
        *,
        create: bool = False,
        sender: Sender | None = None,
    ):
        self.store = store
        # A new run is created by its first commit, in the same transaction.
        self.create: RunRecord | None = record if create else None
        self.run_id = record.run_id
        self.owner = owner
        self.version = record.version
        self.flushed = flushed  # history entries already stored
        self.steps: dict[str, StepRecord] = {}
        self.sender = sender
        self.emitted = 0  # messages of run.outbox already committed
        self.sending: list[asyncio.Future[Any]] = []
        self._lock = asyncio.Lock()

    def check_result(self, value: Any) -> None:
        """Raise ``StoreError`` now if a step's result cannot be stored."""
        dumps(value, run_id=self.run_id)

    def flush(self, run: _Run) -> Awaitable[None]:
        """Commit what the run did since the last flush (waits for earlier flushes): await it."""
        if run.c.sequential:
            return self._commit(run)  # a chain flushes from one task, one flush at a time
        return self._locked_commit(run)  # a DAG's steps flush from tasks of their own

    async def _locked_commit(self, run: _Run) -> None:
        async with self._lock:
            await self._commit(run)

    async def _commit(self, run: _Run) -> None:
        history = run.history
        end = len(history)
        if end == self.flushed:
            return
        transitions = []
        touched: dict[str, StepRecord] = {}
        results = run.results
        for seq in range(self.flushed, end):
            trigger, source, dest, at, attempt, error = history[seq]
            text = describe(error)
            transitions.append(_new_record((seq + 1, trigger, source, dest, at, attempt, text)))
            step, dot, _ = trigger.partition(".")
            if dot:
                if text is None:  # a success or a start keeps the step's last error
                    previous = touched.get(step) or self.steps.get(step)
                    text = previous.error if previous is not None else None
                phase = dest.partition(".")[2]
                touched[step] = StepRecord(step, phase, attempt, results.get(step), text)
        outbox = run.outbox
        emitted = len(outbox)
        messages = outbox[self.emitted : emitted] if emitted > self.emitted else ()
        claim_until = None
        if messages and self.sender is not None:
            claim_until = time.time() + LEASE_SECONDS
        commit = Commit(
            run_id=self.run_id,
            version=self.version,
            lease_owner=self.owner,
            status=saga_status(run.config["saga"]),
            config=dict(run.config),
            steps=list(touched.values()),
            transitions=transitions,
            updated_at=run.now(),
            failed_step=run.failed_step,
            error=describe(run.error),
            create=self.create,
            messages=messages,
            claim_until=claim_until,
        )
        claimed = await self.store.commit(commit)
        self.create = None
        self.version += 1
        self.flushed = end
        self.emitted = emitted
        self.steps.update(touched)
        if messages:
            _faults.crash_point("after-outbox-commit")
            if self.sender is not None and claim_until is not None:
                self.sending.append(
                    self.sender.send(messages, claimed or (), self.owner, claim_until)
                )

    async def drain(self) -> None:
        """Wait until the messages sent so far are marked sent or left to the relay."""
        while self.sending:
            sending, self.sending = self.sending, []
            # Shielded: cancelling the run must not cut a publish short (its claim would hold
            # the message back until it runs out).
            await asyncio.shield(asyncio.gather(*sending, return_exceptions=True))
