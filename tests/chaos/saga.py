"""The saga the chaos test's workers import: three steps, each a random 0 to 50 ms (seeded per
run and step), each recording every execution in an effects table and emitting one message
keyed by its run.

The effects table lives in the store's PostgreSQL schema (``$CHAOS_POSTGRES``, a URL with
``?schema=``); each execution inserts its row when it starts, in its own transaction, so a
worker killed in the middle of a step still leaves its trace.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg

from statesaga import Saga, Step
from statesaga.context import Context

STEPS = ("a", "b", "c")
#: Connections a worker process opens to record effects.
POOL_SIZE = 4

EFFECTS_TABLE = """
CREATE TABLE IF NOT EXISTS chaos_effects (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step text NOT NULL,
    idem_key text NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    started_at float8 NOT NULL,
    finished_at float8)
"""


def connection_args(url: str) -> tuple[str, str]:
    """A PostgreSQL URL with ``?schema=NAME``: the URL without it, and the schema."""
    parts = urlsplit(url)
    schema = parse_qs(parts.query).get("schema", ["public"])[-1]
    return urlunsplit(parts._replace(query="")), schema


def step_seconds(seed: int, run_id: str, step: str) -> float:
    """How long ``step`` of ``run_id`` takes: 0 to 50 ms, the same on every execution."""
    return random.Random(f"{seed}:{run_id}:{step}").uniform(0.0, 0.05)


class _Pool:
    """A few autocommit connections of this process, opened on first use."""

    def __init__(self) -> None:
        self._idle: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> asyncio.Queue[psycopg.AsyncConnection[Any]]:
        async with self._opening:
            if self._idle is None:
                url, schema = connection_args(os.environ["CHAOS_POSTGRES"])
                idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
                for _ in range(POOL_SIZE):
                    conn = await psycopg.AsyncConnection.connect(
                        url, autocommit=True, options=f"-c search_path={schema}"
                    )
                    idle.put_nowait(conn)
                self._idle = idle
            return self._idle

    async def execute(self, query: str, params: tuple[Any, ...]) -> Any:
        idle = await self._open()
        conn = await idle.get()
        try:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone() if cursor.description is not None else None
        finally:
            idle.put_nowait(conn)


_POOL = _Pool()


async def act(ctx: Context) -> dict[str, Any]:
    """Record this execution, take the run's time for this step, emit one message."""
    (row,) = await _POOL.execute(
        "INSERT INTO chaos_effects (run_id, step, idem_key, attempt, pid, started_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (ctx.saga_id, ctx.step, ctx.idempotency_key, ctx.attempt, os.getpid(), time.time()),
    )
    await asyncio.sleep(step_seconds(int(ctx.data["seed"]), ctx.saga_id, ctx.step))
    ctx.emit(
        ctx.data["topic"],
        {"run": ctx.saga_id, "step": ctx.step, "n": STEPS.index(ctx.step)},
        key=ctx.saga_id,
    )
    await _POOL.execute(
        "UPDATE chaos_effects SET finished_at = %s WHERE id = %s", (time.time(), row)
    )
    return {"effect": row}


class ChaosSaga(Saga):
    """Three steps one after another, each recorded in ``chaos_effects``."""

    steps = tuple(Step(name, act) for name in STEPS)
