"""Records as the rows PostgreSQL statements take and give back."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import attrs

from ._codec import dumps
from ._pg_sql import Row
from ._rows import message_rows, run_from_row, signal_from_row, steps_from_rows
from .base import Commit, RunSnapshot, TransitionRecord


@attrs.frozen
class CommitRows:
    """A commit as the rows it writes, in the column order of the commit statement."""

    run: tuple[Any, ...]
    steps: list[tuple[Any, ...]]
    history: list[tuple[Any, ...]]
    #: Outbox rows: ``message_rows`` columns, then owner, claim_until and now.
    messages: list[tuple[Any, ...]] = attrs.field(factory=list)

    @property
    def run_id(self) -> str:
        """The run committed to (the first column of every row)."""
        run_id: str = self.run[0]
        return run_id

    @property
    def guarded(self) -> bool:
        """Whether signals can stop the commit (``Commit.unless_signals``)."""
        return self.run[-1] is not None


def commit_rows(commit: Commit) -> CommitRows:
    """The rows ``commit`` writes, its values serialised (a bad one raises ``StoreError``)."""
    run_id = commit.run_id
    # Numbers are coerced because the rows travel as typed arrays, which refuse mixed int/float.
    steps = {s.step: s for s in commit.steps}.values()  # the last row per step wins
    return CommitRows(
        (
            run_id,
            int(commit.version),
            commit.lease_owner,
            commit.status,
            dumps(commit.config, run_id=run_id),
            float(commit.updated_at),
            commit.failed_step,
            nul_free(commit.error),
            None if commit.wake_at is None else float(commit.wake_at),
            bool(commit.release),
            dumps(list(commit.unless_signals)) if commit.unless_signals else None,
        ),
        [
            (
                run_id,
                s.step,
                s.phase,
                int(s.attempt),
                None if s.result is None else dumps(s.result, run_id=run_id),
                nul_free(s.error),
            )
            for s in steps
        ],
        [
            (
                run_id,
                int(t.seq),
                t.trigger,
                t.source,
                t.dest,
                float(t.at),
                int(t.attempt),
                nul_free(t.error),
            )
            for t in commit.transitions
        ],
        _outbox_rows(commit) if commit.messages else [],
    )


def _outbox_rows(commit: Commit) -> list[tuple[Any, ...]]:
    until = None if commit.claim_until is None else float(commit.claim_until)
    now = time.time()
    return [
        (*row, commit.lease_owner, until, now)
        for row in message_rows(commit.messages, commit.run_id)
    ]


def commit_params(commits: Sequence[CommitRows]) -> list[list[Any]]:
    """The commit statement's parameters: one array per column of each of its three tables."""
    tables = [
        ([c.run for c in commits], 11),
        ([row for c in commits for row in c.steps], 6),
        ([row for c in commits for row in c.history], 8),
    ]
    if any(c.messages for c in commits):  # the statement with the outbox (commit_outbox)
        tables.append(([row for c in commits for row in c.messages], 11))
    params: list[list[Any]] = []
    for rows, width in tables:
        params += [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width
    return params


def nul_free(error: str | None) -> str | None:
    """An error text PostgreSQL can store: ``text`` cannot hold NUL, so it becomes U+FFFD.

    Otherwise an exception message with a NUL in it would make every commit of its run fail.
    """
    return error.replace("\x00", "\ufffd") if error and "\x00" in error else error


def snapshot(
    run_row: Row, step_rows: list[Row], history_rows: list[Row], signal_rows: list[Row]
) -> RunSnapshot:
    """A run's snapshot from its run row, its step rows, its history rows and its signals."""
    run = run_from_row(run_row)
    steps = steps_from_rows(run.run_id, step_rows)
    history = tuple(TransitionRecord(*row) for row in history_rows)
    signals = (signal_from_row(run.run_id, row) for row in signal_rows)
    return RunSnapshot(run, steps, history, {s.event: s for s in signals})
