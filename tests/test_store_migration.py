"""Stores written by schema version 1 are migrated in place when opened, and keep their runs.

The version-1 tables are built here from the DDL that version shipped (copied, not imported:
the package only knows its current schema), holding a run with a step and a history entry.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesaga.store import (
    SCHEMA_VERSION,
    RunRecord,
    SagaStore,
    SignalRecord,
    StepRecord,
    StoreError,
    TransitionRecord,
)
from statesaga.store.sqlite import SQLiteStore

# -- the version-1 schemas, as shipped ----------------------------------------------------------

SQLITE_V1 = (
    "CREATE TABLE statesaga_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE statesaga_runs ("
    " run_id TEXT PRIMARY KEY NOT NULL, saga TEXT NOT NULL, saga_path TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL, input TEXT NOT NULL, status TEXT NOT NULL,"
    " config TEXT NOT NULL, version INTEGER NOT NULL, lease_owner TEXT, lease_expires REAL,"
    " created_at REAL NOT NULL, updated_at REAL NOT NULL, failed_step TEXT, error TEXT)",
    "CREATE INDEX statesaga_runs_by_status ON statesaga_runs (status, created_at)",
    "CREATE INDEX statesaga_runs_by_saga ON statesaga_runs (saga, created_at)",
    "CREATE TABLE statesaga_steps ("
    " run_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL, attempt INTEGER NOT NULL,"
    " result TEXT, error TEXT, PRIMARY KEY (run_id, step)) WITHOUT ROWID",
    "CREATE TABLE statesaga_history ("
    ' run_id TEXT NOT NULL, seq INTEGER NOT NULL, "trigger" TEXT NOT NULL,'
    " source TEXT NOT NULL, dest TEXT NOT NULL, at REAL NOT NULL, attempt INTEGER NOT NULL,"
    " error TEXT, PRIMARY KEY (run_id, seq)) WITHOUT ROWID",
    "CREATE TABLE statesaga_outbox ("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL,"
    " step TEXT NOT NULL, topic TEXT NOT NULL, key TEXT, payload TEXT NOT NULL,"
    " headers TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL,"
    " attempts INTEGER NOT NULL, retry_at REAL NOT NULL, claim_owner TEXT, claim_until REAL,"
    " sent_at REAL, last_error TEXT)",
    "CREATE INDEX statesaga_outbox_by_status ON statesaga_outbox (status, seq)",
    "CREATE INDEX statesaga_outbox_unsent_keys ON statesaga_outbox (key, seq)"
    " WHERE status <> 'sent'",
    "INSERT INTO statesaga_meta (key, value) VALUES ('schema_version', '1')",
)


def postgres_v1(schema: str) -> tuple[str, ...]:
    """Version 1's DDL for a PostgreSQL schema named ``schema``."""
    s = f'"{schema}"'
    return (
        f"CREATE TABLE {s}.statesaga_meta (key text PRIMARY KEY, value text NOT NULL)",
        f"CREATE TABLE {s}.statesaga_runs ("
        ' run_id text COLLATE "C" PRIMARY KEY, saga text NOT NULL, saga_path text NOT NULL,'
        " fingerprint text NOT NULL, input json NOT NULL, status text NOT NULL,"
        " config json NOT NULL, version bigint NOT NULL, lease_owner text,"
        " lease_expires double precision, created_at double precision NOT NULL,"
        " updated_at double precision NOT NULL, failed_step text, error text)",
        f"CREATE INDEX statesaga_runs_by_status ON {s}.statesaga_runs (status, created_at)",
        f"CREATE INDEX statesaga_runs_by_saga ON {s}.statesaga_runs (saga, created_at)",
        f"CREATE INDEX statesaga_runs_unfinished ON {s}.statesaga_runs (created_at, run_id)"
        " WHERE status NOT IN ('compensated', 'completed', 'failed')",
        f"CREATE TABLE {s}.statesaga_steps ("
        ' run_id text COLLATE "C" NOT NULL, step text COLLATE "C" NOT NULL,'
        " phase text NOT NULL, attempt bigint NOT NULL, result json, error text,"
        " PRIMARY KEY (run_id, step))",
        f"CREATE TABLE {s}.statesaga_history ("
        ' run_id text COLLATE "C" NOT NULL, seq bigint NOT NULL, "trigger" text NOT NULL,'
        " source text NOT NULL, dest text NOT NULL, at double precision NOT NULL,"
        " attempt bigint NOT NULL, error text, PRIMARY KEY (run_id, seq))",
        f"CREATE TABLE {s}.statesaga_outbox ("
        " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        ' id text COLLATE "C" NOT NULL UNIQUE, run_id text COLLATE "C" NOT NULL,'
        ' step text NOT NULL, topic text NOT NULL, key text COLLATE "C",'
        " payload json NOT NULL, headers json NOT NULL, created_at double precision NOT NULL,"
        " status text NOT NULL, attempts bigint NOT NULL,"
        " retry_at double precision NOT NULL, claim_owner text,"
        " claim_until double precision, sent_at double precision, last_error text)",
        f"CREATE INDEX statesaga_outbox_by_status ON {s}.statesaga_outbox (status, seq)",
        f"CREATE INDEX statesaga_outbox_unsent_keys ON {s}.statesaga_outbox (key, seq)"
        " WHERE status <> 'sent'",
        f"INSERT INTO {s}.statesaga_meta (key, value) VALUES ('schema_version', '1')",
    )


