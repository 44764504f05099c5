"""Time, sleep and randomness, injectable so retry tests need not wait."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol


class Clock(Protocol):
    """Where the engine gets time, sleep and randomness."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for history records)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def random(self) -> float:
        """A number in [0, 1) (for retry jitter)."""
        ...


class SystemClock:
    """The real clock."""

    # Plain builtins rather than methods: the engine reads the time on every transition.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def random(self) -> float:
        return random.random()


SYSTEM_CLOCK = SystemClock()
