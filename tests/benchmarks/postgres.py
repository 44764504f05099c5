"""Durable throughput on PostgreSQL with 1 and 4 worker processes sharing one database.

Each process runs its share of 4-step no-op chains concurrently on the same schema; the figure
is total sagas per second from a common start to the last process's end.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from statesaga import Saga, SagaStatus, Step
from statesaga.store.postgres import PostgresStore

URL = os.environ.get("STATESAGA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def noop(ctx: Any) -> None:
    """A no-op step."""
    return None


class PgBench(Saga):
    """4-step chain of no-op steps."""

    steps = tuple(Step(name, noop) for name in "abcd")


@dataclass
class PostgresResult:
    """Sagas per second with a number of worker processes (medians)."""

    processes: int
    sagas: int
    per_s: float
    rounds: list[float] = field(default_factory=list)


def reachable() -> str | None:
    """None if the server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(URL, connect_timeout=3):
            return None
    except Exception as error:
        return " ".join(str(error).split())


def _worker(schema: str, start: Any, count: int, offset: int, out: Any) -> None:
    async def main() -> None:
        store = PostgresStore(URL, schema=schema)
        async with store:
            start.wait()
            began = time.perf_counter()
            results = await asyncio.gather(
                *(PgBench(i=i).execute(store=store, saga_id=f"p{offset + i}") for i in range(count))
            )
            out.put((began, time.perf_counter(), {r.status for r in results}))

    asyncio.run(main())


def one_round(processes: int, sagas: int) -> float:
    schema = f"statesaga_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create(schema))
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    share = sagas // processes
    procs = [
        ctx.Process(target=_worker, args=(schema, start, share, k * share, out))
        for k in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every process import and connect
    start.set()
    spans = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    asyncio.run(_drop(schema))
    if any(statuses != {SagaStatus.COMPLETED} for _, _, statuses in spans):
        raise SystemExit("postgres benchmark: a run did not complete")
    elapsed = max(end for _, end, _ in spans) - min(began for began, _, _ in spans)
    return share * processes / elapsed


async def _create(schema: str) -> None:
    async with PostgresStore(URL, schema=schema):
        pass


async def _drop(schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def bench_postgres(sagas: int, rounds: int) -> list[PostgresResult]:
    results = []
    for processes in (1, 4):
        per_round = [one_round(processes, sagas) for _ in range(rounds)]
        results.append(PostgresResult(processes, sagas, statistics.median(per_round), per_round))
    return results
