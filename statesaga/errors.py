"""Every error statesaga raises on purpose: one root, ``StatesagaError``, and a branch per
layer (definitions, execution, loading, drawing, scaffolding, stores, brokers, the inbox)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

import attrs

from ._urls import hide_credentials


class StatesagaError(Exception):
    """Root of every error statesaga raises on purpose."""


@attrs.frozen
class Problem:
    """One thing wrong with a saga definition.

    Attributes:
        step: The step the problem belongs to, or ``None`` for the saga as a whole.
        message: What is wrong and what to do about it.
    """

    step: str | None
    message: str

    def __str__(self) -> str:
        return f"step {self.step!r}: {self.message}" if self.step else self.message


class DefinitionError(StatesagaError):
    """A saga definition cannot be used."""


class InvalidSagaError(DefinitionError, ValueError):
    """A saga definition has one or more problems; all of them are listed.

    Attributes:
        saga: The saga's name.
        problems: Every problem found, each naming its step.
    """

    def __init__(self, saga: str, problems: Iterable[Problem]) -> None:
        self.saga = saga
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"saga {saga!r} has {count} {noun}:\n{lines}")


class InvalidInputError(StatesagaError, ValueError):
    """A saga's input was refused before any step ran.

    Attributes:
        saga: The saga's name.
        field: The input field at fault.
        problem: What is wrong with it and what is expected instead.
    """

    def __init__(self, saga: str, field: str, problem: str) -> None:
        self.saga = saga
        self.field = field
        self.problem = problem
        super().__init__(f"saga {saga!r}: input {field!r} {problem}")


class ExecutionError(StatesagaError):
    """Something went wrong while running a saga."""


class NonRetryableError(StatesagaError):
    """Raise from an action or compensation to stop retrying it at once."""


class StepTimeoutError(ExecutionError, TimeoutError):
    """A step's action or compensation did not finish within its timeout.

    Its outcome is unknown, so a timed-out action is compensated.
    """

    def __init__(self, saga_id: str, step: str, timeout: float) -> None:
        self.saga_id = saga_id
        self.step = step
        self.timeout = timeout
        super().__init__(f"step {step!r} of saga run {saga_id} timed out after {timeout:g} s")


class OutcomeUnknownError(ExecutionError):
    """Raise from an action that cannot tell whether its effect happened (a lost reply).

    The step is treated like one that timed out: retried if its ``Retry`` allows (with the
    same idempotency key, so the service can recognise the repeat), and compensated if it
    finally fails, since its effect may exist.
    """


class SagaDeadlineError(ExecutionError, TimeoutError):
    """A run passed its saga's ``deadline`` before its pivot: it is compensated.

    Attributes:
        saga_id: The run.
        step: The step the deadline stopped, or ``None`` when it passed between steps.
        deadline: The saga's deadline in seconds.
        interrupted: Whether it cut a running attempt short (whose outcome is then unknown,
            so the step is compensated), rather than stopping a step before an attempt.
        waiting: Whether it ended a wait (``step`` is the wait).
    """

    def __init__(
        self,
        saga_id: str,
        step: str | None,
        deadline: float,
        *,
        interrupted: bool,
        waiting: bool = False,
    ) -> None:
        self.saga_id = saga_id
        self.step = step
        self.deadline = deadline
        self.interrupted = interrupted
        if step is None:
            where = "before its next step"
        elif waiting:
            where = f"while it waited for {step!r}"
        elif interrupted:
            where = f"while step {step!r} ran"
        else:
            where = f"before step {step!r} could try again"
        super().__init__(f"saga run {saga_id} passed its deadline of {deadline:g} s {where}")


class InvalidResultError(ExecutionError, TypeError):
    """An action returned something that is not a mapping (or ``None``)."""

    def __init__(self, saga_id: str, step: str, value: object) -> None:
        self.saga_id = saga_id
        self.step = step
        self.value_type = type(value).__name__
        super().__init__(
            f"step {step!r} of saga run {saga_id} returned {self.value_type}; an action must "
            "return a mapping (such as a dict) or None"
        )


class WaitTimeoutError(ExecutionError, TimeoutError):
    """A ``Wait`` with ``on_timeout="fail"`` got no signal in time: it fails like a step.

    Attributes:
        saga_id: The run.
        step: The wait's name (its event).
        timeout: The seconds it waited.
    """

    def __init__(self, saga_id: str, step: str, timeout: float) -> None:
        self.saga_id = saga_id
        self.step = step
        self.timeout = timeout
        super().__init__(f"saga run {saga_id} waited {timeout:g} s for {step!r} and no signal came")


class RunWaiting(ExecutionError):
    """A durable run stopped at its waits: it is stored as waiting, holding no task or lease,
    until a signal or a timeout makes it due. Raised to whatever drove it (``resume``, a
    worker); ``execute`` and ``RunHandle.result`` wait on instead.

    Attributes:
        run_id: The run.
        events: The events it waits for.
        wake_at: When it is due anyway (epoch seconds; ``None``: only a signal wakes it).
    """

    def __init__(self, run_id: str, events: Iterable[str], wake_at: float | None) -> None:
        self.run_id = run_id
        self.events = tuple(events)
        self.wake_at = wake_at
        super().__init__(f"run {run_id} waits for {', '.join(map(repr, self.events))}")


class RunPaused(ExecutionError):
    """A durable run stopped before its end because its driver was asked to: a worker
    draining before it exits (the steps that were running finished and were committed, no new
    one started), or ``statesaga.shutdown()`` (the steps running were cut short, as by a
    crash). The run is left unfinished, its lease released, for any worker to go on with.

    Attributes:
        run_id: The run.
    """

    def __init__(self, run_id: str, why: str = "paused between steps") -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} {why}: it is unfinished, and any worker (or resume) may go on with it"
        )


class RecordedError(ExecutionError):
    """An error recorded by an earlier process: only its text survives in the store."""


class DefinitionChangedError(ExecutionError):
    """A stored run's saga definition differs from the code that would resume it.

    Attributes:
        run_id: The run.
        stored: The fingerprint recorded when the run started.
        current: The fingerprint of the saga class now.
    """

    def __init__(self, run_id: str, saga: str, stored: str, current: str) -> None:
        self.run_id = run_id
        self.stored = stored
        self.current = current
        super().__init__(
            f"run {run_id} of saga {saga!r} started with definition {stored}, but the code now "
            f"compiles to {current}; resuming could run the wrong steps. If the change is "
            "compatible, resume with allow_changed_definition=True (CLI: --allow-changed)"
        )


class MachineError(StatesagaError):
    """A compiled machine is unsound, or the engine tried a transition it does not have (a
    bug in statesaga: report it)."""


class TargetError(StatesagaError):
    """A saga reference cannot be resolved."""


class RenderError(StatesagaError):
    """A diagram cannot be produced (unknown format, missing Graphviz, bad output path)."""


class ScaffoldError(StatesagaError):
    """A saga folder cannot be generated; nothing was written."""


class MissingExtraError(StatesagaError, ImportError):
    """An adapter's library is not installed.

    Attributes:
        adapter: The adapter that needs it.
        module: The module that could not be imported.
        extra: The statesaga extra that installs it.
    """

    def __init__(self, adapter: str, module: str, extra: str) -> None:
        self.adapter = adapter
        self.module = module
        self.extra = extra
        super().__init__(
            f"{adapter} needs the {module!r} package, which is not installed; "
            f"install it with: pip install 'statesaga[{extra}]'"
        )


class StoreError(StatesagaError):
    """A store cannot do what was asked (bad data, unreachable database, bad URL...).

    Attributes:
        run_id: The run concerned, when there is one.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message)


