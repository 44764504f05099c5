"""Sagas the waits benchmark starts, imported by the worker processes it runs.

The step after each wait appends ``<run id> <epoch seconds>`` to ``$STATESAGA_BENCH_LOG``, so
the benchmark sees when a wait ended in another process (same machine, same clock).
"""

from __future__ import annotations

import os
import time
from typing import Any

from statesaga import Saga, Step, Wait


async def noop(ctx: Any) -> None:
    """A no-op step."""
    return None


async def mark(ctx: Any) -> None:
    """Note when the wait before it ended."""
    path = os.environ.get("STATESAGA_BENCH_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:  # noqa: ASYNC230  # one short line
            log.write(f"{ctx.saga_id} {time.time():.6f}\n")


class Sleeps(Saga):
    """Waits for nothing but its timeout (set per class below), then notes it."""

    steps = (Wait("nap", timeout=3600, on_timeout="continue"), Step("woke", mark))


class ShortSleeps(Saga):
    """Like ``Sleeps``, due within seconds."""

    steps = (Wait("nap", timeout=2.0, on_timeout="continue"), Step("woke", mark))


class Paid(Saga):
    """Waits for its signal, then notes it."""

    steps = (Step("reserve", noop), Wait("paid"), Step("ship", mark))
