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

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from . import hide_password
from ._codec import dumps, loads
from .base import (
    SCHEMA_VERSION,
    TERMINAL,
    Commit,
    LeaseHeld,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    StepRecord,
    StoreError,
    TransitionRecord,
    WriteConflict,
)

logger = logging.getLogger("statesaga.store")

_Conn = psycopg.AsyncConnection[TupleRow]
_Cursor = psycopg.AsyncCursor[TupleRow]
_Row = tuple[Any, ...]
_Statement = tuple[str, Any]
_R = TypeVar("_R")

#: Most writes one transaction carries; the rest wait for the next batch, so that one huge
#: burst does not hold row locks (and other workers' acquires) for long.
MAX_BATCH = 500
#: Attempts at a batch that hit a deadlock or serialization failure before replaying it write
#: by write.
_ATTEMPTS = 3
_CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise
#: Seconds the writer's connection may sit idle before it is checked before use.
WRITER_CHECK_AFTER = 5.0

_TERMINAL_SQL = "(" + ", ".join(f"'{status}'" for status in sorted(TERMINAL)) + ")"
_RUN_COLUMNS = (
    "run_id, saga, saga_path, fingerprint, input::text, status, config::text, version,"
    " lease_owner, lease_expires, created_at, updated_at, failed_step, error"
)
_OBJECTS = frozenset(
    {
        "statesaga_meta",
        "statesaga_runs",
        "statesaga_runs_by_status",
        "statesaga_runs_by_saga",
        "statesaga_runs_unfinished",
        "statesaga_steps",
        "statesaga_history",
    }
)


