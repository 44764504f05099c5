"""Section 11: the ``statesaga ui`` pages on a store of 100,000 runs.

The store is filled with finished runs straight through SQL (COPY on PostgreSQL), then one
run of a 20-step saga is executed for real. Each page is asked for through Starlette's
TestClient (the whole ASGI app in this process, no network), and timed from request to the
last byte: the runs page (first page, a status filter, a page deep in the list after a
cursor) and the 20-step run's page, its SVG drawn by ``dot`` for every request (the drawing
cache is cleared first). The baseline is the store's own reads the runs page makes
(``page_runs`` + ``count_runs``), timed alone in the same store.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statesaga import Saga, Step
from statesaga.store import store_from_url
from statesaga.store._rows import run_row
from statesaga.store.base import RunRecord
from statesaga.store.browse import RunCursor, RunQuery

RUNS = 100_000
STEPS = 20
RUNS_GOAL_MS = 200.0
RUN_GOAL_MS = 300.0
COLUMNS = (
    "run_id, saga, saga_path, fingerprint, input, status, config, version, lease_owner,"
    " lease_expires, created_at, updated_at, failed_step, error, wake_at"
)


async def _step(ctx: Any) -> dict[str, int]:
    return {"n": 1}


class TwentySaga(Saga):
    """A chain of 20 steps, each with a compensation."""

    steps = tuple(Step(f"step{n:02}", _step, compensate=_step) for n in range(STEPS))


@dataclass
class PageTiming:
    backend: str
    page: str
    median_ms: float
    p90_ms: float
    baseline_ms: float | None
    goal_ms: float

    @property
    def passed(self) -> bool:
        return self.median_ms < self.goal_ms


def _records(n: int) -> list[tuple[Any, ...]]:
    statuses = ("completed", "completed", "completed", "compensated", "failed", "waiting")
    base = time.time() - n
    return [
        run_row(
            RunRecord(
                run_id=f"bulk-{i:07}",
                saga="Bulk",
                saga_path="nowhere:Bulk",
                fingerprint="0" * 16,
                input={"order": i, "items": [1, 2, 3]},
                status=statuses[i % len(statuses)],
                config={},
                version=1,
                lease_owner=None,
                lease_expires=None,
                created_at=base + i,
                updated_at=base + i,
            )
        )
        for i in range(n)
    ]


async def _fill(url: str, n: int) -> None:
    async with store_from_url(url) as store:
        rows = _records(n)
        if url.startswith("sqlite"):
            import sqlite3

            with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
                conn.executemany(
                    f"INSERT INTO statesaga_runs ({COLUMNS}) VALUES ({', '.join('?' * 15)})", rows
                )
        else:
            import psycopg

            from statesaga._urls import split_schema

            plain, schema = split_schema(url, "public")
            async with await psycopg.AsyncConnection.connect(plain, autocommit=True) as conn:
                cur = conn.cursor()
                async with cur.copy(f'COPY "{schema}".statesaga_runs ({COLUMNS}) FROM STDIN') as c:
                    for row in rows:
                        await c.write_row(row)
                await conn.execute(f'ANALYZE "{schema}".statesaga_runs')
        await TwentySaga(n=1).execute(store=store, saga_id="twenty-1")


async def _baseline(url: str, samples: int) -> float:
    async with store_from_url(url) as store:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            await store.page_runs(RunQuery(), limit=51)
            await store.count_runs(RunQuery())
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


def _time(client: Any, path: str, samples: int, before: Any = None) -> tuple[float, float]:
    client.get(path)  # warm-up: the saga imported and compiled, connections open
    times = []
    for _ in range(samples):
        if before is not None:
            before()
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def bench_backend(backend: str, url: str, samples: int) -> list[PageTiming]:
    from starlette.testclient import TestClient

    from statesaga.ui import diagrams
    from statesaga.ui.app import create_app
    from statesaga.ui.queries import cursor_text

    asyncio.run(_fill(url, RUNS))
    baseline = asyncio.run(_baseline(url, samples))
    deep = cursor_text(RunCursor(time.time() - RUNS / 2, "bulk-0050000"))
    results = []
    with TestClient(create_app(url)) as client:
        for page, path, base, goal in (
            ("runs: first page", "/", baseline, RUNS_GOAL_MS),
            ("runs: status=failed", "/?status=failed", None, RUNS_GOAL_MS),
            ("runs: a page 50,000 deep", f"/?after={deep}", None, RUNS_GOAL_MS),
        ):
            median, p90 = _time(client, path, samples)
            results.append(PageTiming(backend, page, median, p90, base, goal))
        median, p90 = _time(client, "/runs/twenty-1", samples, diagrams._svg.cache_clear)
        results.append(
            PageTiming(
                backend, f"run page, {STEPS} steps, SVG drawn", median, p90, None, RUN_GOAL_MS
            )
        )
    return results


def bench_ui(pg_url: str | None, quick: bool) -> list[PageTiming]:
    """Every page on SQLite, and on PostgreSQL when ``pg_url`` is given."""
    samples = 5 if quick else 25
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results += bench_backend("SQLite", f"sqlite:///{Path(folder) / 'ui.db'}", samples)
    if pg_url is not None:
        results += bench_backend("PostgreSQL", pg_url, samples)
    return results
