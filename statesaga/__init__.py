"""statesaga: sagas compiled to explicit state machines, run by an async engine."""

from __future__ import annotations

from .clock import Clock, SystemClock
from .compiler import CompiledSaga, Transition, compile_saga
from .context import Context
from .definition import Retry, Step
from .durable import resume
from .errors import (
    DefinitionError,
    ExecutionError,
    InvalidInputError,
    InvalidResultError,
    InvalidSagaError,
    MachineError,
    NonRetryableError,
    OutcomeUnknownError,
    Problem,
    SagaDeadlineError,
    StatesagaError,
    StepTimeoutError,
)
from .render import RenderError, render
from .resources import shutdown
from .result import HistoryEntry, SagaResult, SagaStatus
from .saga import Saga

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "CompiledSaga",
    "Context",
    "DefinitionError",
    "ExecutionError",
    "HistoryEntry",
    "InvalidInputError",
    "InvalidResultError",
    "InvalidSagaError",
    "MachineError",
    "NonRetryableError",
    "OutcomeUnknownError",
    "Problem",
    "RenderError",
    "Retry",
    "Saga",
    "SagaDeadlineError",
    "SagaResult",
    "SagaStatus",
    "StatesagaError",
    "Step",
    "StepTimeoutError",
    "SystemClock",
    "Transition",
    "__version__",
    "compile_saga",
    "render",
    "resume",
    "shutdown",
]