# The run the version-1 store holds: running, one step done, one transition.
RUN_ROW = (
    "r1",
    "OrderSaga",
    "shop:OrderSaga",
    "fp",
    '{"order":"ORD-1"}',
    "running",
    '{"a":"a.succeeded","saga":"saga.running"}',
    3,
    "w1",
    1e12,
    1.0,
    2.0,
    None,
    None,
)
STEP_ROW = ("r1", "a", "succeeded", 1, '{"n":1}', None)
HISTORY_ROW = ("r1", 1, "a.succeed", "a.running", "a.succeeded", 2.0, 1, None)
RUN = RunRecord(
    "r1",
    "OrderSaga",
    "shop:OrderSaga",
    "fp",
    {"order": "ORD-1"},
    "running",
    {"a": "a.succeeded", "saga": "saga.running"},
    3,
    "w1",
    1e12,
    1.0,
    2.0,
)
SIGNAL = SignalRecord("r1", "s1", "approval", {"ok": True}, 5.0)


async def check_migrated(store: SagaStore) -> None:
    """The version-1 run is intact in ``store``, and signals and waits work on it."""
    snapshot = await store.load("r1")
    assert snapshot.run == RUN
    assert snapshot.run.wake_at is None
    assert dict(snapshot.steps) == {"a": StepRecord("a", "succeeded", 1, {"n": 1})}
    assert snapshot.history == (
        TransitionRecord(1, "a.succeed", "a.running", "a.succeeded", 2.0, 1),
    )
    assert await store.add_signal(SIGNAL) is True
    assert dict((await store.load("r1")).signals) == {"approval": SIGNAL}
    assert await store.waiting() == []
    assert await store.unfinished(1e13) == ["r1"]  # its lease has run out by then


# -- SQLite --------------------------------------------------------------------------------------


def sqlite_v1(path: Path) -> None:
    """A version-1 SQLite store at ``path`` holding the run ``r1``."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in SQLITE_V1:
                conn.execute(statement)
            conn.execute(f"INSERT INTO statesaga_runs VALUES ({', '.join('?' * 14)})", RUN_ROW)
            conn.execute("INSERT INTO statesaga_steps VALUES (?, ?, ?, ?, ?, ?)", STEP_ROW)
            conn.execute(
                "INSERT INTO statesaga_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)", HISTORY_ROW
            )
    finally:
        conn.close()


def sqlite_schema(path: Path) -> tuple[str, set[str], set[str]]:
    """The stored schema version, the runs table's columns and statesaga's objects."""
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT value FROM statesaga_meta").fetchone()[0]
        columns = {row[1] for row in conn.execute("PRAGMA table_info(statesaga_runs)")}
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    return version, columns, names


@pytest.mark.parametrize("create", [True, False])
async def test_a_sqlite_store_of_version_1_is_migrated_on_open(
    tmp_path: Path, create: bool
) -> None:
    """open() (also with create=False) migrates a version-1 file: runs intact, signals work."""
    path = tmp_path / "v1.db"
    sqlite_v1(path)
    assert "wake_at" not in sqlite_schema(path)[1]
    store = SQLiteStore(path)
    await store.open(create=create)
    try:
        await check_migrated(store)
    finally:
        await store.close()
    version, columns, names = sqlite_schema(path)
    assert version == str(SCHEMA_VERSION) == "2"
    assert "wake_at" in columns
    assert {"statesaga_signals", "statesaga_runs_runnable", "statesaga_runs_waking"} <= names


async def test_a_migrated_sqlite_store_opens_again_as_it_is(tmp_path: Path) -> None:
    """A store migrated once opens again without change, its signals still there."""
    path = tmp_path / "v1.db"
    sqlite_v1(path)
    async with SQLiteStore(path) as first:
        await first.add_signal(SIGNAL)
    async with SQLiteStore(path) as second:
        assert dict((await second.load("r1")).signals) == {"approval": SIGNAL}
        assert (await second.load("r1")).run == RUN
    assert sqlite_schema(path)[0] == "2"


async def test_a_sqlite_store_of_an_unknown_older_version_is_refused(tmp_path: Path) -> None:
    """A version with no migration (0) is refused, saying so, and the file is not changed."""
    path = tmp_path / "v0.db"
    sqlite_v1(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE statesaga_meta SET value = '0'")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 0 .* has no migration"):
        await SQLiteStore(path).open()
    assert "wake_at" not in sqlite_schema(path)[1]


# -- PostgreSQL ----------------------------------------------------------------------------------


def postgres_v1_schema(schema: str) -> None:
    """Version 1's tables in ``schema`` (which exists), holding the run ``r1``."""
    from test_store_postgres import admin

    for statement in postgres_v1(schema):
        admin(statement)
    s = f'"{schema}"'
    admin(f"INSERT INTO {s}.statesaga_runs VALUES ({', '.join(['%s'] * 14)})", RUN_ROW)
    admin(f"INSERT INTO {s}.statesaga_steps VALUES (%s, %s, %s, %s, %s, %s)", STEP_ROW)
    admin(f"INSERT INTO {s}.statesaga_history VALUES ({', '.join(['%s'] * 8)})", HISTORY_ROW)


