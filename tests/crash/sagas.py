"""Sagas for the crash tests: every effect goes to an append-only ledger file.

The ledger stands for the outside world. Its lines are written with ``os.write`` on an
``O_APPEND`` descriptor, so a line written before the process is killed is never lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

from statesaga import Saga, Step
from statesaga.context import Context

_FD: int | None = None


def ledger_fd() -> int:
    global _FD
    if _FD is None:
        _FD = os.open(os.environ["CRASH_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _FD


def note(*words: object) -> None:
    os.write(ledger_fd(), (" ".join(map(str, words)) + "\n").encode())


async def pause() -> None:
    await asyncio.sleep(random.random() * 0.02)


async def act(ctx: Context) -> dict[str, int]:
    note("start", ctx.saga_id, ctx.step, ctx.idempotency_key, os.getpid(), time.monotonic())
    try:
        await pause()
        if ctx.step == "charge" and ctx.data["fail"]:
            raise RuntimeError("card declined")
        note("do", ctx.saga_id, ctx.step, ctx.idempotency_key, os.getpid(), time.monotonic())
        await pause()
        return {"attempt": ctx.attempt}
    finally:  # not reached when the process is killed: the span then ends at the kill
        note("end", ctx.saga_id, ctx.step, ctx.idempotency_key, os.getpid(), time.monotonic())


async def undo(ctx: Context) -> None:
    await pause()
    note("undo", ctx.saga_id, ctx.step, ctx.idempotency_key, os.getpid(), time.monotonic())
    await pause()


class CrashChain(Saga):
    steps = (
        Step("reserve", act, compensate=undo),
        Step("hold", act, compensate=undo),
        Step("charge", act, compensate=undo),
        Step("ship", act),
    )


class CrashDag(Saga):
    steps = (
        Step("reserve", act, compensate=undo),
        Step("hold", act, compensate=undo, depends_on="reserve"),
        Step("quote", act, compensate=undo, depends_on="reserve"),
        Step("charge", act, compensate=undo, depends_on=["hold", "quote"]),
        Step("ship", act, depends_on="charge"),
    )
