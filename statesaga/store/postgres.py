"""The PostgreSQL store: one database shared by every worker, on any number of machines.

Scale-out: start several ``statesaga worker --store postgresql://user@host/db`` processes, on as
many machines as you like, against one database. Each run is leased to one worker at a time
(``acquire`` is a single conditional ``UPDATE``, atomic across processes); the worker renews its
leases while it drives the run. When a worker crashes, its leases stop being renewed and, once
they expire, another worker's recovery loop takes those runs over and finishes them. Lease times
come from the workers' own clocks, so keep the machines' clocks in sync (NTP): a worker whose
clock runs ahead can take over runs whose owner is still alive.

Writes go through one writer task per store, on its own connection. It takes every write queued
while it was busy and sends them as one transaction in one pipelined round trip (group commit):
one COMMIT, hence one WAL flush, per batch; commits of different runs (the usual batch) travel
as a single statement over arrays of rows. Every write checks its own condition (version, lease
owner, existing id) inside its statement and writes nothing when that fails, so a stale commit
or a held lease fails alone without aborting the batch. If a statement does raise (a duplicate
history entry, a value PostgreSQL refuses), the batch is rolled back and replayed one write at a
time, each inside its own SAVEPOINT, so only the bad write fails. Reads use separate connections
(up to ``pool_size``) and never wait behind the writer.

Values are stored as ``json``, not ``jsonb``: ``jsonb`` rewrites numbers (``1e16`` comes back as
an integer, ``-0.0`` as ``0``) and refuses ``\\u0000``, so values would not come back exactly
as stored. ``json`` keeps the text as written and still supports ``->``, ``->>`` and
``::jsonb`` casts for ad-hoc queries.

A write whose caller is cancelled while it waits may still be applied, like a commit whose
acknowledgement was lost; version checks make the next write notice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Sequence

from ..errors import RunExists
from . import _signals
from ._pg_browse import PostgresBrowsing
from ._pg_connections import Connections, PostgresStats
from ._pg_rows import commit_rows, nul_free, snapshot
from ._pg_signals import add_signal, heard
from ._pg_sql import Conn, Row, Statement
from ._pg_writer import Stale, nothing, pipeline
from ._rows import decoded_runs, outbox_from_row, run_from_row, run_row
from .base import (
    AsyncContext,
    Commit,
    LeaseHeld,
    OutboxRecord,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    SignalRecord,
    StoreError,
    check_purgeable,
)

logger = logging.getLogger("statesaga.store")

#: Most writes one transaction carries; the rest wait for the next batch, so that one huge
#: burst does not hold row locks (and other workers' acquires) for long.
MAX_BATCH = 500
#: Seconds the writer's connection may sit idle before it is checked before use.
WRITER_CHECK_AFTER = 5.0


class PostgresStore(PostgresBrowsing, AsyncContext):
    """Runs in a PostgreSQL database, written through a group-committing writer task.

    Args:
        url: A libpq URL, e.g. ``postgresql://user:password@host:5432/db``.
        schema: The schema holding the tables; created with them on ``open()`` if missing
            (unless ``open(create=False)``).
        pool_size: Most connections used for reads at once (the writer has its own).

    Attributes:
        url: The URL as given.
        schema: The schema.
        stats: Writer diagnostics (``stats.batches`` counts committed transactions).

    Raises:
        StoreError: The URL cannot be parsed, or ``schema`` or ``pool_size`` is invalid.
    """

    def __init__(self, url: str, *, schema: str = "public", pool_size: int = 4) -> None:
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self._db = Connections(
            url,
            schema=schema,
            pool_size=pool_size,
            max_batch=MAX_BATCH,
            check_after=WRITER_CHECK_AFTER,
        )
        self._safe_url = self._db.safe_url
        self.stats = self._db.stats
        self._q = self._db.queries
        digest = hashlib.blake2b(f"statesaga outbox {schema}".encode(), digest_size=8).digest()
        self._outbox_lock_key = int.from_bytes(digest, "big", signed=True)

    def __repr__(self) -> str:
        return f"PostgresStore({self._safe_url!r}, schema={self.schema!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, create: bool = True) -> None:
        """Connect, check or create the schema and start the writer (idempotent).

        Args:
            create: With ``False``, a missing schema, or one without statesaga's tables, is
                left as it is (no schema, table or version row is created): ``StoreNotFound``
                is raised. A store that exists opens as usual, for reads and writes. Once the
                store is open in this event loop, ``create`` is not looked at.

        Raises:
            StoreNotFound: ``create`` is false and the schema holds no statesaga store.
            StoreError: The server is unreachable or refuses us (the message gives the URL,
                password hidden, and the reason), or the schema holds a newer version than
                this statesaga knows (nothing is written then).
        """
        await self._db.open(create=create)

    async def close(self) -> None:
        """Finish the queued writes, stop the writer and close the connections (idempotent)."""
        await self._db.close()

    # -- writes --------------------------------------------------------------------------------

    async def create(self, run: RunRecord) -> None:
        run_id = run.run_id
        row = run_row(run)
        row = (*row[:13], nul_free(run.error), row[14])

        def decode(rows: list[list[Row]]) -> None:
            if not rows[0]:
                raise RunExists(run_id)

        await self._db.write([(self._q.create, row)], decode, run_id)

    async def commit(self, commit: Commit) -> Sequence[str] | None:
        if commit.create is not None:  # one more round trip here; SQLite merges them
            await self.create(commit.create)
        run_id = commit.run_id
        # Serialised here, on the caller's side: a bad value fails before it is queued.
        rows = commit_rows(commit)

        def decode(rows: list[list[Row]]) -> Sequence[str] | None:
            # The commit statement's rows come last (a guarded commit's lock comes first): the
            # applied run ids, filtered to this one.
            if not rows[-1]:
                raise Stale(run_id, commit.version, commit.lease_owner, commit.unless_signals)
            row = rows[-1][0]
            return list(row[1] or ()) if len(row) > 1 else None  # the message ids it claimed

        claimed: Sequence[str] | None = await self._db.write([], decode, run_id, rows)
        return claimed

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        q = self._q
        statements: list[Statement] = [
            (q.acquire, {"run_id": run_id, "owner": owner, "expires": expires, "now": now}),
            # Separate statements, so they see the row as the UPDATE left it (or, if it lost a
            # race, as the winner committed it) rather than the UPDATE's starting snapshot.
            (q.run, (run_id,)),
            (q.steps, (run_id,)),
            (q.history, (run_id,)),
            (q.signals, (run_id,)),
        ]

        def decode(rows: list[list[Row]]) -> RunSnapshot:
            leased, run_rows, step_rows, history_rows, signal_rows = rows
            if not run_rows:
                raise RunNotFound(run_id)
            if leased:
                return snapshot(run_rows[0], step_rows, history_rows, signal_rows)
            owner_now, until = run_rows[0][8], run_rows[0][9]
            raise LeaseHeld(run_id, owner_now or "", until or 0)

        result: RunSnapshot = await self._db.write(statements, decode, run_id)
        return result

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        ids = list(run_ids)
        if not ids:
            self._db.current()
            return set()

        def decode(rows: list[list[Row]]) -> set[str]:
            return {row[0] for row in rows[0]}

        kept: set[str] = await self._db.write(
            [(self._q.renew, (expires, ids, owner))], decode, None
        )
        return kept

    async def release(self, run_id: str, owner: str) -> None:
        await self._db.write([(self._q.release, (run_id, owner))], nothing, run_id)

    async def add_signal(self, signal: SignalRecord) -> bool:
        """See ``SagaStore.add_signal``; also notifies channel ``statesaga_signals`` with the
        run's id when the signal is stored (see ``_pg_signals``)."""
        stored = _signals.as_stored(signal)
        added: bool = await self._db.read(
            lambda conn: add_signal(conn, self._q, stored),
            retry=False,  # it writes: never twice
            what=f"signal {signal.event!r} for run {signal.run_id}",
        )
        return added

    # -- the outbox ----------------------------------------------------------------------------

    async def outbox_claim(
        self, owner: str, now: float, until: float, limit: int = 100
    ) -> list[OutboxRecord]:
        """See ``SagaStore.outbox_claim``.

        Claims run one at a time across every process (a transaction-scoped advisory lock):
        with ``FOR UPDATE SKIP LOCKED`` alone, two relays could claim consecutive messages of
        one key and publish them out of order.
        """
        params = {"now": now, "until": until, "owner": owner, "limit": max(limit, 0)}

        async def claim(conn: Conn) -> list[OutboxRecord]:
            statements: list[Statement] = [
                ("BEGIN", None),
                ("SELECT pg_advisory_xact_lock(%s)", (self._outbox_lock_key,)),
                (self._q.outbox_claim, params),
                ("COMMIT", None),
            ]
            rows = (await pipeline(conn, statements))[2]
            return sorted((outbox_from_row(row) for row in rows), key=lambda r: r.seq)

        return await self._db.read(claim, retry=False)

    async def outbox_mark_sent(self, ids: Sequence[str], now: float) -> None:
        if ids:
            statement = (self._q.outbox_mark_sent, (now, list(ids)))
            await self._db.write([statement], nothing, None)

    async def outbox_mark_failed(
        self, message_id: str, owner: str, error: str, retry_at: float, *, dead: bool
    ) -> None:
        status = "dead" if dead else "pending"
        params = (status, retry_at, nul_free(error), message_id, owner)
        await self._db.write([(self._q.outbox_mark_failed, params)], nothing, None)

    async def outbox_release(
        self, ids: Sequence[str], owner: str, error: str | None = None
    ) -> None:
        if ids:
            params = (nul_free(error), list(ids), owner)
            await self._db.write([(self._q.outbox_release, params)], nothing, None)

    async def outbox_list(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[OutboxRecord]:
        query = self._q.outbox_list[status is not None]
        params = (max(limit, 0),) if status is None else (status, max(limit, 0))

        async def read(conn: Conn) -> list[OutboxRecord]:
            cur = await conn.execute(query, params)
            return [outbox_from_row(row) for row in await cur.fetchall()]

        return await self._db.read(read)

    async def outbox_retry(self, ids: Sequence[str] | None, now: float) -> int:
        if ids is None:
            statement: Statement = (self._q.outbox_retry_dead, (now,))
        else:
            statement = (self._q.outbox_retry, (now, list(ids)))
        count: int = await self._db.write([statement], _count, None)
        return count

    async def outbox_purge(
        self, status: str, before: float, ids: Sequence[str] | None = None
    ) -> int:
        check_purgeable(status)
        if ids is None:
            statement: Statement = (self._q.outbox_purge, (status, before))
        else:
            statement = (self._q.outbox_purge_ids, (status, before, list(ids)))
        count: int = await self._db.write([statement], _count, None)
        return count

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, run_id: str) -> RunSnapshot:
        q = self._q

        async def read(conn: Conn) -> RunSnapshot:
            # The run, its steps and its history from one snapshot, in one round trip.
            statements: list[Statement] = [
                ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", None),
                (q.run, (run_id,)),
                (q.steps, (run_id,)),
                (q.history, (run_id,)),
                (q.signals, (run_id,)),
                ("COMMIT", None),
            ]
            run_rows, *rest = (await pipeline(conn, statements))[1:-1]
            if not run_rows:
                raise RunNotFound(run_id)
            return snapshot(run_rows[0], *rest)

        return await self._db.read(read)

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        query = self._q.list_runs[status is not None, saga is not None]
        params = [value for value in (status, saga) if value is not None]
        limit = max(limit, 0)

        async def read(conn: Conn) -> list[RunRecord]:
            runs: list[RunRecord] = []
            offset = 0
            async with conn.transaction():  # one snapshot across pages
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                # Undecodable rows are skipped, so page until ``limit`` good ones or the end.
                while len(runs) < limit:
                    wanted = limit - len(runs)
                    cur = await conn.execute(query, (*params, wanted, offset))
                    rows = await cur.fetchall()
                    for row in rows:
                        try:
                            runs.append(run_from_row(row))
                        except StoreError as error:
                            logger.warning(
                                "PostgreSQL store %s: skipping run %s: %s",
                                self._safe_url,
                                row[0],
                                error,
                            )
                    if len(rows) < wanted:
                        break
                    offset += len(rows)
            return runs

        return await self._db.read(read)

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        async def read(conn: Conn) -> list[str]:
            params = {"now": now, "limit": max(limit, 0)}
            cur = await conn.execute(self._q.unfinished, params)
            return [row[0] for row in await cur.fetchall()]

        return await self._db.read(read)

    async def waiting(self, limit: int = 100) -> list[RunRecord]:
        async def read(conn: Conn) -> list[RunRecord]:
            cur = await conn.execute(self._q.waiting, (max(limit, 0),))
            return decoded_runs(await cur.fetchall(), "PostgreSQL")

        return await self._db.read(read)

    def signals_heard(self) -> AsyncIterator[str]:
        """The run ids of signals committed from now on, by any process (PostgreSQL's
        notifications): a worker drives a signalled run at once instead of at its next poll."""
        return heard(self._db)

    async def count_waiting(self) -> dict[str, int]:
        async def read(conn: Conn) -> dict[str, int]:
            cur = await conn.execute(self._q.count_waiting)
            return {saga: int(n) for saga, n in await cur.fetchall()}

        return await self._db.read(read)

    async def leased(self, now: float, limit: int = 100) -> list[RunRecord]:
        async def read(conn: Conn) -> list[RunRecord]:
            cur = await conn.execute(self._q.leased, (now, max(limit, 0)))
            return decoded_runs(await cur.fetchall(), "PostgreSQL")

        return await self._db.read(read)


def _count(rows: list[list[Row]]) -> int:
    return len(rows[0])


__all__ = ["MAX_BATCH", "WRITER_CHECK_AFTER", "PostgresStats", "PostgresStore"]
