"""The SQL of the browsing reads (``RunBrowser``), shared by SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from .browse import RunCursor, RunQuery


def run_filter(query: RunQuery, after: RunCursor | None, mark: str) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (empty when nothing is filtered) and its parameters for ``query``
    and the keyset cursor ``after``; ``mark`` is the driver's placeholder."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("status = {}", query.status),
        ("saga = {}", query.saga),
        ("created_at >= {}", query.since),
        ("created_at < {}", query.until),
    ):
        if value is not None:
            clauses.append(clause.format(mark))
            params.append(value)
    ids = query.id_range()
    if ids is not None:
        clauses.append(f"run_id >= {mark} AND run_id < {mark}")
        params.extend(ids)
    if after is not None:
        # A row value: both backends walk the (created_at, run_id) index from there.
        clauses.append(f"(created_at, run_id) < ({mark}, {mark})")
        params.extend(after)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def page_sql(
    select: str, query: RunQuery, after: RunCursor | None, mark: str
) -> tuple[str, list[Any]]:
    """``select`` (the run columns ``FROM`` the runs table) as one page, newest first; the
    limit is the last parameter, left for the caller to add."""
    where, params = run_filter(query, after, mark)
    return f"{select}{where} ORDER BY created_at DESC, run_id DESC LIMIT {mark}", params


def count_sql(table: str, query: RunQuery, mark: str) -> tuple[str, list[Any]]:
    """How many runs of ``table`` match ``query``, by status."""
    where, params = run_filter(query, None, mark)
    return f"SELECT status, count(*) FROM {table}{where} GROUP BY status", params


def sagas_sql(table: str) -> str:
    """Rows ``(saga, saga_path, status, count, newest created_at)`` of ``table``."""
    return (
        f"SELECT saga, saga_path, status, count(*), max(created_at) FROM {table}"
        " GROUP BY saga, saga_path, status"
    )
