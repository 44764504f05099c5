"""The store contract: what a durable backend keeps for each run, and how it is written.

A run is one row (``RunRecord``), one row per step (``StepRecord``) and an append-only history
(``TransitionRecord``). The engine writes through ``SagaStore.commit``: each ``Commit`` carries
the transitions taken since the previous one plus the run's and changed steps' new state, and is
applied atomically, only if the writer still holds the run's lease and saw its latest version.
Backends may group concurrent commits into one transaction (group commit), but each commit
succeeds or fails on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

import attrs

from ..errors import StatesagaError

#: Bumped when stored records change shape; a store refuses data from a newer version.
SCHEMA_VERSION = 1

TERMINAL = frozenset({"completed", "compensated", "failed"})


class StoreError(StatesagaError):
    """A store cannot do what was asked (bad data, unreachable database, bad URL...).

    Attributes:
        run_id: The run concerned, when there is one.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message)


class RunNotFound(StoreError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} in this store", run_id=run_id)


class WriteConflict(StoreError):
    """Another driver took the run over (or wrote it first): stop driving it."""

    def __init__(self, run_id: str, detail: str = "") -> None:
        text = f"run {run_id} was written by another driver"
        super().__init__(f"{text}: {detail}" if detail else text, run_id=run_id)


class LeaseHeld(StoreError):
    """The run is being driven by another worker whose lease has not expired."""

    def __init__(self, run_id: str, owner: str, expires: float) -> None:
        self.owner = owner
        self.expires = expires
        super().__init__(
            f"run {run_id} is leased to {owner} until {expires:.0f} (epoch seconds); "
            "wait for the lease to expire or stop that worker",
            run_id=run_id,
        )


@attrs.frozen
class RunRecord:
    """A run as stored.

    Attributes:
        run_id: The run's id (the saga id).
        saga: The saga's name.
        saga_path: ``module:QualifiedName`` of the saga class, for resuming.
        fingerprint: The compiled machine's fingerprint when the run started.
        input: The saga's input (JSON-serialisable).
        status: The saga region's state: ``running``, ``compensating`` or a terminal state.
        config: The current state of every region of the machine.
        version: Bumped by every commit; a commit must name the version it follows.
        lease_owner: The worker driving the run, if any.
        lease_expires: When that lease ends (epoch seconds).
        created_at: When the run started (epoch seconds).
        updated_at: When it was last written.
        failed_step: The step whose failure stopped the run, if any.
        error: That failure, as text.
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

    @property
    def finished(self) -> bool:
        """Whether the run is in a terminal state."""
        return self.status in TERMINAL


@attrs.frozen
class StepRecord:
    """One step of a run as stored.

    Attributes:
        step: The step's name.
        phase: Its phase: running, succeeded, failed, in_doubt, compensating, compensated or
            compensation_failed.
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


@attrs.frozen
class Commit:
    """One atomic write of a run's progress.

    Applied only if the run's ``version`` equals ``version`` and its lease owner is
    ``lease_owner``; then the run takes ``status``, ``config``, ``failed_step``, ``error`` and
    ``version + 1``, the ``steps`` rows are inserted or replaced, and ``transitions`` are
    appended to the history.

    A run's first commit may carry ``create``, the new run (version 0): it is inserted first,
    in the same transaction, which saves a round trip; a duplicate id fails the commit like
    ``SagaStore.create`` would.
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


@attrs.frozen
class RunSnapshot:
    """Everything stored about one run."""

    run: RunRecord
    steps: Mapping[str, StepRecord]
    history: tuple[TransitionRecord, ...]


class AsyncContext:
    """``async with store:`` opens the store and closes it at the end (for store classes)."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


@runtime_checkable
class SagaStore(Protocol):
    """A durable home for runs. Every method is safe to call from many tasks at once."""

    url: str

    async def open(self) -> None:
        """Connect and create or check the schema (idempotent)."""
        ...

    async def close(self) -> None:
        """Release connections; pending commits finish first."""
        ...

    async def create(self, run: RunRecord) -> None:
        """Insert a new run (version 0). Raises ``StoreError`` if the id exists."""
        ...

    async def commit(self, commit: Commit) -> None:
        """Apply ``commit`` atomically; raise ``WriteConflict`` if its version or lease is stale."""
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
        """Ids of unfinished runs that nobody holds a live lease on, oldest first."""
        ...
