"""The reference store: everything in process memory, with the same rules as the others."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ..errors import RunExists
from . import _signals
from ._codec import dumps
from ._memory_browse import MemoryBrowsing
from .base import (
    AsyncContext,
    Commit,
    LeaseHeld,
    OutboxRecord,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    SignalArrived,
    SignalRecord,
    StepRecord,
    TransitionRecord,
    WriteConflict,
    check_purgeable,
)

if TYPE_CHECKING:
    from ..messaging.message import Message


class MemoryStore(MemoryBrowsing, AsyncContext):
    """Keeps runs in a dict: for tests, and for runs that need history but not durability."""

    url = "memory://"

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._history: dict[str, list[TransitionRecord]] = {}
        self._signals: dict[str, dict[str, SignalRecord]] = {}  # by run, then signal id
        self._outbox: dict[str, OutboxRecord] = {}  # by id, in seq order
        # The ids of messages not sent yet, in seq order: what claims and key checks look at,
        # however many sent messages pile up.
        self._unsent: dict[str, None] = {}
        self._unsent_by_key: dict[str, dict[str, None]] = {}  # the same, keyed messages by key
        self._seq = 0
        self._lock = asyncio.Lock()

    async def open(self, *, create: bool = True) -> None:
        """Nothing to connect to. ``create`` changes nothing: a memory store keeps nothing
        outside its process, so there is never an existing store to find or miss."""
        return None

    async def close(self) -> None:
        return None

    async def create(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise RunExists(run.run_id)
        # Stored as JSON would store it, so memory runs behave like durable ones.
        data = json.loads(dumps(run.input, run_id=run.run_id))
        self._runs[run.run_id] = attrs.evolve(run, input=data)
        self._steps[run.run_id] = {}
        self._history[run.run_id] = []
        self._signals[run.run_id] = {}

    async def commit(self, commit: Commit) -> Sequence[str] | None:
        if commit.create is not None:
            await self.create(commit.create)
        run = self._runs.get(commit.run_id)
        if run is None:
            raise RunNotFound(commit.run_id)
        if run.lease_owner != commit.lease_owner or run.version != commit.version:
            raise WriteConflict(
                commit.run_id,
                f"expected version {commit.version} leased to {commit.lease_owner}, found "
                f"version {run.version} leased to {run.lease_owner}",
            )
        if commit.unless_signals:
            arrived = {s.event for s in self._signals[commit.run_id].values()}
            if arrived.intersection(commit.unless_signals):
                events = [e for e in commit.unless_signals if e in arrived]
                raise SignalArrived(commit.run_id, events)
        # Serialise first: a commit that cannot be stored changes nothing.
        steps = [
            attrs.evolve(
                step,
                result=None
                if step.result is None
                else json.loads(dumps(step.result, run_id=commit.run_id)),
            )
            for step in commit.steps
        ]
        messages = [_stored(message, commit.run_id) for message in commit.messages]
        self._runs[commit.run_id] = attrs.evolve(
            run,
            status=commit.status,
            config=dict(commit.config),
            version=run.version + 1,
            updated_at=commit.updated_at,
            failed_step=commit.failed_step,
            error=commit.error,
            wake_at=commit.wake_at,
            lease_owner=None if commit.release else run.lease_owner,
            lease_expires=None if commit.release else run.lease_expires,
        )
        self._steps[commit.run_id].update((step.step, step) for step in steps)
        self._history[commit.run_id].extend(commit.transitions)
        if not messages:
            return None
        return self._insert(messages, commit.lease_owner, commit.claim_until)

    def _insert(self, messages: list[Message], owner: str, until: float | None) -> list[str]:
        now = time.time()
        # Each key is looked at once, before the inserts (as the SQL stores do): what this
        # commit claims is live and ``owner``'s, so it never blocks the commit's later ones.
        keys = {m.key for m in messages if m.key is not None}
        blocked = self._blocked(keys, owner, now) if until is not None and keys else set()
        claimed = []
        for message in messages:
            if message.id in self._outbox:
                continue
            take = until is not None and (message.key is None or message.key not in blocked)
            self._seq += 1
            self._unsent[message.id] = None
            if message.key is not None:
                self._unsent_by_key.setdefault(message.key, {})[message.id] = None
            self._outbox[message.id] = OutboxRecord(
                message,
                self._seq,
                "pending",
                retry_at=0.0,  # due at once, whatever the emitting worker's clock says
                claim_owner=owner if take else None,
                claim_until=until if take else None,
            )
            if take:
                claimed.append(message.id)
        return claimed

    def _blocked(self, keys: set[str], owner: str, now: float) -> set[str | None]:
        """Those ``keys`` with an unsent message that ``owner`` is not sending right now."""
        blocked: set[str | None] = set()
        for key in keys:
            for message_id in self._unsent_by_key.get(key, ()):
                r = self._outbox[message_id]
                if r.claim_owner != owner or (r.claim_until or 0) < now:
                    blocked.add(key)
                    break
        return blocked

    def _forget_unsent(self, record: OutboxRecord) -> None:
        """Take a message that was sent (or is purged) out of the unsent indexes."""
        self._unsent.pop(record.id, None)
        key = record.message.key
        if key is not None and key in self._unsent_by_key:
            ids = self._unsent_by_key[key]
            ids.pop(record.id, None)
            if not ids:
                del self._unsent_by_key[key]

    async def load(self, run_id: str) -> RunSnapshot:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return RunSnapshot(
            run=run,
            steps=copy.deepcopy(self._steps[run_id]),
            history=tuple(self._history[run_id]),
            signals=copy.deepcopy({s.event: s for s in self._signals[run_id].values()}),
        )

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if (status is None or r.status == status) and (saga is None or r.saga == saga)
        ]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs[:limit]

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        held = run.lease_owner not in (None, owner) and (run.lease_expires or 0) >= now
        if held:
            raise LeaseHeld(run_id, run.lease_owner or "", run.lease_expires or 0)
        self._runs[run_id] = attrs.evolve(
            run, lease_owner=owner, lease_expires=expires, version=run.version + 1
        )
        return await self.load(run_id)

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        kept = set()
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is not None and run.lease_owner == owner:
                self._runs[run_id] = attrs.evolve(run, lease_expires=expires)
                kept.add(run_id)
        return kept

    async def release(self, run_id: str, owner: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.lease_owner == owner:
            self._runs[run_id] = attrs.evolve(run, lease_owner=None, lease_expires=None)

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        runs = [
            r
            for r in self._runs.values()
            if not r.finished
            and (r.lease_owner is None or (r.lease_expires or 0) < now)
            and (r.status != _signals.WAITING or (r.wake_at is not None and r.wake_at <= now))
        ]
        # What a dead driver left first, soonest lease run out first; then oldest first.
        runs.sort(
            key=lambda r: (
                (1, r.created_at, r.run_id)
                if r.lease_owner is None or r.status == _signals.WAITING
                else (0, r.lease_expires or 0, r.run_id)
            )
        )
        return [r.run_id for r in runs[:limit]]

    async def waiting(self, limit: int = 100) -> list[RunRecord]:
        runs = [r for r in self._runs.values() if r.status == _signals.WAITING]
        runs.sort(key=lambda r: (r.wake_at is None, r.wake_at or 0, r.created_at, r.run_id))
        return runs[: max(limit, 0)]

    async def count_waiting(self) -> dict[str, int]:
        return dict(Counter(r.saga for r in self._runs.values() if r.status == _signals.WAITING))

    async def add_signal(self, signal: SignalRecord) -> bool:
        run = self._runs.get(signal.run_id)
        if run is None:
            raise RunNotFound(signal.run_id)
        signal = _signals.as_stored(signal)
        signals = self._signals[signal.run_id]
        same_id, same_event, cancelled = _signals.found(signal, signals.values())
        step = self._steps[signal.run_id].get(signal.event)
        if not _signals.check(
            signal,
            status=run.status,
            same_id=same_id,
            same_event=same_event,
            cancelled=cancelled,
            phase=None if step is None else step.phase,
        ):
            return False
        signals[signal.signal_id] = signal
        if run.status == _signals.WAITING:
            wake_at = _signals.wake_at(run.wake_at, signal, time.time())
            self._runs[signal.run_id] = attrs.evolve(run, wake_at=wake_at)
        return True

    async def leased(self, now: float, limit: int = 100) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if not r.finished and r.lease_owner is not None and (r.lease_expires or 0) >= now
        ]
        runs.sort(key=lambda r: (r.lease_expires or 0, r.run_id))
        return runs[: max(limit, 0)]

    # -- the outbox ----------------------------------------------------------------------------

    async def outbox_claim(
        self, owner: str, now: float, until: float, limit: int = 100
    ) -> list[OutboxRecord]:
        unsent = [self._outbox[i] for i in self._unsent]
        busy = {r.message.key for r in unsent if _live(r, now)}  # a key being sent waits
        blocked: set[str | None] = set()
        claimed: list[OutboxRecord] = []
        for record in unsent:
            key = record.message.key
            if len(claimed) >= limit:
                break
            if key is not None and (key in busy or key in blocked):
                continue
            if record.status != "pending" or record.retry_at > now or _live(record, now):
                if key is not None:
                    blocked.add(key)  # its later messages wait for this one
                continue
            claimed.append(attrs.evolve(record, claim_owner=owner, claim_until=until))
        for record in claimed:
            self._outbox[record.id] = record
        return claimed

    async def outbox_mark_sent(self, ids: Sequence[str], now: float) -> None:
        for message_id in ids:
            record = self._outbox.get(message_id)
            if record is not None and record.status == "pending":
                self._outbox[message_id] = attrs.evolve(
                    record, status="sent", sent_at=now, claim_owner=None, claim_until=None
                )
                self._forget_unsent(record)

    async def outbox_mark_failed(
        self, message_id: str, owner: str, error: str, retry_at: float, *, dead: bool
    ) -> None:
        record = self._outbox.get(message_id)
        if record is None or record.status != "pending" or record.claim_owner != owner:
            return
        self._outbox[message_id] = attrs.evolve(
            record,
            status="dead" if dead else "pending",
            attempts=record.attempts + 1,
            retry_at=retry_at,
            claim_owner=None,
            claim_until=None,
            last_error=error,
        )

    async def outbox_release(
        self, ids: Sequence[str], owner: str, error: str | None = None
    ) -> None:
        for message_id in ids:
            record = self._outbox.get(message_id)
            if record is None or record.status != "pending" or record.claim_owner != owner:
                continue
            self._outbox[message_id] = attrs.evolve(
                record,
                claim_owner=None,
                claim_until=None,
                last_error=record.last_error if error is None else error,
            )

    async def outbox_list(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[OutboxRecord]:
        records = [r for r in self._outbox.values() if status is None or r.status == status]
        return records[::-1][: max(limit, 0)]

    async def outbox_retry(self, ids: Sequence[str] | None, now: float) -> int:
        wanted = None if ids is None else set(ids)
        count = 0
        for record in [self._outbox[i] for i in self._unsent]:  # a sent one stays sent
            if wanted is None and record.status != "dead":
                continue
            if wanted is not None and (record.id not in wanted or record.status == "sent"):
                continue
            self._outbox[record.id] = attrs.evolve(
                record, status="pending", attempts=0, retry_at=now
            )
            count += 1
        return count

    async def outbox_purge(
        self, status: str, before: float, ids: Sequence[str] | None = None
    ) -> int:
        check_purgeable(status)
        wanted = None if ids is None else set(ids)
        gone = [
            r.id
            for r in self._outbox.values()
            if r.status == status
            and r.message.created_at < before
            and (wanted is None or r.id in wanted)
        ]
        for message_id in gone:
            self._forget_unsent(self._outbox.pop(message_id))
        return len(gone)


def _live(record: OutboxRecord, now: float) -> bool:
    return record.claim_owner is not None and (record.claim_until or 0) >= now


def _stored(message: Message, run_id: str) -> Message:
    """``message`` as a store gives it back: payload and headers through JSON."""
    return attrs.evolve(
        message,
        payload=json.loads(dumps(message.payload, run_id=run_id)),
        headers=json.loads(dumps(dict(message.headers), run_id=run_id)),
    )
