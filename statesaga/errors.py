"""Exception hierarchy: one root, one branch per layer."""

from __future__ import annotations

from collections.abc import Iterable

import attrs


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
    """

    def __init__(
        self, saga_id: str, step: str | None, deadline: float, *, interrupted: bool
    ) -> None:
        self.saga_id = saga_id
        self.step = step
        self.deadline = deadline
        self.interrupted = interrupted
        if step is None:
            where = "before its next step"
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


class MachineError(ExecutionError):
    """The engine tried a transition its compiled machine does not have (a bug: report it)."""