class _Queries:
    """Every statement, with the tables qualified by one schema."""

    def __init__(self, schema: str) -> None:
        # Quoted, so any name works; ``%`` doubled because psycopg reads it as a placeholder.
        s = '"' + schema.replace('"', '""').replace("%", "%%") + '"'
        runs, steps, history, meta = (
            f"{s}.statesaga_{name}" for name in ("runs", "steps", "history", "meta")
        )
        self.schema = (
            f"CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)",
            # COLLATE "C" on ids: ordered by code point, like the other stores, whatever the
            # database's locale.
            f"CREATE TABLE IF NOT EXISTS {runs} ("
            ' run_id text COLLATE "C" PRIMARY KEY, saga text NOT NULL, saga_path text NOT NULL,'
            " fingerprint text NOT NULL, input json NOT NULL, status text NOT NULL,"
            " config json NOT NULL, version bigint NOT NULL, lease_owner text,"
            " lease_expires double precision, created_at double precision NOT NULL,"
            " updated_at double precision NOT NULL, failed_step text, error text)",
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_by_status ON {runs} (status, created_at)",
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_by_saga ON {runs} (saga, created_at)",
            # What the recovery loop scans: stays small however many finished runs pile up.
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_unfinished ON {runs} (created_at, run_id)"
            f" WHERE status NOT IN {_TERMINAL_SQL}",
            f"CREATE TABLE IF NOT EXISTS {steps} ("
            ' run_id text COLLATE "C" NOT NULL, step text COLLATE "C" NOT NULL,'
            " phase text NOT NULL, attempt bigint NOT NULL, result json, error text,"
            " PRIMARY KEY (run_id, step))",
            f"CREATE TABLE IF NOT EXISTS {history} ("
            ' run_id text COLLATE "C" NOT NULL, seq bigint NOT NULL, "trigger" text NOT NULL,'
            " source text NOT NULL, dest text NOT NULL, at double precision NOT NULL,"
            " attempt bigint NOT NULL, error text, PRIMARY KEY (run_id, seq))",
            f"INSERT INTO {meta} (key, value) VALUES ('schema_version', %s)"
            " ON CONFLICT (key) DO NOTHING",
        )
        self.create_schema = f"CREATE SCHEMA IF NOT EXISTS {s}"
        self.version = f"SELECT value FROM {meta} WHERE key = 'schema_version'"
        self.create = (
            f"INSERT INTO {runs} (run_id, saga, saga_path, fingerprint, input, status, config,"
            " version, lease_owner, lease_expires, created_at, updated_at, failed_step, error)"
            " VALUES (%s, %s, %s, %s, %s::json, %s, %s::json, %s::bigint, %s, %s::float8,"
            " %s::float8, %s::float8, %s, %s)"
            " ON CONFLICT (run_id) DO NOTHING RETURNING true"
        )
        # One statement for any number of commits (of distinct runs): the step and history
        # rows of a commit are written only if its guarded UPDATE matched, so a stale commit
        # writes nothing and raises nothing, and the others still apply.
        self.commit = (
            "WITH x AS (SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[],"
            " %b::text[], %b::float8[], %b::text[], %b::text[])"
            " AS x(run_id, version, owner, status, config, updated_at, failed_step, error)),"
            f" run AS (UPDATE {runs} AS r SET status = x.status, config = x.config::json,"
            " version = r.version + 1, updated_at = x.updated_at, failed_step = x.failed_step,"
            " error = x.error FROM x WHERE r.run_id = x.run_id AND r.version = x.version"
            " AND r.lease_owner = x.owner RETURNING r.run_id),"
            f" steps AS (INSERT INTO {steps} (run_id, step, phase, attempt, result, error)"
            " SELECT s.run_id, s.step, s.phase, s.attempt, s.result::json, s.error"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[],"
            " %b::text[]) AS s(run_id, step, phase, attempt, result, error)"
            " WHERE s.run_id IN (SELECT run_id FROM run)"
            " ON CONFLICT (run_id, step) DO UPDATE SET phase = EXCLUDED.phase,"
            " attempt = EXCLUDED.attempt, result = EXCLUDED.result, error = EXCLUDED.error),"
            f' history AS (INSERT INTO {history} (run_id, seq, "trigger", source, dest, at,'
            " attempt, error) SELECT h.* FROM unnest(%b::text[], %b::bigint[], %b::text[],"
            " %b::text[], %b::text[], %b::float8[], %b::bigint[], %b::text[])"
            " AS h(run_id, seq, trig, source, dest, at, attempt, error)"
            " WHERE h.run_id IN (SELECT run_id FROM run))"
            " SELECT run_id FROM run"
        )
        self.acquire = (
            f"UPDATE {runs} SET lease_owner = %(owner)s, lease_expires = %(expires)s::float8,"
            " version = version + 1"
            f" WHERE run_id = %(run_id)s AND status NOT IN {_TERMINAL_SQL}"
            " AND (lease_owner IS NULL OR lease_owner = %(owner)s"
            " OR COALESCE(lease_expires, 0) < %(now)s::float8) RETURNING true"
        )
        self.renew = (
            f"UPDATE {runs} SET lease_expires = %s::float8"
            " WHERE run_id = ANY(%b::text[]) AND lease_owner = %s RETURNING run_id"
        )
        self.release = (
            f"UPDATE {runs} SET lease_owner = NULL, lease_expires = NULL"
            " WHERE run_id = %s AND lease_owner = %s"
        )
        self.leases = f"SELECT run_id, version, lease_owner FROM {runs} WHERE run_id = ANY(%s)"
        self.run = f"SELECT {_RUN_COLUMNS} FROM {runs} WHERE run_id = %s"
        self.steps = (
            f"SELECT step, phase, attempt, result::text, error FROM {steps}"
            " WHERE run_id = %s ORDER BY step"
        )
        self.history = (
            f'SELECT seq, "trigger", source, dest, at, attempt, error FROM {history}'
            " WHERE run_id = %s ORDER BY seq"
        )
        self.unfinished = (
            f"SELECT run_id FROM {runs} WHERE status NOT IN {_TERMINAL_SQL}"
            " AND (lease_owner IS NULL OR COALESCE(lease_expires, 0) < %s::float8)"
            " ORDER BY created_at, run_id LIMIT %s"
        )
        # One text per combination of filters, keyed by (status given, saga given).
        self.list_runs = {
            (by_status, by_saga): f"SELECT {_RUN_COLUMNS} FROM {runs}"
            + (" WHERE " if by_status or by_saga else "")
            + " AND ".join(
                clause for clause, on in (("status = %s", by_status), ("saga = %s", by_saga)) if on
            )
            + " ORDER BY created_at DESC, run_id DESC LIMIT %s OFFSET %s"
            for by_status in (False, True)
            for by_saga in (False, True)
        }


