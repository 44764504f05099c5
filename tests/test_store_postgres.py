"""The PostgreSQL store against a real server: schema, errors, leases across connections, batching.

The server is ``$STATESAGA_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Tests skip when it is unreachable, except under ``CI=true``, where they fail instead. Each test
works in a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from statesaga.store import (
    SCHEMA_VERSION,
    SCHEMES,
    Commit,
    LeaseHeld,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    StepRecord,
    StoreError,
    StoreNotFound,
    TransitionRecord,
    WriteConflict,
    hide_password,
    postgres,
    store_from_url,
)
from statesaga.store.postgres import PostgresStore

URL = os.environ.get("STATESAGA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
UNREACHABLE = "postgresql://postgres:s3cret-pw@127.0.0.1:1/test"
FAR = 1e12
NOW = 1_000.0
TABLES = {"statesaga_meta", "statesaga_runs", "statesaga_steps", "statesaga_history"}


# -- server and schema helpers (also used by tests/test_store_contract.py) ---------------------


@functools.cache
def _unreachable_reason(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return " ".join(str(error).split())


def require_server(url: str = URL) -> None:
    """Skip the calling test if ``url`` is unreachable, or fail it when ``$CI`` is ``true``."""
    reason = _unreachable_reason(url)
    if reason is None:
        return
    message = (
        f"PostgreSQL server {hide_password(url)} is unreachable ({reason}); "
        "set STATESAGA_TEST_POSTGRES to a reachable server"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def admin(query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (autocommit) and return its rows."""
    with psycopg.connect(URL, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


def new_schema() -> str:
    """A schema name no other test uses."""
    return f"statesaga_test_{uuid.uuid4().hex[:12]}"


def drop_schema(name: str) -> None:
    """Drop ``name`` and everything in it, if it exists."""
    admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def postgres_store(request: pytest.FixtureRequest) -> PostgresStore:
    """An unopened store on a fresh schema that is dropped when the test ends."""
    require_server()
    name = new_schema()
    request.addfinalizer(lambda: drop_schema(name))
    return PostgresStore(URL, schema=name)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def schema_name() -> Iterator[str]:
    """A fresh schema name (not created), dropped with its contents at teardown."""
    require_server()
    name = new_schema()
    yield name
    drop_schema(name)


@pytest.fixture
def schema(schema_name: str) -> str:
    """A fresh, empty schema, dropped at teardown."""
    admin(f'CREATE SCHEMA "{schema_name}"')
    return schema_name


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    """An open store on a fresh schema."""
    async with PostgresStore(URL, schema=schema) as opened:
        yield opened


def make_run(run_id: str = "r1", **changes: Any) -> RunRecord:
    """A running run leased to ``w1`` until far in the future, version 0."""
    fields: dict[str, Any] = {
        "run_id": run_id,
        "saga": "OrderSaga",
        "saga_path": "shop:OrderSaga",
        "fingerprint": "f" * 16,
        "input": {"order_id": run_id},
        "status": "running",
        "config": {"saga": "saga.running"},
        "version": 0,
        "lease_owner": "w1",
        "lease_expires": FAR,
        "created_at": 100.0,
        "updated_at": 100.0,
    }
    fields.update(changes)
    return RunRecord(**fields)


def make_commit(run_id: str = "r1", version: int = 0, *, seq: int = 1, **changes: Any) -> Commit:
    """A commit by ``w1`` that records one step row and one transition."""
    fields: dict[str, Any] = {
        "run_id": run_id,
        "version": version,
        "lease_owner": "w1",
        "status": "running",
        "config": {"saga": "saga.running", "reserve": f"reserve.{seq}"},
        "steps": [StepRecord("reserve", "running", seq)],
        "transitions": [TransitionRecord(seq, "reserve.start", "a", "b", 100.0 + seq, 1)],
        "updated_at": 100.0 + seq,
    }
    fields.update(changes)
    return Commit(**fields)


def catalog(schema: str) -> list[tuple[Any, ...]]:
    """Every relation in ``schema`` with its kind, and the stored schema version if any."""
    relations = admin(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s ORDER BY 1",
        (schema,),
    )
    return relations


# -- opening -----------------------------------------------------------------------------------


async def test_open_creates_tables_and_indexes_in_the_schema(schema: str) -> None:
    """open() creates the tables and their indexes in the given schema, at this version."""
    async with PostgresStore(URL, schema=schema):
        pass
    names = {name for name, _ in catalog(schema)}
    assert names >= TABLES
    assert {"statesaga_runs_by_status", "statesaga_runs_by_saga"} <= names
    indexed = admin(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
        " AND indexname LIKE 'statesaga_runs_by_%%'",
        (schema,),
    )
    definitions = dict(indexed)
    assert "(status, created_at)" in definitions["statesaga_runs_by_status"]
    assert "(saga, created_at)" in definitions["statesaga_runs_by_saga"]
    assert admin(f'SELECT value FROM "{schema}".statesaga_meta') == [(str(SCHEMA_VERSION),)]
    types = dict(
        admin(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'statesaga_runs'",
            (schema,),
        )
    )
    assert types["input"] == types["config"] == "json"


async def test_open_creates_a_missing_schema_even_with_many_workers_at_once(
    schema_name: str,
) -> None:
    """Several stores opening a schema that does not exist yet all succeed."""
    stores = [PostgresStore(URL, schema=schema_name) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].create(make_run())
        assert (await stores[5].load("r1")).run == make_run()
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert {name for name, _ in catalog(schema_name)} >= TABLES


async def test_reopen_keeps_data(schema: str) -> None:
    """Runs written before close() load unchanged from a new store on the same schema."""
    async with PostgresStore(URL, schema=schema) as first:
        await first.create(make_run())
        await first.commit(make_commit())
        before = await first.load("r1")
    async with PostgresStore(URL, schema=schema) as second:
        assert await second.load("r1") == before
        assert before.run.version == 1


async def test_newer_schema_version_is_refused_and_nothing_changes(schema: str) -> None:
    """A schema written by a newer statesaga is refused, and open() writes nothing to it."""
    async with PostgresStore(URL, schema=schema) as store:
        await store.create(make_run())
    admin(f"UPDATE \"{schema}\".statesaga_meta SET value = '{SCHEMA_VERSION + 1}'")
    admin(f'DROP INDEX "{schema}".statesaga_runs_by_saga')  # open() would recreate it
    before = catalog(schema)
    with pytest.raises(StoreError, match="newer") as caught:
        await PostgresStore(URL, schema=schema).open()
    assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
    assert catalog(schema) == before
    assert admin(f'SELECT value FROM "{schema}".statesaga_meta') == [(str(SCHEMA_VERSION + 1),)]
    assert admin(f'SELECT run_id, version FROM "{schema}".statesaga_runs') == [("r1", 0)]


async def test_newer_version_in_an_otherwise_empty_schema_creates_nothing(schema: str) -> None:
    """With only a newer meta table present, open() refuses before creating any table."""
    admin(f'CREATE TABLE "{schema}".statesaga_meta (key text PRIMARY KEY, value text NOT NULL)')
    admin(f"INSERT INTO \"{schema}\".statesaga_meta VALUES ('schema_version', '99')")
    with pytest.raises(StoreError, match="99"):
        await PostgresStore(URL, schema=schema).open()
    assert [name for name, _ in catalog(schema)] == ["statesaga_meta", "statesaga_meta_pkey"]


def with_schema(name: str, url: str = URL) -> str:
    """``url`` naming schema ``name``, as users write it for store_from_url."""
    return f"{url}{'&' if '?' in url else '?'}schema={name}"


def schema_exists(name: str) -> bool:
    """Whether the server has a schema called ``name``."""
    return bool(admin("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)))


async def test_open_without_create_leaves_a_missing_schema_missing(schema_name: str) -> None:
    """open(create=False) on a schema that does not exist: StoreNotFound, no schema made."""
    with pytest.raises(StoreNotFound, match=f"schema '{schema_name}' does not exist") as caught:
        await store_from_url(with_schema(schema_name)).open(create=False)
    assert str(caught.value).startswith(f"no statesaga store at {hide_password(URL)} (")
    assert not schema_exists(schema_name)


async def test_open_without_create_creates_nothing_in_an_empty_schema(schema: str) -> None:
    """open(create=False) on a schema without statesaga's tables: StoreNotFound, none made."""
    with pytest.raises(StoreNotFound, match="holds no statesaga tables"):
        await PostgresStore(URL, schema=schema).open(create=False)
    assert catalog(schema) == []


async def test_open_without_create_names_the_store_with_its_password_hidden(
    schema_name: str,
) -> None:
    """The StoreNotFound message shows the URL with its password replaced by ***."""
    parts = urlsplit(URL)
    password = parts.password
    url = URL
    if password is None:  # the test server trusts us: a password it ignores will do
        password = "pw-never-shown"
        netloc = f"{parts.username or 'postgres'}:{password}@{parts.netloc.rpartition('@')[2]}"
        url = urlunsplit(parts._replace(netloc=netloc))
    with pytest.raises(StoreNotFound) as caught:
        await store_from_url(with_schema(schema_name, url)).open(create=False)
    assert password not in str(caught.value)
    assert ":***@" in caught.value.url
    assert caught.value.url in str(caught.value)


async def test_open_without_create_of_a_newer_schema_says_so_and_creates_nothing(
    schema: str,
) -> None:
    """A schema of a newer statesaga is a store: refused as newer (not 'no store'), unchanged."""
    admin(f'CREATE TABLE "{schema}".statesaga_meta (key text PRIMARY KEY, value text NOT NULL)')
    admin(f"INSERT INTO \"{schema}\".statesaga_meta VALUES ('schema_version', '99')")
    before = catalog(schema)
    with pytest.raises(StoreError, match="newer") as caught:
        await PostgresStore(URL, schema=schema).open(create=False)
    assert not isinstance(caught.value, StoreNotFound)
    assert catalog(schema) == before


async def test_unreachable_server_is_a_store_error_with_the_password_hidden() -> None:
    """Connecting to a closed port raises StoreError naming the URL (password hidden) and why."""
    store = PostgresStore(UNREACHABLE)
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert "postgres:***@127.0.0.1:1/test" in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in repr(store)
    assert "refused" in message or "failed" in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    with pytest.raises(StoreError, match="not open"):
        await store.load("r1")


def test_invalid_url_and_options_are_store_errors() -> None:
    """A malformed URL, an empty schema and a zero pool size are refused at construction."""
    with pytest.raises(StoreError, match="not a valid PostgreSQL URL"):
        PostgresStore("postgresql://u:pw@host/db?nonsense_option=1")
    with pytest.raises(StoreError, match="schema"):
        PostgresStore(URL, schema="")
    with pytest.raises(StoreError, match="pool_size"):
        PostgresStore(URL, pool_size=0)


def test_store_from_url_builds_a_postgres_store() -> None:
    """postgresql:// and postgres:// URLs give an unopened PostgresStore keeping the URL."""
    assert "postgresql" in SCHEMES
    for url in ("postgresql://u:pw@db.example/app", "postgres://u@db.example/app"):
        store = store_from_url(url)
        assert isinstance(store, PostgresStore)
        assert store.url == url
        assert store.schema == "public"


def test_require_server_fails_under_ci_and_skips_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable test server fails the test when CI=true and skips it otherwise."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="unreachable"):
        require_server(UNREACHABLE)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="STATESAGA_TEST_POSTGRES"):
        require_server(UNREACHABLE)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_server(UNREACHABLE)


def test_one_store_used_from_several_event_loops_in_turn(schema: str) -> None:
    """A store opened in one loop can be opened again in the next, closed or not."""
    store = PostgresStore(URL, schema=schema)

    async def first() -> None:
        await store.open()
        await store.create(make_run())
        await store.close()

    async def second() -> None:
        await store.open()
        await store.commit(make_commit())  # left open: the loop ends under it

    async def third() -> RunSnapshot:
        async with store:
            return await store.load("r1")

    asyncio.run(first())
    asyncio.run(second())
    assert asyncio.run(third()).run.version == 1


# -- leases ------------------------------------------------------------------------------------


async def test_two_workers_racing_for_an_expired_lease_exactly_one_wins(schema: str) -> None:
    """Two stores (two connections) acquiring the same expired runs: one wins each run."""
    runs = [f"r{i}" for i in range(20)]
    async with PostgresStore(URL, schema=schema) as a, PostgresStore(URL, schema=schema) as b:
        for run_id in runs:
            await a.create(make_run(run_id, lease_owner="dead", lease_expires=NOW - 5))
        races = [
            asyncio.gather(
                a.acquire(run_id, "w1", NOW + 30, NOW),
                b.acquire(run_id, "w2", NOW + 30, NOW),
                return_exceptions=True,
            )
            for run_id in runs
        ]
        for run_id, outcomes in zip(runs, await asyncio.gather(*races), strict=True):
            won = [o for o in outcomes if isinstance(o, RunSnapshot)]
            lost = [o for o in outcomes if isinstance(o, LeaseHeld)]
            assert (len(won), len(lost)) == (1, 1), outcomes
            winner = won[0].run.lease_owner
            assert lost[0].owner == winner
            assert lost[0].expires == NOW + 30
            stored = (await a.load(run_id)).run
            assert (stored.lease_owner, stored.version) == (winner, 1)


async def test_workers_taking_the_same_runs_in_opposite_orders_do_not_deadlock(
    schema: str,
) -> None:
    """Two workers each take two dead runs in one batch, listed in opposite orders: their
    batches lock the runs in one order, so neither waits for PostgreSQL to find a deadlock (a
    second lost, by default) and abort it.

    Each run is held by a gate of its own until both batches wait; the gate of r1 lets go
    first, then, once nothing waits for it any more, the gate of r2. Locking in the order
    listed, worker a then holds r1 and waits behind b for r2, which b gets first and holds
    while it waits for r1: a deadlock every time.
    """
    async with PostgresStore(URL, schema=schema) as a, PostgresStore(URL, schema=schema) as b:
        for run_id in ("r1", "r2"):
            await a.create(make_run(run_id, lease_owner="dead", lease_expires=NOW - 5))
        async with (
            await psycopg.AsyncConnection.connect(URL) as gate1,
            await psycopg.AsyncConnection.connect(URL) as gate2,
            await psycopg.AsyncConnection.connect(URL, autocommit=True) as watch,
        ):
            lock = f'SELECT 1 FROM "{schema}".statesaga_runs WHERE run_id = %s FOR UPDATE'
            await gate1.execute(lock, ("r1",))
            await gate2.execute(lock, ("r2",))
            taking = asyncio.gather(
                a.acquire("r1", "w1", NOW + 30, NOW),
                a.acquire("r2", "w1", NOW + 30, NOW),
                b.acquire("r2", "w2", NOW + 30, NOW),
                b.acquire("r1", "w2", NOW + 30, NOW),
                return_exceptions=True,
            )
            await waits_for_locks(watch, schema, lambda blockers: len(blockers) == 2)
            gate1_pid = gate1.info.backend_pid
            await gate1.commit()
            await waits_for_locks(
                watch,
                schema,
                lambda blockers: len(blockers) == 2 and gate1_pid not in blockers,
            )
            await gate2.commit()
            outcomes = await taking
    # A deadlock's victim is sent again (retries) or write by write (replays).
    assert [(s.retries, s.replays) for s in (a.stats, b.stats)] == [(0, 0), (0, 0)]
    won = [o.run.lease_owner for o in outcomes if isinstance(o, RunSnapshot)]
    assert len(won) == 2, outcomes
    assert len(set(won)) == 1, outcomes  # the first batch took both


async def waits_for_locks(
    conn: psycopg.AsyncConnection[Any], schema: str, done: Callable[[list[int]], bool]
) -> None:
    """Return once ``done`` holds of the backends that block statements on ``schema`` waiting
    for a lock (one pid per waiting statement)."""
    query = (
        "SELECT unnest(pg_blocking_pids(pid)) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND query LIKE %s"
    )
    blockers: list[int] = []
    while not blockers or not done(blockers):
        await asyncio.sleep(0.01)
        cursor = await conn.execute(query, (f'%"{schema}"%',))
        blockers = [row[0] for row in await cursor.fetchall()]


async def test_a_batch_that_loses_a_deadlock_is_sent_again(schema: str) -> None:
    """Another transaction holds r2 while the store's batch takes r1 and r2; then it asks
    for r1: PostgreSQL aborts the batch, which waited first. The batch is sent again whole
    (once the other commits), not write by write."""
    async with PostgresStore(URL, schema=schema) as a:
        for run_id in ("r1", "r2"):
            await a.create(make_run(run_id, lease_owner="dead", lease_expires=NOW - 5))
        async with (
            await psycopg.AsyncConnection.connect(URL) as other,
            await psycopg.AsyncConnection.connect(URL, autocommit=True) as watch,
        ):
            lock = f'SELECT 1 FROM "{schema}".statesaga_runs WHERE run_id = %s FOR UPDATE'
            await other.execute(lock, ("r2",))
            taking = asyncio.gather(
                a.acquire("r1", "w1", NOW + 30, NOW), a.acquire("r2", "w1", NOW + 30, NOW)
            )
            await waits_for_locks(watch, schema, lambda blockers: len(blockers) == 1)
            await other.execute(lock, ("r1",))  # returns once the batch lost
            await other.commit()
            taken = await taking
    assert [t.run.lease_owner for t in taken] == ["w1", "w1"]
    assert (a.stats.retries, a.stats.replays) == (1, 0)


async def test_acquire_of_a_finished_run_leases_it(store: PostgresStore) -> None:
    """A finished run is leased like any other (a failed one may be reopened)."""
    await store.create(make_run(status="completed", lease_owner=None, lease_expires=None))
    snapshot = await store.acquire("r1", "w2", NOW + 30, NOW)
    assert snapshot.run.finished
    assert snapshot.run.lease_owner == "w2"


# -- group commit ------------------------------------------------------------------------------


async def test_200_concurrent_commits_on_50_runs_land_in_few_batches(store: PostgresStore) -> None:
    """200 concurrent commits all land, grouped into far fewer transactions."""
    runs, per_run = 50, 4
    for i in range(runs):
        await store.create(make_run(f"r{i}"))

    async def drive(run_id: str) -> None:
        for n in range(per_run):
            await store.commit(make_commit(run_id, n, seq=n + 1))

    batches, writes = store.stats.batches, store.stats.writes
    await asyncio.gather(*(drive(f"r{i}") for i in range(runs)))
    assert store.stats.writes - writes == runs * per_run
    assert store.stats.batches - batches <= 20
    assert store.stats.largest_batch >= 25
    for i in range(runs):
        snapshot = await store.load(f"r{i}")
        assert snapshot.run.version == per_run
        assert [t.seq for t in snapshot.history] == [1, 2, 3, 4]
        assert snapshot.steps["reserve"].attempt == per_run


async def test_stale_commit_in_a_busy_batch_fails_alone(store: PostgresStore) -> None:
    """A stale commit sharing a transaction with 30 good ones fails; the others land."""
    for i in range(30):
        await store.create(make_run(f"r{i}"))
    await store.commit(make_commit("r7"))  # r7 is at version 1: a commit at 0 is stale
    batches = store.stats.batches
    good = [store.commit(make_commit(f"r{i}", 0)) for i in range(30) if i != 7]
    stale = store.commit(make_commit("r7", 0, seq=2, status="completed"))
    outcomes = await asyncio.gather(*good[:15], stale, *good[15:], return_exceptions=True)
    assert store.stats.batches - batches == 1  # all in one transaction
    assert isinstance(outcomes[15], WriteConflict)
    assert "found version 1 leased to w1" in str(outcomes[15])
    assert outcomes[:15] + outcomes[16:] == [None] * 29
    r7 = await store.load("r7")
    assert (r7.run.version, r7.run.status, len(r7.history)) == (1, "running", 1)
    assert (await store.load("r29")).run.version == 1


async def test_failing_statement_in_a_busy_batch_is_rolled_back_alone(
    store: PostgresStore,
) -> None:
    """A commit the database rejects (duplicate history entry) fails alone via its savepoint."""
    for i in range(20):
        await store.create(make_run(f"r{i}"))
    await store.commit(make_commit("r3"))
    replays = store.stats.replays
    bad = make_commit("r3", 1, seq=1, status="completed")  # seq 1 is already in r3's history
    others = [store.commit(make_commit(f"r{i}", 0)) for i in range(20) if i != 3]
    unknown = store.commit(make_commit("ghost"))
    outcomes = await asyncio.gather(store.commit(bad), *others, unknown, return_exceptions=True)
    assert isinstance(outcomes[0], StoreError)
    assert not isinstance(outcomes[0], WriteConflict)
    assert outcomes[0].run_id == "r3"
    assert "not applied" in str(outcomes[0])
    assert outcomes[1:-1] == [None] * 19
    assert isinstance(outcomes[-1], RunNotFound)
    assert store.stats.replays == replays + 1
    r3 = await store.load("r3")
    assert (r3.run.version, r3.run.status, len(r3.history)) == (1, "running", 1)
    assert [(await store.load(f"r{i}")).run.version for i in range(20)] == [1] * 20


async def test_two_commits_of_one_run_in_one_batch_apply_in_order(store: PostgresStore) -> None:
    """Commits at versions 0 and 1 of one run, queued together, both apply in order."""
    await store.create(make_run())
    batches = store.stats.batches
    await asyncio.gather(store.commit(make_commit()), store.commit(make_commit(version=1, seq=2)))
    assert store.stats.batches - batches == 1
    snapshot = await store.load("r1")
    assert (snapshot.run.version, [t.seq for t in snapshot.history]) == (2, [1, 2])


async def test_int_and_float_times_mix_in_one_batch(store: PostgresStore) -> None:
    """Commits whose times are ints and floats share one batch and load back equal."""
    await store.create(make_run("a"))
    await store.create(make_run("b"))
    first = make_commit("a", updated_at=5, transitions=[TransitionRecord(1, "t", "x", "y", 7)])
    second = make_commit("b", updated_at=5.5)
    await asyncio.gather(store.commit(first), store.commit(second))
    a = await store.load("a")
    assert (a.run.updated_at, a.history[0].at) == (5.0, 7.0)
    assert (await store.load("b")).run.updated_at == 5.5


async def test_nul_in_an_error_text_is_stored_as_a_replacement_character(
    store: PostgresStore,
) -> None:
    """An error text with NUL (which PostgreSQL text cannot hold) still commits."""
    await store.create(make_run())
    step = StepRecord("reserve", "failed", 1, None, "bad\x00byte")
    await store.commit(make_commit(steps=[step], error="run\x00error"))
    snapshot = await store.load("r1")
    assert snapshot.steps["reserve"].error == "bad\ufffdbyte"
    assert snapshot.run.error == "run\ufffderror"


async def test_duplicate_creates_in_one_batch(store: PostgresStore) -> None:
    """Of two creates of one id in the same batch, the first lands and the second fails."""
    outcomes = await asyncio.gather(
        store.create(make_run(saga="First")),
        store.create(make_run(saga="Second")),
        store.create(make_run("r2")),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], StoreError)
    assert "already exists" in str(outcomes[1])
    assert (await store.load("r1")).run.saga == "First"


# -- reads, failures, lifecycle ----------------------------------------------------------------


async def test_reads_do_not_wait_behind_a_blocked_writer(store: PostgresStore, schema: str) -> None:
    """While the writer waits on a row lock, loads and listings still answer."""
    await store.create(make_run("r1"))
    await store.create(make_run("r2"))
    with psycopg.connect(URL) as blocker:  # holds r1's row lock until rollback
        blocker.execute(f"SELECT 1 FROM \"{schema}\".statesaga_runs WHERE run_id = 'r1' FOR UPDATE")
        pending = asyncio.ensure_future(store.commit(make_commit("r1")))
        await asyncio.sleep(0.2)
        assert not pending.done()
        assert (await asyncio.wait_for(store.load("r2"), 5)).run.run_id == "r2"
        assert len(await asyncio.wait_for(store.list_runs(), 5)) == 2
        blocker.rollback()
    await asyncio.wait_for(pending, 5)
    assert (await store.load("r1")).run.version == 1


async def test_lost_connections_are_replaced(schema: str) -> None:
    """After the server drops every connection, reads retry and the writer reconnects."""
    app = f"statesaga-test-{uuid.uuid4().hex[:8]}"
    async with PostgresStore(f"{URL}?application_name={app}", schema=schema) as store:
        await store.create(make_run())
        await store.load("r1")
        killed = admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        )
        assert len(killed) == 2  # the writer and one reader
        assert (await store.load("r1")).run.version == 0
        with pytest.raises(StoreError, match="may or may not have been applied") as caught:
            await store.commit(make_commit())
        assert caught.value.run_id == "r1"
        await store.commit(make_commit())
        assert (await store.load("r1")).run.version == 1