@pytest.fixture
def pg_v1() -> Iterator[str]:
    """A fresh PostgreSQL schema holding version 1's tables and a run; dropped afterwards."""
    from test_store_postgres import admin, drop_schema, new_schema, require_server

    require_server()
    name = new_schema()
    try:
        admin(f'CREATE SCHEMA "{name}"')
        postgres_v1_schema(name)
        yield name
    finally:
        drop_schema(name)


def postgres_catalog(schema: str) -> tuple[str, set[str], set[str]]:
    """The stored schema version, the runs table's columns and the schema's relations."""
    from test_store_postgres import admin

    version = admin(f'SELECT value FROM "{schema}".statesaga_meta')[0][0]
    columns = {
        row[0]
        for row in admin(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'statesaga_runs'",
            (schema,),
        )
    }
    names = {
        row[0]
        for row in admin(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s",
            (schema,),
        )
    }
    return version, columns, names


@pytest.mark.parametrize("create", [True, False])
async def test_a_postgres_store_of_version_1_is_migrated_on_open(pg_v1: str, create: bool) -> None:
    """open() (also with create=False) migrates a version-1 schema: runs intact, signals work."""
    from test_store_postgres import URL

    from statesaga.store.postgres import PostgresStore

    assert "wake_at" not in postgres_catalog(pg_v1)[1]
    store = PostgresStore(URL, schema=pg_v1)
    await store.open(create=create)
    try:
        await check_migrated(store)
    finally:
        await store.close()
    version, columns, names = postgres_catalog(pg_v1)
    assert version == "2"
    assert "wake_at" in columns
    assert {"statesaga_signals", "statesaga_runs_runnable", "statesaga_runs_waking"} <= names
    assert "statesaga_runs_unfinished" not in names  # it listed sleeping runs too


async def test_workers_opening_a_version_1_schema_together_migrate_it_once(pg_v1: str) -> None:
    """Several stores opening one version-1 schema at once all open it, and it ends at 2."""
    from test_store_postgres import URL

    from statesaga.store.postgres import PostgresStore

    stores = [PostgresStore(URL, schema=pg_v1) for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await check_migrated(stores[3])
        assert dict((await stores[0].load("r1")).signals) == {"approval": SIGNAL}
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert postgres_catalog(pg_v1)[0] == "2"


async def test_a_postgres_store_of_an_unknown_older_version_is_refused(pg_v1: str) -> None:
    """A version with no migration (0) is refused, saying so, and nothing is changed."""
    from test_store_postgres import URL, admin

    from statesaga.store.postgres import PostgresStore

    admin(f"UPDATE \"{pg_v1}\".statesaga_meta SET value = '0'")
    with pytest.raises(StoreError, match=r"schema version 0 .* has no migration"):
        await PostgresStore(URL, schema=pg_v1).open()
    assert "wake_at" not in postgres_catalog(pg_v1)[1]
