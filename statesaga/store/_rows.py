"""Run and step rows of the SQL stores: the queries listing runs, and rows back into records."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ._codec import dumps, loads
from .base import OutboxRecord, RunRecord, SignalRecord, StepRecord, StoreError

logger = logging.getLogger("statesaga.store")

#: The columns outbox rows are read with, in ``outbox_from_row`` order.
OUTBOX_COLUMNS = (
    "seq, id, run_id, step, topic, key, payload, headers, created_at, status, attempts,"
    " retry_at, claim_owner, claim_until, sent_at, last_error"
)


def list_runs_queries(select: str, mark: str) -> dict[tuple[bool, bool], str]:
    """``select`` filtered, newest first and paged; ``mark`` is the driver's placeholder.

    One text per combination of filters, keyed by (status given, saga given).
    """
    return {
        (by_status, by_saga): select
        + (" WHERE " if by_status or by_saga else "")
        + " AND ".join(
            clause
            for clause, on in ((f"status = {mark}", by_status), (f"saga = {mark}", by_saga))
            if on
        )
        + f" ORDER BY created_at DESC, run_id DESC LIMIT {mark} OFFSET {mark}"
        for by_status in (False, True)
        for by_saga in (False, True)
    }


def run_from_row(row: tuple[Any, ...]) -> RunRecord:
    """A run row, columns in ``RunRecord`` order with input and config as JSON text."""
    run_id = row[0]
    data = loads(row[4], run_id=run_id, what="input")
    config = loads(row[6], run_id=run_id, what="config")
    if not isinstance(data, dict) or not isinstance(config, dict):
        raise StoreError(
            f"run {run_id}: stored input or config is not a JSON object", run_id=run_id
        )
    return RunRecord(run_id, row[1], row[2], row[3], data, row[5], config, *row[7:])


def decoded_runs(rows: Iterable[tuple[Any, ...]], backend: str) -> list[RunRecord]:
    """The runs of ``rows`` that decode; a corrupt one is logged and skipped (it is reported
    where it is loaded)."""
    runs = []
    for row in rows:
        try:
            runs.append(run_from_row(row))
        except StoreError as error:
            logger.warning("%s store: skipping run %s: %s", backend, row[0], error)
    return runs


def steps_from_rows(run_id: str, rows: Iterable[tuple[Any, ...]]) -> dict[str, StepRecord]:
    """Step rows ``(step, phase, attempt, result JSON, error)`` of run ``run_id``, by step."""
    return {
        step: StepRecord(
            step, phase, attempt, loads(result, run_id=run_id, what=f"result of step {step}"), error
        )
        for step, phase, attempt, result, error in rows
    }


def signal_from_row(run_id: str, row: tuple[Any, ...]) -> SignalRecord:
    """A row ``(signal_id, event, payload JSON, at)`` of run ``run_id`` as a record."""
    signal_id, event, payload, at = row
    data = loads(payload, run_id=run_id, what=f"payload of signal {signal_id}")
    return SignalRecord(run_id, signal_id, event, data, at)


def run_row(run: RunRecord) -> tuple[Any, ...]:
    """A run as a row of ``statesaga_runs`` (JSON serialised here, on the caller's side)."""
    run_id = run.run_id
    return (
        run_id,
        run.saga,
        run.saga_path,
        run.fingerprint,
        dumps(run.input, run_id=run_id),
        run.status,
        dumps(run.config, run_id=run_id),
        run.version,
        run.lease_owner,
        run.lease_expires,
        run.created_at,
        run.updated_at,
        run.failed_step,
        run.error,
        run.wake_at,
    )


def outbox_from_row(row: tuple[Any, ...]) -> OutboxRecord:
    """An outbox row, columns as in ``OUTBOX_COLUMNS`` with payload and headers as JSON text."""
    from ..messaging.message import Message  # here: the messaging package may import stores

    seq, message_id, run_id, step, topic, key, payload, headers, created_at, *rest = row
    message = Message(
        id=message_id,
        topic=topic,
        payload=loads(payload, run_id=run_id, what=f"payload of message {message_id}"),
        key=key,
        headers=loads(headers, run_id=run_id, what=f"headers of message {message_id}") or {},
        saga_id=run_id,
        step=step,
        created_at=created_at,
    )
    return OutboxRecord(message, seq, *rest)


def message_rows(messages: Iterable[Any], run_id: str) -> list[tuple[Any, ...]]:
    """Messages as outbox rows ``(id, run_id, step, topic, key, payload, headers, created_at)``.

    Serialised here, on the caller's side: a payload JSON cannot hold fails the commit before
    anything is written.
    """
    return [
        (
            m.id,
            run_id,
            m.step,
            m.topic,
            m.key,
            dumps(m.payload, run_id=run_id),
            dumps(dict(m.headers), run_id=run_id),
            float(m.created_at),
        )
        for m in messages
    ]
