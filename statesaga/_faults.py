"""Fault injection for tests: the engine's side of ``statesaga.testing.fail_step``."""

from __future__ import annotations

from contextvars import ContextVar

import attrs


@attrs.define
class Fault:
    """Make calls of one step's action (or compensation) raise."""

    step: str
    compensation: bool
    remaining: int | None
    error: BaseException | type[BaseException]
    calls: int = 0

    def trip(self) -> BaseException | None:
        """The error to raise for this call, or ``None`` once ``times`` calls have failed."""
        if self.remaining is not None:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        self.calls += 1
        error = self.error
        return error() if isinstance(error, type) else error


FAULTS: ContextVar[tuple[Fault, ...]] = ContextVar("statesaga_faults", default=())


def injected(step: str, compensation: bool) -> BaseException | None:
    """The error a fault asks this call to raise, if any."""
    for fault in FAULTS.get():
        if fault.step == step and fault.compensation == compensation:
            error = fault.trip()
            if error is not None:
                return error
    return None