@attrs.define
class PostgresStats:
    """Diagnostics of the writer, for tests and tuning (not a stable interface).

    Attributes:
        batches: Transactions the writer committed, one per group of queued writes.
        writes: Writes it handled, failed ones included.
        largest_batch: The most writes one transaction carried.
        retries: Batches sent again after a deadlock or serialization failure.
        replays: Batches replayed write by write because one of their statements raised.
    """

    batches: int = 0
    writes: int = 0
    largest_batch: int = 0
    retries: int = 0
    replays: int = 0


class _Stale(Exception):
    """A commit's guarded UPDATE matched nothing: a conflict, or an unknown run."""

    def __init__(self, run_id: str, version: int, owner: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.version = version
        self.owner = owner


@attrs.define(eq=False)
class _Job:
    """A queued write: its statements, how to read their rows, and who waits for it."""

    statements: list[_Statement]
    decode: Callable[[list[list[_Row]]], Any]
    run_id: str | None
    future: asyncio.Future[Any]
    commit: _CommitRows | None = None  # set for commits, which a batch may merge


@attrs.frozen
class _CommitRows:
    """A commit as the rows it writes, in the column order of the commit statement."""

    run: tuple[Any, ...]
    steps: list[tuple[Any, ...]]
    history: list[tuple[Any, ...]]

    @property
    def run_id(self) -> str:
        """The run committed to (the first column of every row)."""
        run_id: str = self.run[0]
        return run_id


@attrs.define(eq=False)
class _State:
    """What one ``open()`` created; bound to the event loop it ran in."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_Job | None]
    writer_conn: _Conn | None
    read_slots: asyncio.Semaphore
    idle: list[_Conn] = attrs.field(factory=list)
    writer: asyncio.Task[None] | None = None
    writer_used: float = 0.0  # loop time of the writer's last successful batch
    closing: bool = False


class PostgresStore:
    """Runs in a PostgreSQL database, written through a group-committing writer task.

    Args:
        url: A libpq URL, e.g. ``postgresql://user:password@host:5432/db``.
        schema: The schema holding the tables; created with them on ``open()`` if missing.
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
        self._safe_url = hide_password(url)
        self._password = _url_password(url)  # kept only to blank it out of error messages
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as error:
            raise StoreError(
                f"{self._safe_url!r} is not a valid PostgreSQL URL ({self._reason(error)})"
            ) from None
        self._password = str(params.get("password") or self._password)
        self._connect_args: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._connect_args["connect_timeout"] = _CONNECT_TIMEOUT
        if "application_name" not in params:
            self._connect_args["application_name"] = "statesaga"
        if not schema or "\x00" in schema or len(schema.encode()) > 63:
            raise StoreError(f"schema {schema!r} is not a usable PostgreSQL schema name")
        if pool_size < 1:
            raise StoreError(f"pool_size must be at least 1, not {pool_size}")
        self.stats = PostgresStats()
        self._q = _Queries(schema)
        digest = hashlib.blake2b(f"statesaga schema {schema}".encode(), digest_size=8).digest()
        self._lock_key = int.from_bytes(digest, "big", signed=True)
        self._state: _State | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._safe_url!r}, schema={self.schema!r})"

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check or create the schema and start the writer (idempotent).

        Raises:
            StoreError: The server is unreachable or refuses us (the message gives the URL,
                password hidden, and the reason), or the schema holds a newer version than
                this statesaga knows (nothing is written then).
        """
        loop = asyncio.get_running_loop()
        async with self._loop_lock(loop):
            state = self._state
            if state is not None and state.loop is loop and not state.closing:
                return
            # A state left by a loop that is gone: its connections died with that loop.
            self._state = None
            conn = await self._connect()
            try:
                await self._prepare(conn)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
                raise
            state = _State(loop, asyncio.Queue(), conn, asyncio.Semaphore(self.pool_size))
            state.writer_used = loop.time()
            state.writer = loop.create_task(
                self._write_forever(state), name=f"statesaga-postgres-writer {self._safe_url}"
            )
            self._state = state

    async def close(self) -> None:
        """Finish the queued writes, stop the writer and close the connections (idempotent)."""
        state = self._state
        if state is None:
            return
        loop = asyncio.get_running_loop()
        if state.loop is not loop:
            self._state = None  # opened in a loop that is gone: nothing left to finish
            return
        async with self._loop_lock(loop):
            if self._state is not state:
                return
            state.closing = True  # refuse new work; what is queued still runs
            state.queue.put_nowait(None)
            if state.writer is not None and not state.writer.done():
                await asyncio.shield(state.writer)
            self._state = None
            conns = [*state.idle, *([state.writer_conn] if state.writer_conn else [])]
            state.idle.clear()
            state.writer_conn = None
            for conn in conns:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()

    def _loop_lock(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        # An asyncio.Lock belongs to one loop; tests and CLIs may run several in turn.
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    def _current(self) -> _State:
        state = self._state
        if state is None or state.closing:
            raise StoreError(
                f"PostgreSQL store {self._safe_url} is not open: call `await store.open()` first "
                "or use `async with store:`"
            )
        if state.loop is not asyncio.get_running_loop():
            raise StoreError(
                f"PostgreSQL store {self._safe_url} was opened in another event loop: "
                "open it again in this one"
            )
        return state

    async def _connect(self) -> _Conn:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, **self._connect_args
            )
        except psycopg.Error as error:
            raise StoreError(
                f"cannot connect to PostgreSQL store {self._safe_url}: {self._reason(error)}"
            ) from None

    async def _prepare(self, conn: _Conn) -> None:
        try:
            # Read-only first, so a schema we refuse is left exactly as it was.
            version, present, has_schema = await self._inspect(conn)
            self._check_version(version)
            if version is not None and present >= _OBJECTS:
                return
            async with conn.transaction():
                # Workers starting together would race on CREATE ... IF NOT EXISTS (which is not
                # safe concurrently in PostgreSQL): one creates, the others wait and then see it.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                version, present, has_schema = await self._inspect(conn)
                self._check_version(version)
                if not has_schema:  # not always: CREATE SCHEMA needs a privilege we may lack
                    await conn.execute(self._q.create_schema)
                *tables, insert_version = self._q.schema
                for statement in tables:
                    await conn.execute(statement)
                await conn.execute(insert_version, (str(SCHEMA_VERSION),))
        except psycopg.Error as error:
            raise StoreError(
                f"cannot prepare PostgreSQL store {self._safe_url} (schema {self.schema!r}): "
                f"{self._reason(error)}"
            ) from None

    async def _inspect(self, conn: _Conn) -> tuple[int | None, set[str], bool]:
        """The stored schema version (``None`` if absent), our objects present, schema exists."""
        cur = await conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = ANY(%s)",
            (self.schema, sorted(_OBJECTS)),
        )
        present = {row[0] for row in await cur.fetchall()}
        cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        has_schema = await cur.fetchone() is not None
        if "statesaga_meta" not in present:
            return None, present, has_schema
        row = await (await conn.execute(self._q.version)).fetchone()
        if row is None:
            return None, present, has_schema
        try:
            return int(row[0]), present, has_schema
        except (TypeError, ValueError):
            raise StoreError(
                f"PostgreSQL store {self._safe_url}: {self.schema}.statesaga_meta.schema_version "
                f"is {row[0]!r}, not a number: this is not a statesaga schema, or it is damaged"
            ) from None

    def _check_version(self, version: int | None) -> None:
        if version is None or version == SCHEMA_VERSION:
            return
        where = f"PostgreSQL store {self._safe_url} (schema {self.schema!r})"
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where} holds schema version {version}, newer than this statesaga understands "
                f"({SCHEMA_VERSION}); upgrade statesaga to use it (nothing was changed)"
            )
        raise StoreError(
            f"{where} holds schema version {version} and this statesaga (schema "
            f"{SCHEMA_VERSION}) has no migration for it"
        )

    def _reason(self, error: BaseException) -> str:
        text = " ".join(str(error).split()) or type(error).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text

    # -- writes --------------------------------------------------------------------------------

    async def create(self, run: RunRecord) -> None:
        run_id = run.run_id
        row = (
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
            _text(run.error),
        )

        def decode(rows: list[list[_Row]]) -> None:
            if not rows[0]:
                raise StoreError(f"run {run_id} already exists", run_id=run_id)

        await self._write([(self._q.create, row)], decode, run_id)

    async def commit(self, commit: Commit) -> None:
        run_id = commit.run_id
        # Serialised here, on the caller's side: a bad value fails before it is queued. Numbers
        # are coerced because the rows travel as typed arrays, which refuse mixed int/float.
        steps = {s.step: s for s in commit.steps}.values()  # the last row per step wins
        rows = _CommitRows(
            (
                run_id,
                int(commit.version),
                commit.lease_owner,
                commit.status,
                dumps(commit.config, run_id=run_id),
                float(commit.updated_at),
                commit.failed_step,
                _text(commit.error),
            ),
            [
                (
                    run_id,
                    s.step,
                    s.phase,
                    int(s.attempt),
                    None if s.result is None else dumps(s.result, run_id=run_id),
                    _text(s.error),
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
                    _text(t.error),
                )
                for t in commit.transitions
            ],
        )

        def decode(rows: list[list[_Row]]) -> None:
            if not rows[0]:  # the applied run ids, filtered to this one
                raise _Stale(run_id, commit.version, commit.lease_owner)

        await self._write([], decode, run_id, rows)  # statements built when batched

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        q = self._q
        statements: list[_Statement] = [
            (q.acquire, {"run_id": run_id, "owner": owner, "expires": expires, "now": now}),
            # Separate statements, so they see the row as the UPDATE left it (or, if it lost a
            # race, as the winner committed it) rather than the UPDATE's starting snapshot.
            (q.run, (run_id,)),
            (q.steps, (run_id,)),
            (q.history, (run_id,)),
        ]

        def decode(rows: list[list[_Row]]) -> RunSnapshot:
            leased, run_rows, step_rows, history_rows = rows
            if not run_rows:
                raise RunNotFound(run_id)
            if leased:
                return _snapshot(run_rows[0], step_rows, history_rows)
            status, owner_now, until = run_rows[0][5], run_rows[0][8], run_rows[0][9]
            if status in TERMINAL:  # finished meanwhile: nothing to drive, here it is
                return _snapshot(run_rows[0], step_rows, history_rows)
            raise LeaseHeld(run_id, owner_now or "", until or 0)

        result: RunSnapshot = await self._write(statements, decode, run_id)
        return result

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        ids = list(run_ids)
        if not ids:
            self._current()
            return set()

        def decode(rows: list[list[_Row]]) -> set[str]:
            return {row[0] for row in rows[0]}

        kept: set[str] = await self._write([(self._q.renew, (expires, ids, owner))], decode, None)
        return kept

    async def release(self, run_id: str, owner: str) -> None:
        await self._write([(self._q.release, (run_id, owner))], _nothing, run_id)

    async def _write(
        self,
        statements: list[_Statement],
        decode: Callable[[list[list[_Row]]], Any],
        run_id: str | None,
        commit: _CommitRows | None = None,
    ) -> Any:
        state = self._current()
        future: asyncio.Future[Any] = state.loop.create_future()
        state.queue.put_nowait(_Job(statements, decode, run_id, future, commit))
        return await future

    async def _write_forever(self, state: _State) -> None:
        queue = state.queue
        stop = False
        while not stop:
            job = await queue.get()
            batch: list[_Job] = []
            # Take everything queued meanwhile: that is the group in group commit.
            while True:
                if job is None:
                    stop = True
                    break
                batch.append(job)
                if len(batch) >= MAX_BATCH or queue.empty():
                    break
                job = queue.get_nowait()
            if not batch:
                continue
            try:
                outcomes = await self._run_batch(state, batch)
            except Exception as error:  # a bug here must not leave callers waiting
                logger.exception("PostgreSQL store %s: writer failed", self._safe_url)
                await self._drop_writer_conn(state)
                outcomes = [(False, self._failure(error, job.run_id)) for job in batch]
            self.stats.writes += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                if job.future.done():  # its caller was cancelled
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    async def _run_batch(self, state: _State, batch: list[_Job]) -> list[tuple[bool, Any]]:
        try:
            conn = await self._writer_connection(state)
        except StoreError as error:
            return [(False, StoreError(str(error), run_id=job.run_id)) for job in batch]
        try:
            outcomes = await self._apply(conn, batch)
        except psycopg.Error as error:
            # The connection died, or the COMMIT failed: the outcome of the whole batch is
            # unknown (broken) or nothing was applied.
            broken = conn.broken or conn.closed
            if broken:
                await self._drop_writer_conn(state)  # the next batch reconnects
            else:
                await _rollback(conn)
            return [(False, self._failure(error, job.run_id, unknown=broken)) for job in batch]
        self.stats.batches += 1
        state.writer_used = state.loop.time()
        stale = [i for i, (ok, value) in enumerate(outcomes) if isinstance(value, _Stale)]
        if stale:
            await self._explain_stale(conn, outcomes, stale)
        return outcomes

    async def _apply(self, conn: _Conn, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one committed transaction; each job's outcome."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                rows = await self._send_batch(conn, batch)
            except psycopg.Error as error:
                if conn.broken or conn.closed:
                    raise
                await _rollback(conn)
                if isinstance(error, psycopg.errors.TransactionRollback) and attempt < _ATTEMPTS:
                    # A deadlock with another worker's batch: running it again usually passes.
                    self.stats.retries += 1
                    await asyncio.sleep(random.uniform(0, 0.02 * attempt))
                    continue
                self.stats.replays += 1
                return await self._replay(conn, batch)
            return [_decode(job, job_rows) for job, job_rows in zip(batch, rows, strict=True)]
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_batch(self, conn: _Conn, batch: list[_Job]) -> list[list[list[_Row]]]:
        # BEGIN, every statement and COMMIT in one pipeline: one round trip per batch. No
        # SAVEPOINTs here: expected failures write nothing and raise nothing, and hundreds of
        # subtransactions per transaction would slow every other session's snapshots.
        commits = [job.commit for job in batch if job.commit is not None]
        if len(commits) == len(batch) > 1 and len({c.run_id for c in commits}) == len(commits):
            # The usual batch: commits of different runs, all in one statement.
            merged = (self._q.commit, _commit_params(commits))
            rows = await _pipeline(conn, [("BEGIN", None), merged, ("COMMIT", None)])
            applied = {row[0] for row in rows[1]}
            return [[[(c.run_id,)] if c.run_id in applied else []] for c in commits]
        statements: list[_Statement] = [("BEGIN", None)]
        sizes = []
        for job in batch:
            job_statements = self._statements(job)
            statements += job_statements
            sizes.append(len(job_statements))
        statements.append(("COMMIT", None))
        rows = await _pipeline(conn, statements)
        by_job = []
        start = 1
        for size in sizes:
            by_job.append(rows[start : start + size])
            start += size
        return by_job

    def _statements(self, job: _Job) -> list[_Statement]:
        if job.commit is not None:
            return [(self._q.commit, _commit_params([job.commit]))]
        return job.statements

    async def _replay(self, conn: _Conn, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run ``batch`` write by write, each in a SAVEPOINT, so a failing write fails alone."""
        outcomes: list[tuple[bool, Any]] = []
        await conn.execute("BEGIN")
        try:
            for job in batch:
                statements = [
                    ("SAVEPOINT statesaga_write", None),
                    *self._statements(job),
                    ("RELEASE SAVEPOINT statesaga_write", None),
                ]
                try:
                    rows = await _pipeline(conn, statements)
                except psycopg.Error as error:
                    if conn.broken or conn.closed:
                        raise
                    await conn.execute("ROLLBACK TO SAVEPOINT statesaga_write")
                    await conn.execute("RELEASE SAVEPOINT statesaga_write")
                    outcomes.append((False, self._failure(error, job.run_id)))
                    continue
                outcomes.append(_decode(job, rows[1:-1]))
            await conn.execute("COMMIT")
        except BaseException:
            if not (conn.broken or conn.closed):
                await _rollback(conn)
            raise
        return outcomes

    async def _explain_stale(
        self, conn: _Conn, outcomes: list[tuple[bool, Any]], stale: list[int]
    ) -> None:
        """Turn ``_Stale`` outcomes into ``WriteConflict`` or ``RunNotFound`` (one query)."""
        marks: list[_Stale] = [outcomes[i][1] for i in stale]
        found: dict[str, tuple[int, str | None]] | None
        try:
            cur = await conn.execute(self._q.leases, ([m.run_id for m in marks],))
            found = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
        except psycopg.Error:
            found = None  # the conflict stands; only its details are missing
        for index, mark in zip(stale, marks, strict=True):
            expected = f"expected version {mark.version} leased to {mark.owner}"
            if found is None:
                error: StoreError = WriteConflict(mark.run_id, expected)
            elif mark.run_id not in found:
                error = RunNotFound(mark.run_id)
            else:
                version, owner = found[mark.run_id]
                error = WriteConflict(
                    mark.run_id, f"{expected}, found version {version} leased to {owner}"
                )
            outcomes[index] = (False, error)

    async def _writer_connection(self, state: _State) -> _Conn:
        """The writer's connection: checked if it sat idle, replaced if it is gone."""
        conn = state.writer_conn
        if conn is not None and state.loop.time() - state.writer_used > WRITER_CHECK_AFTER:
            # A connection idle for a while may have been dropped (server restart, firewall).
            # Finding out now costs one round trip; finding out while sending the batch would
            # leave its outcome unknown and fail every write in it.
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error:
                await self._drop_writer_conn(state)
                conn = None
        if conn is None or conn.closed:
            conn = state.writer_conn = await self._connect()
        return conn

    async def _drop_writer_conn(self, state: _State) -> None:
        conn, state.writer_conn = state.writer_conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    def _failure(self, error: BaseException, run_id: str | None, *, unknown: bool = False) -> Any:
        if isinstance(error, StoreError) or not isinstance(error, psycopg.Error):
            return error  # our own verdicts, and bugs, reach the caller unchanged
        what = f"write of run {run_id}" if run_id else "write"
        if unknown:
            verdict = "lost its connection; it may or may not have been applied"
        else:
            verdict = "failed and was not applied"
        return StoreError(
            f"PostgreSQL store {self._safe_url}: {what} {verdict} ({self._reason(error)})",
            run_id=run_id,
        )

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, run_id: str) -> RunSnapshot:
        q = self._q

        async def read(conn: _Conn) -> RunSnapshot:
            # The run, its steps and its history from one snapshot, in one round trip.
            statements: list[_Statement] = [
                ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", None),
                (q.run, (run_id,)),
                (q.steps, (run_id,)),
                (q.history, (run_id,)),
                ("COMMIT", None),
            ]
            run_rows, step_rows, history_rows = (await _pipeline(conn, statements))[1:-1]
            if not run_rows:
                raise RunNotFound(run_id)
            return _snapshot(run_rows[0], step_rows, history_rows)

        return await self._read(read)

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        query = self._q.list_runs[status is not None, saga is not None]
        params = [value for value in (status, saga) if value is not None]
        limit = max(limit, 0)

        async def read(conn: _Conn) -> list[RunRecord]:
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
                            runs.append(_run_from_row(row))
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

        return await self._read(read)

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        async def read(conn: _Conn) -> list[str]:
            cur = await conn.execute(self._q.unfinished, (now, max(limit, 0)))
            return [row[0] for row in await cur.fetchall()]

        return await self._read(read)

    async def _read(self, operation: Callable[[_Conn], Awaitable[_R]]) -> _R:
        state = self._current()
        async with state.read_slots:
            for attempt in (1, 2):
                reused = bool(state.idle)
                conn = state.idle.pop() if reused else await self._connect()
                try:
                    result = await operation(conn)
                except psycopg.Error as error:
                    broken = conn.broken or conn.closed
                    await self._give_back(state, conn)
                    if broken and reused and attempt == 1:
                        continue  # a pooled connection the server dropped: reads can retry
                    raise StoreError(
                        f"PostgreSQL store {self._safe_url}: read failed ({self._reason(error)})"
                    ) from None
                except BaseException:
                    await self._give_back(state, conn)
                    raise
                await self._give_back(state, conn)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _give_back(self, state: _State, conn: _Conn) -> None:
        """Pool ``conn`` again if it is healthy and idle, else close it."""
        clean = not (conn.broken or conn.closed)
        if clean and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            clean = await _rollback(conn)
        if clean and self._state is state and not state.closing:
            state.idle.append(conn)
            return
        with contextlib.suppress(psycopg.Error):
            await conn.close()


