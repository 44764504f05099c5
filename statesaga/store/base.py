"""The store contract: what a durable backend keeps for each run, and how it is written.

A run is one row (``RunRecord``), one row per step (``StepRecord``) and an append-only history
(``TransitionRecord``). The engine writes through ``SagaStore.commit``: each ``Commit`` carries
the transitions taken since the previous one plus the run's and changed steps' new state, and is
applied atomically, only if the writer still holds the run's lease and saw its latest version.
Backends may group concurrent commits into one transaction (group commit), but each commit
succeeds or fails on its own. A ``waiting`` run is only rows (no lease) until a signal
(``SignalRecord``, ``SagaStore.add_signal``) or its ``wake_at`` makes it due again.

A commit may also carry messages a step emitted (``Commit.messages``): they are written to the
outbox in the same transaction, and the ``outbox_*`` methods let the relay claim, publish and
settle them (see ``docs/optimistic-sending.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

import attrs

from ..errors import LeaseHeld as LeaseHeld
from ..errors import RunNotFound as RunNotFound
from ..errors import SignalArrived as SignalArrived
from ..errors import SignalRefused as SignalRefused
from ..errors import StoreError as StoreError
from ..errors import StoreNotFound as StoreNotFound
from ..errors import WriteConflict as WriteConflict
from ..messaging.message import Message
from ..vocabulary import TERMINAL as TERMINAL
from .browse import RunBrowser

#: Bumped when stored records change shape; a store refuses data from a newer version.
SCHEMA_VERSION = 2

#: The states of an outbox message: waiting to be published, published, given up on.
OUTBOX_STATUSES = ("pending", "sent", "dead")


@attrs.frozen
class RunRecord:
    """A run as stored.

    Attributes:
        run_id: The run's id (the saga id).
        saga: The saga's name.
        saga_path: ``module:QualifiedName`` of the saga class, for resuming.
        fingerprint: The compiled machine's fingerprint when the run started.
        input: The saga's input (JSON-serialisable).
        status: ``running``, ``compensating``, ``waiting`` (no lease, not finished) or terminal.
        config: The current state of every region of the machine.
        version: Bumped by every commit; a commit must name the version it follows.
        lease_owner: The worker driving the run, if any.
        lease_expires: When that lease ends (epoch seconds).
        created_at: When the run started (epoch seconds).
        updated_at: When it was last written.
        failed_step: The step whose failure stopped the run, if any.
        error: That failure, as text.
        wake_at: When a waiting run's timeout falls due (epoch seconds); ``None``: never.
    """

    run_id: str
    saga: str
    saga_path: str
    fingerprint: str
    input: Mapping[str, Any]
    status: str
    config: Mapping[str, str]
    version: int
    lease_owner: str | None
    lease_expires: float | None
    created_at: float
    updated_at: float
    failed_step: str | None = None
    error: str | None = None
    wake_at: float | None = None

    @property
    def finished(self) -> bool:
        """Whether the run is in a terminal state."""
        return self.status in TERMINAL


@attrs.frozen
class StepRecord:
    """One step of a run as stored.

    Attributes:
        step: The step's name.
        phase: Its phase (``running``, ``succeeded``, ``waiting``, ``compensated``, ...).
        attempt: The attempt number of the action (or compensation) last started.
        result: What the action returned, once it succeeded.
        error: The last error, as text.
    """

    step: str
    phase: str
    attempt: int
    result: Mapping[str, Any] | None = None
    error: str | None = None


class TransitionRecord(NamedTuple):
    """One transition in a run's history (a named tuple: a run writes many of them).

    Attributes:
        seq: Position in the run's history, from 1.
        trigger: The trigger fired.
        source: The state left.
        dest: The state entered.
        at: When (epoch seconds).
        attempt: The attempt it belongs to (0 for the saga's own transitions).
        error: The error that caused it, as text.
    """

    seq: int
    trigger: str
    source: str
    dest: str
    at: float
    attempt: int = 0
    error: str | None = None


# Not attrs.frozen: one per step of a durable run, and a frozen __init__ costs ~1 µs more.
@attrs.define
class Commit:
    """One atomic write of a run's progress (not to be changed once made).

    Applied only if the run's ``version`` equals ``version`` and its lease owner is
    ``lease_owner``; then the run takes ``status``, ``config``, ``failed_step``, ``error`` and
    ``version + 1``, the ``steps`` rows are inserted or replaced, and ``transitions`` are
    appended to the history.

    A run's first commit may carry ``create``, the new run (version 0), inserted first in the
    same transaction; a duplicate id fails the commit as ``SagaStore.create`` would.

    ``messages`` (emitted by the steps whose success this commit records) are inserted into the
    outbox in the same transaction, ``pending``; a message id already there is left alone.
    With ``claim_until`` the commit also claims them for ``lease_owner`` until then, for
    optimistic sending, except a keyed message while another unsent message of its key is
    claimed by someone else or by nobody (it would overtake that one): those are left to the
    relay. ``commit`` returns the ids it claimed.

    Every commit writes ``wake_at`` to the run (``None`` unless it parks the run); one that
    passes its checks fails with ``SignalArrived`` if an event of ``unless_signals`` was signalled.
    With ``release`` it also lets go of the lease (a parked run: due, any driver takes it).
    """

    run_id: str
    version: int
    lease_owner: str
    status: str
    config: Mapping[str, str]
    steps: Sequence[StepRecord]
    transitions: Sequence[TransitionRecord]
    updated_at: float
    failed_step: str | None = None
    error: str | None = None
    create: RunRecord | None = None
    messages: Sequence[Message] = ()
    claim_until: float | None = None
    wake_at: float | None = None
    unless_signals: tuple[str, ...] = ()
    release: bool = False


@attrs.frozen
class SignalRecord:
    """A signal delivered to a run: the outside event one of its waits is for.

    Attributes:
        run_id: The run.
        signal_id: The sender's id for it: sending it again is recognised as a duplicate.
        event: The event (the name of the wait it ends).
        payload: What came with it (JSON data).
        at: When it was sent (epoch seconds).
    """

    run_id: str
    signal_id: str
    event: str
    payload: Mapping[str, Any]
    at: float


@attrs.frozen
class RunSnapshot:
    """Everything stored about one run: its steps, its history and its signals by event."""

    run: RunRecord
    steps: Mapping[str, StepRecord]
    history: tuple[TransitionRecord, ...]
    signals: Mapping[str, SignalRecord] = attrs.field(factory=dict)


def check_purgeable(status: str) -> None:
    """Raise ``StoreError`` unless ``status`` is one whose messages may be deleted."""
    if status not in ("sent", "dead"):
        what = "only sent or dead ones (pending ones are still to be delivered)"
        raise StoreError(f"cannot purge {status!r} messages: {what}")


@attrs.frozen
class OutboxRecord:
    """A message in the outbox.

    Attributes:
        message: The message as emitted.
        seq: Its position in the outbox: messages of one key are published in this order.
        status: ``pending``, ``sent`` or ``dead`` (given up on after too many attempts).
        attempts: Failed publishing attempts by a relay.
        retry_at: When it may next be tried (epoch seconds).
        claim_owner: Who is publishing it now, if anyone.
        claim_until: Until when that claim holds (epoch seconds).
        sent_at: When it was confirmed by the broker.
        last_error: Why the last attempt failed.
    """

    message: Message
    seq: int
    status: str
    attempts: int = 0
    retry_at: float = 0.0
    claim_owner: str | None = None
    claim_until: float | None = None
    sent_at: float | None = None
    last_error: str | None = None

    @property
    def id(self) -> str:
        """The message's id."""
        return self.message.id


class AsyncContext:
    """``async with store:`` opens the store and closes it at the end (for store classes)."""

    async def open(self, *, create: bool = True) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


@runtime_checkable
class SagaStore(RunBrowser, Protocol):
    """A durable home for runs, with ``RunBrowser``'s reads. Safe to call from many tasks."""

    url: str

    async def open(self, *, create: bool = True) -> None:
        """Connect, check the schema and create it where it is missing (idempotent).

        Args:
            create: With ``False``, a store that does not exist yet is not created and nothing
                is written: ``StoreNotFound`` is raised instead (for tools that only read). A
                store exists once its schema version is recorded; one that exists opens as
                usual, for reads and writes alike. Only the call that opens the store looks at
                ``create``: once open, ``open()`` returns at once whatever it is given, and a
                store refused with ``create=False`` can still be created by a later ``open()``.

        Raises:
            StoreNotFound: ``create`` is false and there is no statesaga store at ``url``.
            StoreError: The store cannot be reached, or holds data this statesaga cannot use.
        """
        ...

    async def close(self) -> None:
        """Release connections; pending commits finish first."""
        ...

    async def __aenter__(self) -> Self:
        """``async with store:`` opens it (creating it where missing) ..."""

    async def __aexit__(self, *exc: object) -> None:
        """... and closes it at the end."""

    async def create(self, run: RunRecord) -> None:
        """Insert a new run (version 0). Raises ``StoreError`` if the id exists."""
        ...

    def commit(self, commit: Commit) -> Awaitable[Sequence[str] | None]:
        """Apply ``commit`` atomically; raise ``WriteConflict`` if its version or lease is stale.

        Returns the ids of ``commit.messages`` it claimed for ``commit.lease_owner`` (none
        without ``commit.claim_until``), or ``None`` for a commit without messages.
        """
        ...

    async def load(self, run_id: str) -> RunSnapshot:
        """The run with its steps and history. Raises ``RunNotFound`` or ``StoreError``."""
        ...

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by status and saga name."""
        ...

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        """Lease an unfinished run to ``owner`` until ``expires``, bumping its version.

        Succeeds if the run has no lease, its lease ended before ``now``, or ``owner`` holds
        it. Raises ``LeaseHeld`` otherwise, ``RunNotFound`` for an unknown id. Finished runs
        are leased too (a failed one may be reopened); check ``run.finished``.
        """
        ...

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        """Extend ``owner``'s leases; returns the ids whose lease ``owner`` still holds."""
        ...

    async def release(self, run_id: str, owner: str) -> None:
        """Give up ``owner``'s lease on a run (no-op if not held)."""
        ...

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        """Ids of unfinished runs that nobody holds a live lease on: those whose lease ran out
        first (soonest first), then the oldest; a waiting run once its ``wake_at`` is due."""
        ...

    async def waiting(self, limit: int = 100) -> list[RunRecord]:
        """Waiting runs, the soonest ``wake_at`` first (those without one last)."""
        ...

    async def count_waiting(self) -> dict[str, int]:
        """How many runs are waiting, by saga name (sagas with none left out)."""

    async def add_signal(self, signal: SignalRecord) -> bool:
        """Store ``signal`` atomically; ``False`` if it was stored already (same id, event
        and payload). A waiting run's ``wake_at`` becomes at most ``signal.at`` (due at once);
        its version stays, so its driver's commits do not conflict.

        Raises ``RunNotFound``, or ``SignalRefused`` if the id was used with another event or
        payload, the run finished, the event was signalled, or its step is past its wait.
        """
        ...

    async def leased(self, now: float, limit: int = 100) -> list[RunRecord]:
        """Unfinished runs with a live lease at ``now``, the soonest to run out first: runs
        being driven, or left by a driver that stopped until their lease runs out."""
        ...

    # -- the outbox ----------------------------------------------------------------------------

    async def outbox_claim(
        self, owner: str, now: float, until: float, limit: int = 100
    ) -> list[OutboxRecord]:
        """Claim up to ``limit`` pending messages that are due at ``now``, for ``owner``.

        A message is claimed only when no other unsent message of its key is claimed, and
        every earlier one (by ``seq``) is claimed with it: a key's messages go out in order.
        Claims made at once by several callers never overlap. Returned in ``seq`` order.
        """
        ...

    async def outbox_mark_sent(self, ids: Sequence[str], now: float) -> None:
        """Record that the broker confirmed these messages (whoever claimed them)."""
        ...

    async def outbox_mark_failed(
        self, message_id: str, owner: str, error: str, retry_at: float, *, dead: bool
    ) -> None:
        """Count a failed attempt and release ``owner``'s claim: retry at ``retry_at``, or dead."""
        ...

    async def outbox_release(
        self, ids: Sequence[str], owner: str, error: str | None = None
    ) -> None:
        """Give up ``owner``'s claim without counting an attempt (the relay takes them)."""
        ...

    async def outbox_list(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[OutboxRecord]:
        """Messages, newest first, optionally only those in ``status``."""
        ...

    async def outbox_retry(self, ids: Sequence[str] | None, now: float) -> int:
        """Make messages pending again, due at ``now``, attempts from zero: those of ``ids``
        (dead ones, or pending ones to try now rather than after their backoff), or with
        ``None`` every dead message. Returns how many: sent messages and unknown ids stay."""
        ...

    async def outbox_purge(
        self, status: str, before: float, ids: Sequence[str] | None = None
    ) -> int:
        """Delete ``sent`` or ``dead`` messages created before ``before`` (only those of
        ``ids``, if given: other ids are left alone); how many went."""
        ...
