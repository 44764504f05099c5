"""Sagas that wait, for the crash tests of waits: every call goes to an append-only ledger.

The ledger (``$CRASH_LEDGER``) stands for the outside world: one JSON object a line, written
with ``os.write`` on an ``O_APPEND`` descriptor, so a line written before the process is
killed is never lost. ``$CRASH_DIE_IN_SHIP=1`` makes ``ship`` SIGKILL its own process right
after it noted its call (its effect taken, its result not yet committed).
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from statesaga import Saga, Step, Wait
from statesaga.context import Context

_FD: int | None = None


def _ledger_fd() -> int:
    global _FD
    if _FD is None:
        _FD = os.open(os.environ["CRASH_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _FD


def note(kind: str, ctx: Context, **extra: Any) -> None:
    """Append one call of a step (or compensation) to the ledger."""
    line = {
        "kind": kind,
        "run": ctx.saga_id,
        "step": ctx.step,
        "key": ctx.idempotency_key,
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        **extra,
    }
    os.write(_ledger_fd(), (json.dumps(line) + "\n").encode())


async def reserve(ctx: Context) -> dict[str, int]:
    note("reserve", ctx)
    return {"room": 12}


async def release(ctx: Context) -> None:
    note("release", ctx)


async def ship(ctx: Context) -> dict[str, Any]:
    paid = ctx.results["paid"]
    note("ship", ctx, paid=paid)
    if os.environ.get("CRASH_DIE_IN_SHIP") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"charged": paid.get("amount")}


class Paid(Saga):
    """Waits for its payment as long as it takes."""

    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid"),
        Step("ship", ship),
    )


class PaidOrFail(Saga):
    """Gives up after a second without payment: the reservation is released."""

    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=1),
        Step("ship", ship),
    )


class PaidOrGoOn(Saga):
    """Ships after a second without payment (a durable sleep)."""

    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=1, on_timeout="continue"),
        Step("ship", ship),
    )


SAGAS: dict[str, type[Saga]] = {cls.__name__: cls for cls in (Paid, PaidOrFail, PaidOrGoOn)}