async def test_idle_writer_connection_is_checked_before_use(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer connection dropped while idle is replaced before the next batch is sent."""
    monkeypatch.setattr(postgres, "WRITER_CHECK_AFTER", 0.0)
    app = f"statesaga-test-{uuid.uuid4().hex[:8]}"
    async with PostgresStore(f"{URL}?application_name={app}", schema=schema) as store:
        await store.create(make_run())
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        )
        await store.commit(make_commit())
        assert (await store.load("r1")).run.version == 1


async def test_undecodable_config_is_a_store_error_naming_the_run(
    store: PostgresStore, schema: str
) -> None:
    """A config that is not a JSON object fails load() naming the run; list_runs skips it."""
    await store.create(make_run("bad", created_at=1.0))
    await store.create(make_run("good", created_at=2.0))
    admin(f"UPDATE \"{schema}\".statesaga_runs SET config = '[1, 2]' WHERE run_id = 'bad'")
    with pytest.raises(StoreError, match="run bad") as caught:
        await store.load("bad")
    assert caught.value.run_id == "bad"
    assert [r.run_id for r in await store.list_runs()] == ["good"]


async def test_close_finishes_queued_writes_and_is_idempotent(schema: str) -> None:
    """close() lets queued writes land, can be called twice, and later writes are refused."""
    store = PostgresStore(URL, schema=schema)
    await store.open()
    await store.open()  # idempotent too
    tasks = [asyncio.ensure_future(store.create(make_run(f"r{i}"))) for i in range(25)]
    await asyncio.sleep(0)  # every create is queued
    await store.close()
    await store.close()
    assert [t.result() for t in tasks] == [None] * 25
    with pytest.raises(StoreError, match="not open"):
        await store.create(make_run("late"))
    assert admin(f'SELECT count(*) FROM "{schema}".statesaga_runs') == [(25,)]


def test_a_url_with_several_hosts_has_every_password_hidden() -> None:
    """libpq's several-hosts form is shown without its password, and never breaks the message."""
    url = "postgresql://app:s3cret@h1:5432,h2:5432/db?target_session_attrs=read-write"
    shown = hide_password(url)
    assert "s3cret" not in shown
    assert shown == "postgresql://app:***@h1:5432,h2:5432/db?target_session_attrs=read-write"


def test_a_password_given_as_a_query_parameter_is_hidden() -> None:
    """libpq's ``?password=`` (and ``sslpassword=``) are hidden too, the rest shown as is."""
    url = "postgresql://app@h/db?sslmode=require&password=s3cret&sslpassword=k3y&schema=x"
    shown = hide_password(url)
    assert "s3cret" not in shown
    assert "k3y" not in shown
    assert shown == "postgresql://app@h/db?sslmode=require&password=***&sslpassword=***&schema=x"


async def test_a_schema_name_with_a_percent_sign_holds_the_tables(
    request: pytest.FixtureRequest,
) -> None:
    """A ``%`` in the schema name reaches PostgreSQL as written, in every statement."""
    from statesaga import Saga, SagaStatus, Step

    async def act(ctx: object) -> None:
        return None

    class Pair(Saga):
        steps = (Step("a", act, compensate=act), Step("b", act))

    require_server()
    name = new_schema() + "%x"
    request.addfinalizer(lambda: drop_schema(name))
    async with PostgresStore(URL, schema=name) as store:
        result = await Pair().execute(store=store, saga_id="pct")
        assert result.status is SagaStatus.COMPLETED
        assert (await store.load("pct")).run.status == "completed"


# -- waits and signals -------------------------------------------------------------------------


async def test_add_signal_notifies_the_run_id_when_stored(store: PostgresStore) -> None:
    """A stored signal sends NOTIFY statesaga_signals with the run id; a refused one does not."""
    from statesaga.store import SignalRecord, SignalRefused

    # Run ids of their own: the channel is the database's, and other tests may use it meanwhile.
    waiting, ended = f"r1-{uuid.uuid4().hex}", f"r2-{uuid.uuid4().hex}"
    await store.create(make_run(waiting, status="waiting", lease_owner=None, lease_expires=None))
    await store.create(make_run(ended, status="completed"))
    with psycopg.connect(URL, autocommit=True) as listener:
        listener.execute("LISTEN statesaga_signals")
        with pytest.raises(SignalRefused):
            await store.add_signal(SignalRecord(ended, "s0", "approval", {}, 1.0))
        assert await store.add_signal(SignalRecord(waiting, "s1", "approval", {}, 1.0))
        assert not await store.add_signal(SignalRecord(waiting, "s1", "approval", {}, 1.0))
        heard = [n.payload for n in listener.notifies(timeout=2.0)]
    assert [run_id for run_id in heard if run_id in (waiting, ended)] == [waiting]


async def test_runs_asleep_in_a_wait_are_not_scanned_by_the_poll(store: PostgresStore) -> None:
    """With 10,000 runs asleep in a wait and 5,000 being driven, the poll reads the partial
    indexes, not the table."""
    schema = store.schema
    await store.create(make_run("due", status="waiting", lease_owner=None, wake_at=5.0))
    admin(
        f'INSERT INTO "{schema}".statesaga_runs (run_id, saga, saga_path, fingerprint, input,'
        " status, config, version, created_at, updated_at, wake_at)"
        " SELECT 'w' || i, 's', 's:S', 'fp', '{}', 'waiting', '{}', 0, 0.5, 0.5,"
        " CASE WHEN i % 2 = 0 THEN 1e9 + i END FROM generate_series(1, 10000) i"
    )
    # And 5,000 runs being driven: whether a lease ran out is read off an index too.
    admin(
        f'INSERT INTO "{schema}".statesaga_runs (run_id, saga, saga_path, fingerprint, input,'
        " status, config, version, lease_owner, lease_expires, created_at, updated_at)"
        " SELECT 'd' || i, 's', 's:S', 'fp', '{}', 'running', '{}', 0, 'w', 1e9, 0.5, 0.5"
        " FROM generate_series(1, 5000) i"
    )
    admin(f'ANALYZE "{schema}".statesaga_runs')
    query = store._q.unfinished.replace("%(now)s", "10").replace("%(limit)s", "5")
    plan = "\n".join(row[0] for row in admin(f"EXPLAIN {query}"))
    assert "statesaga_runs_runnable" in plan
    assert "statesaga_runs_waking" in plan
    assert "statesaga_runs_leased" in plan  # a dead driver's runs, by when their lease ran out
    assert "Seq Scan" not in plan
    assert await store.unfinished(10.0) == ["due"]
    assert len(await store.waiting(limit=20_000)) == 10_001


async def test_a_guarded_commit_sees_a_signal_committed_while_it_waited(
    store: PostgresStore,
) -> None:
    """A commit blocked by add_signal's lock on the run sees that signal once it commits."""
    from statesaga.errors import SignalArrived

    await store.create(make_run())
    s = f'"{store.schema}"'
    async with await psycopg.AsyncConnection.connect(URL) as sender:  # as add_signal does
        await sender.execute(f"SELECT 1 FROM {s}.statesaga_runs WHERE run_id = 'r1' FOR UPDATE")
        await sender.execute(
            f"INSERT INTO {s}.statesaga_signals VALUES ('r1', 's1', 'approval', '{{}}', 1.0)"
        )
        guarded = asyncio.create_task(store.commit(make_commit(unless_signals=("approval",))))
        await asyncio.sleep(0.3)  # the commit waits for the run's row
        assert not guarded.done()
        await sender.commit()
    with pytest.raises(SignalArrived):
        await guarded
    assert (await store.load("r1")).run.version == 0