class StoreNotFound(StoreError):
    """There is no statesaga store at a URL, and ``open(create=False)`` was asked not to make one.

    Raised for a missing SQLite file, a file that is not a statesaga database (empty, not SQLite,
    or a SQLite database without statesaga's tables), and a PostgreSQL schema that is missing or
    holds no statesaga tables.

    Attributes:
        url: The store's URL, password hidden.
        reason: What is there instead (``no such file``, ``schema 'x' does not exist``...).
        foreign: Something that is not a statesaga store is there (not merely nothing).
    """

    def __init__(self, url: str, reason: str, *, foreign: bool = False) -> None:
        self.url = hide_credentials(url)
        self.reason = reason
        self.foreign = foreign
        # Runs create a missing store; one that holds something else is most likely a wrong URL.
        hint = "runs create the store when they start"
        if foreign:
            hint = "it names something that is not a statesaga store"
        super().__init__(
            f"no statesaga store at {self.url} ({reason}): check the store URL (--store or "
            f"$STATESAGA_STORE); {hint}"
        )


class RunNotFound(StoreError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} in this store", run_id=run_id)


class RunExists(StoreError):
    """A new run's id is taken: a ``saga_id`` names one run of a store, once."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id!r} already exists in this store, and a saga_id names one run: start "
            f"this one under a new id (or none, for a generated one). To go on with the run "
            f"already there, resume it (statesaga.resume(store, {run_id!r}), or `statesaga runs "
            f"resume {run_id}`); `statesaga runs show {run_id}` shows it",
            run_id=run_id,
        )


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
        try:
            until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):  # beyond what a datetime holds
            until = f"{expires:.0f} (epoch seconds)"
        left = max(0.0, expires - time.time())
        super().__init__(
            f"run {run_id} is leased to {owner} until {until} (in {left:.0f} s): it is "
            "being driven, or its driver stopped and the run can be taken over when the lease "
            "runs out; `statesaga runs resume RUN_ID --wait` waits for that",
            run_id=run_id,
        )


class SignalRefused(StoreError):
    """A signal cannot be delivered: the run does not wait for that event, its wait is over,
    the run has ended, or the signal's id was used with another payload.

    Attributes:
        run_id: The run.
        event: The signal's event.
        reason: Why it was refused.
    """

    def __init__(self, run_id: str, event: str, reason: str, *, asked: str = "") -> None:
        self.event, self.reason = event, reason
        asked = asked or f"signal {event!r} for"  # or what the caller asked, in its words
        super().__init__(f"{asked} run {run_id} refused: {reason}", run_id=run_id)


class SignalArrived(StoreError):
    """A commit that would park a run or time its wait out found a signal for that wait
    committed first (first committed wins): the run reads its signals again."""

    def __init__(self, run_id: str, events: Iterable[str]) -> None:
        self.events = tuple(events)
        super().__init__(
            f"run {run_id}: a signal for {', '.join(map(repr, self.events))} arrived first",
            run_id=run_id,
        )


class SagaNotImportable(StoreError):
    """A stored run's saga class cannot be imported in this process.

    Attributes:
        run_id: The run.
        reference: The saga reference stored with it (``module:Class`` or ``file.py:Class``).
    """

    def __init__(self, run_id: str, reference: str, why: str) -> None:
        self.reference = reference
        super().__init__(
            f"run {run_id}: cannot import its saga {reference!r} ({why}); run the worker or "
            "command where that module or file can be imported (the folder it is run from "
            "counts for module names), or pass the class: resume(store, run_id, saga=...) or "
            f"Worker(store, sagas={{{reference!r}: ...}})",
            run_id=run_id,
        )


class BrokerError(StatesagaError):
    """A broker could not be reached, or did not confirm a message."""


class InboxError(StatesagaError):
    """The inbox cannot do what was asked (bad URL, unreachable database, misused transaction)."""
