"""Durable throughput on PostgreSQL with 1 and 4 worker processes sharing one database.

Each process runs its share of 4-step no-op chains concurrently on the same schema; the figure
is total sagas per second from a common start to the last process's end. Runs name the store
by URL, as the docs show (``execute(store="postgresql://...?schema=...")``), or share one
``PostgresStore`` object; with one process, the connections it holds are sampled while its
runs go on (the store's own: a writer and at most ``pool_size`` readers).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from statesaga import Saga, SagaStatus, Step, shutdown
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
    path: str  # "url" or "object"
    per_s: float
    rounds: list[float] = field(default_factory=list)
    most_connections: int = 0  # sampled during the rounds (one process only)


def reachable() -> str | None:
    """None if the server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(URL, connect_timeout=3):
            return None
    except Exception as error:
        return " ".join(str(error).split())


def _worker(schema: str, path: str, start: Any, count: int, offset: int, out: Any) -> None:
    async def main() -> None:
        url = f"{URL}?schema={schema}" if "?" not in URL else f"{URL}&schema={schema}"
        store = PostgresStore(URL, schema=schema) if path == "object" else None
        if store is not None:
            await store.open()
        target: Any = store if store is not None else url
        await PgBench(i=-1).execute(store=target, saga_id=f"first{offset}")  # opens it
        start.wait()
        began = time.perf_counter()
        results = await asyncio.gather(
            *(PgBench(i=i).execute(store=target, saga_id=f"p{offset + i}") for i in range(count))
        )
        out.put((began, time.perf_counter(), {r.status for r in results}))
        if store is not None:
            await store.close()
        await shutdown()

    asyncio.run(main())


def _connections() -> int:
    import psycopg

    with psycopg.connect(URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
        return int(row[0]) if row else 0


def one_round(processes: int, sagas: int, path: str) -> tuple[float, int]:
    schema = f"statesaga_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create(schema))
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    share = sagas // processes
    procs = [
        ctx.Process(target=_worker, args=(schema, path, start, share, k * share, out))
        for k in range(processes)
    ]
    baseline = _connections()
    for p in procs:
        p.start()
    time.sleep(1.5)  # let every process import, connect and run its first saga
    start.set()
    most = 0
    spans = []
    while len(spans) < processes:
        if processes == 1:
            most = max(most, _connections() - baseline)
        try:
            spans.append(out.get(timeout=0.005 if processes == 1 else 120))
        except queue.Empty:
            continue
    for p in procs:
        p.join()
    asyncio.run(_drop(schema))
    if any(statuses != {SagaStatus.COMPLETED} for _, _, statuses in spans):
        raise SystemExit("postgres benchmark: a run did not complete")
    elapsed = max(end for _, end, _ in spans) - min(began for began, _, _ in spans)
    return share * processes / elapsed, most


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
        for path in ("url", "object"):
            measured = [one_round(processes, sagas, path) for _ in range(rounds)]
            per_round = [rate for rate, _ in measured]
            results.append(
                PostgresResult(
                    processes,
                    sagas,
                    path,
                    statistics.median(per_round),
                    per_round,
                    max(most for _, most in measured),
                )
            )
    return results
