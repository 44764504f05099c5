"""The classic kit: fault injection by hand, an instant clock (re-exported by
``statesaga.testing``)."""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Iterator
from contextlib import contextmanager

from .._faults import FAULTS, Fault

__all__ = ["FakeClock", "InjectedFault", "fail_step"]


class InjectedFault(Exception):
    """The default error ``fail_step`` raises: an ordinary, retryable error."""


@contextmanager
def fail_step(
    step_name: str,
    *,
    times: int | None = None,
    error: BaseException | type[BaseException] | None = None,
    compensation: bool = False,
) -> Iterator[Fault]:
    """Make a step's action (or compensation) raise, for any saga, inside this block.

    The call raises instead of running the function, so the step leaves no effect. Runs started
    inside the block see the fault (it lives in a context variable, so it follows their task
    tree); code outside does not.

    Args:
        step_name: The step to break.
        times: How many calls fail before the step works again; ``None`` for every call.
        error: The exception (instance or class) to raise; ``InjectedFault`` by default.
        compensation: Break the compensation instead of the action.

    Yields:
        The fault; its ``calls`` attribute counts the calls it failed.
    """
    if times is not None and times < 0:
        raise ValueError(f"times must be >= 0 or None, not {times}")
    fault = Fault(
        step=step_name,
        compensation=compensation,
        remaining=times,
        error=error if error is not None else InjectedFault(f"injected failure of {step_name!r}"),
    )
    token = FAULTS.set((*FAULTS.get(), fault))
    try:
        yield fault
    finally:
        FAULTS.reset(token)


class FakeClock:
    """A clock whose sleeps return at once and advance its time (for retry tests).

    Attributes:
        sleeps: Every delay asked for, in order.
    """

    def __init__(self, start: float = 1_000_000.0, seed: int = 0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._random = _random.Random(seed)

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still yield, as a real sleep would

    def random(self) -> float:
        return self._random.random()