# -- helpers ---------------------------------------------------------------------------------


async def _pipeline(conn: _Conn, statements: Sequence[_Statement]) -> list[list[_Row]]:
    """Send ``statements`` in one round trip and return each one's rows.

    The first error is raised once the pipeline is drained, so psycopg does not log the
    statements the server skipped after it.
    """
    cursors: list[_Cursor] = []
    failure: psycopg.Error | None = None
    async with conn.pipeline() as pipeline:
        try:
            for query, params in statements:
                cur = conn.cursor()
                await cur.execute(query, params)
                cursors.append(cur)
            await pipeline.sync()
        except psycopg.Error as error:
            failure = error
            with contextlib.suppress(psycopg.Error):
                await pipeline.sync()
    if failure is not None:
        raise failure
    return [await _rows(cur) for cur in cursors]


async def _rows(cur: _Cursor) -> list[_Row]:
    return await cur.fetchall() if cur.description is not None else []


async def _rollback(conn: _Conn) -> bool:
    """Roll back any open transaction; whether the connection is usable afterwards."""
    try:
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            await conn.execute("ROLLBACK")
    except psycopg.Error:
        with contextlib.suppress(psycopg.Error):
            await conn.close()
        return False
    return True


def _commit_params(commits: Sequence[_CommitRows]) -> list[list[Any]]:
    """The commit statement's parameters: one array per column of each of its three tables."""
    params: list[list[Any]] = []
    for rows, width in (
        ([c.run for c in commits], 8),
        ([row for c in commits for row in c.steps], 6),
        ([row for c in commits for row in c.history], 8),
    ):
        params += [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width
    return params


def _text(error: str | None) -> str | None:
    """An error text PostgreSQL can store: ``text`` cannot hold NUL, so it becomes U+FFFD.

    Otherwise an exception message with a NUL in it would make every commit of its run fail.
    """
    return error.replace("\x00", "\ufffd") if error and "\x00" in error else error


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def _decode(job: _Job, rows: list[list[_Row]]) -> tuple[bool, Any]:
    try:
        return True, job.decode(rows)
    except Exception as error:
        return False, error


def _nothing(_: list[list[_Row]]) -> None:
    return None


def _snapshot(run_row: _Row, step_rows: list[_Row], history_rows: list[_Row]) -> RunSnapshot:
    run = _run_from_row(run_row)
    run_id = run.run_id
    steps = {
        step: StepRecord(
            step, phase, attempt, loads(result, run_id=run_id, what=f"result of step {step}"), error
        )
        for step, phase, attempt, result, error in step_rows
    }
    history = tuple(TransitionRecord(*row) for row in history_rows)
    return RunSnapshot(run=run, steps=steps, history=history)


def _run_from_row(row: _Row) -> RunRecord:
    run_id = row[0]
    data = loads(row[4], run_id=run_id, what="input")
    config = loads(row[6], run_id=run_id, what="config")
    if not isinstance(data, dict) or not isinstance(config, dict):
        raise StoreError(
            f"run {run_id}: stored input or config is not a JSON object", run_id=run_id
        )
    return RunRecord(run_id, row[1], row[2], row[3], data, row[5], config, *row[7:])


__all__ = ["MAX_BATCH", "WRITER_CHECK_AFTER", "PostgresStats", "PostgresStore"]
