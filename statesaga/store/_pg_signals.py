"""Storing a signal in a PostgreSQL store: one transaction on a connection of its own.

The run's row is locked first (``SELECT ... FOR UPDATE``), so the signal and the run's
commits, which update that row, are serialised: each statement after the lock sees what
those commits wrote. The transaction also sends ``NOTIFY statesaga_signals`` with the run's
id, delivered when it commits, so a worker in another process can react without polling.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import _signals
from ._codec import dumps
from ._pg_sql import Conn, Queries, Statement
from ._pg_writer import pipeline, rollback
from ._rows import signal_from_row
from .base import RunNotFound, SignalRecord

if TYPE_CHECKING:
    from ._pg_connections import Connections

#: The channel ``add_signal`` notifies; the payload is the run's id.
CHANNEL = "statesaga_signals"


async def add_signal(conn: Conn, q: Queries, signal: SignalRecord) -> bool:
    """Store ``signal`` (``as_stored``) by the rules of ``_signals``; ``False`` for a duplicate."""
    run_id, event = signal.run_id, signal.event
    try:
        # One round trip to read what the rules look at (the lock first), one to write.
        rows = await pipeline(
            conn,
            [
                ("BEGIN", None),
                (q.signal_run, (run_id,)),
                (q.same_signal, (run_id, signal.signal_id, event)),
                (q.signal_phase, (run_id, event)),
            ],
        )
        run_rows, signal_rows, phase_rows = rows[1:]
        if not run_rows:
            raise RunNotFound(run_id)
        status, wake_at = run_rows[0]
        same_id, same_event, cancelled = _signals.found(
            signal, (signal_from_row(run_id, row) for row in signal_rows)
        )
        if not _signals.check(
            signal,
            status=status,
            same_id=same_id,
            same_event=same_event,
            phase=phase_rows[0][0] if phase_rows else None,
            cancelled=cancelled,
        ):
            await conn.execute("ROLLBACK")
            return False
        payload = dumps(signal.payload, run_id=run_id)
        statements: list[Statement] = [
            (q.insert_signal, (run_id, signal.signal_id, event, payload, signal.at)),
            ("SELECT pg_notify(%s, %s)", (CHANNEL, run_id)),
        ]
        if status == _signals.WAITING:
            due = _signals.wake_at(wake_at, signal, time.time())
            statements.append((q.wake, (due, run_id)))
        await pipeline(conn, [*statements, ("COMMIT", None)])
    except BaseException:
        await rollback(conn)
        raise
    return True


async def heard(connections: Connections) -> AsyncIterator[str]:
    """The run ids of signals committed from now on, by any process, as they are committed:
    ``LISTEN`` on a connection of its own, closed when the iteration ends."""
    conn = await connections.connect()
    try:
        await conn.execute(f"LISTEN {CHANNEL}")
        async for notice in conn.notifies():
            yield notice.payload
    finally:
        await conn.close()
