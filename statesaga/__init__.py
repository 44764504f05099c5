"""statesaga: sagas compiled to explicit state machines, run by an async engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .clock import Clock, SystemClock
from .compiler import CompiledSaga, Transition, compile_saga
from .context import Context
from .definition import Retry, Step, Wait
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
    RunExists,
    RunNotFound,
    SagaDeadlineError,
    SignalRefused,
    StatesagaError,
    StepTimeoutError,
    WaitTimeoutError,
)
from .handle import RunHandle
from .render import RenderError, render
from .result import HistoryEntry, SagaResult, SagaStatus
from .saga import Saga

if TYPE_CHECKING:
    from .durable import resume, shutdown, signal

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
    "RunExists",
    "RunHandle",
    "RunNotFound",
    "Saga",
    "SagaDeadlineError",
    "SagaResult",
    "SagaStatus",
    "SignalRefused",
    "StatesagaError",
    "Step",
    "StepTimeoutError",
    "SystemClock",
    "Transition",
    "Wait",
    "WaitTimeoutError",
    "__version__",
    "compile_saga",
    "render",
    "resume",
    "shutdown",
    "signal",
]


def __getattr__(name: str) -> object:
    """``resume``, ``shutdown`` and ``signal``, imported when first asked for: they bring in
    the stores."""
    # An in-memory saga never needs a store or a broker: their modules (and cattrs, and the
    # database drivers behind them) load with the first durable run instead.
    found: object
    if name == "resume":
        from .durable import resume as found
    elif name == "shutdown":
        from .durable import shutdown as found
    elif name == "signal":
        from .durable import signal as found
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = found
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
