"""What only the SQLite store does: files, pragmas, schema versions, bad data, group commit."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from statesaga.store import (
    SCHEMA_VERSION,
    Commit,
    LeaseHeld,
    RunRecord,
    StepRecord,
    StoreError,
    StoreNotFound,
    TransitionRecord,
    store_from_url,
)
from statesaga.store.sqlite import SQLiteStore

FAR = 1e12


def make_run(run_id: str, created_at: float = 1.0) -> RunRecord:
    """A running run leased to ``w1``."""
    return RunRecord(
        run_id=run_id,
        saga="OrderSaga",
        saga_path="shop:OrderSaga",
        fingerprint="fp",
        input={"order": run_id},
        status="running",
        config={"saga": "saga.running"},
        version=0,
        lease_owner="w1",
        lease_expires=FAR,
        created_at=created_at,
        updated_at=created_at,
    )


def make_commit(run_id: str, version: int = 0) -> Commit:
    """A commit by ``w1`` with one step and one transition."""
    return Commit(
        run_id=run_id,
        version=version,
        lease_owner="w1",
        status="running",
        config={"saga": "saga.running", "a": "a.running"},
        steps=[StepRecord("a", "succeeded", 1, {"n": version})],
        transitions=[TransitionRecord(version + 1, "a.succeed", "a.running", "a.succeeded", 2.0)],
        updated_at=2.0,
    )


def digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    """Runs, steps and history written before close are all there after reopening."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.create(make_run("r1"))
        await store.commit(make_commit("r1"))
        before = await store.load("r1")
    async with SQLiteStore(path) as store:
        assert await store.load("r1") == before
        assert before.steps["a"].result == {"n": 0}


@pytest.mark.parametrize(
    ("given", "applied"), [("FULL", "FULL"), ("normal", "NORMAL"), ("Off", "OFF")]
)
async def test_wal_mode_and_synchronous_are_applied(
    tmp_path: Path, given: str, applied: str
) -> None:
    """The file is in WAL mode and the writer uses the requested synchronous level."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path, synchronous=given, busy_timeout=2.5) as store:
        assert store.synchronous == applied
        assert await store.pragmas() == {
            "journal_mode": "wal",
            "synchronous": applied,
            "busy_timeout": 2500,
        }
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_synchronous_value_is_refused(tmp_path: Path) -> None:
    """An unknown synchronous level is a StoreError that lists the accepted ones."""
    with pytest.raises(StoreError, match="FULL, NORMAL, OFF") as caught:
        SQLiteStore(tmp_path / "runs.db", synchronous="EXTRA")
    assert "'EXTRA'" in str(caught.value)


async def test_empty_database_gets_the_schema(tmp_path: Path) -> None:
    """open() creates the prefixed tables, their indexes and the schema version."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute(
            "SELECT value FROM statesaga_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert {"statesaga_meta", "statesaga_runs", "statesaga_steps", "statesaga_history"} <= names
    assert {"statesaga_runs_by_status", "statesaga_runs_by_saga"} <= names
    assert version == (str(SCHEMA_VERSION),)


async def test_other_tables_in_the_database_are_kept(tmp_path: Path) -> None:
    """A database holding someone else's tables gains ours and keeps theirs."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO orders VALUES (1, 9.5)")
    conn.close()
    async with SQLiteStore(path) as store:
        await store.create(make_run("r1"))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM orders").fetchall() == [(1, 9.5)]
    conn.close()


async def test_newer_schema_is_refused_and_the_file_left_unchanged(tmp_path: Path) -> None:
    """A database of schema version 999 is refused, and not one byte of it changes."""
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE statesaga_meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO statesaga_meta VALUES ('schema_version', '999')")
    conn.close()
    before, files = digest(path), sorted(os.listdir(tmp_path))
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="999") as caught:
        await store.open()
    assert "upgrade statesaga" in str(caught.value)
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == files
    with pytest.raises(StoreError, match="not open"):
        await store.load("r1")


async def test_corrupt_json_in_one_run_spoils_only_that_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run with broken stored JSON fails to load, naming it; other runs load and list."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        for i, run_id in enumerate(("good1", "bad", "good2")):
            await store.create(make_run(run_id, created_at=float(i)))
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE statesaga_runs SET input = '{\"order\": ' WHERE run_id = 'bad'")
        raw.close()

        with pytest.raises(StoreError, match="bad") as caught:
            await store.load("bad")
        assert caught.value.run_id == "bad"
        assert (await store.load("good1")).run.input == {"order": "good1"}
        with caplog.at_level(logging.WARNING, logger="statesaga.store"):
            listed = await store.list_runs()
        assert [r.run_id for r in listed] == ["good2", "good1"]
        assert any("bad" in record.getMessage() for record in caplog.records)
        assert [r.run_id for r in await store.list_runs(limit=2)] == ["good2", "good1"]


async def test_corrupt_step_result_names_the_run(tmp_path: Path) -> None:
    """A step result that is not valid JSON makes load raise StoreError naming run and step."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.create(make_run("r1"))
        await store.commit(make_commit("r1"))
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE statesaga_steps SET result = 'nope' WHERE run_id = 'r1'")
        raw.close()
        with pytest.raises(StoreError, match=r"r1.*step a") as caught:
            await store.load("r1")
        assert caught.value.run_id == "r1"


def _chmod_stops_writes(directory: Path) -> bool:
    """Whether a 0o500 directory really refuses new files (it does not for root)."""
    directory.chmod(0o500)
    try:
        (directory / "probe").touch()
    except PermissionError:
        return True
    (directory / "probe").unlink()
    return False


@pytest.mark.parametrize("how", ["read-only directory", "directory is a file"])
async def test_unwritable_directory_is_a_store_error(tmp_path: Path, how: str) -> None:
    """A directory the store cannot write in gives a StoreError naming the path and why."""
    if how == "read-only directory":
        parent = tmp_path / "locked"
        parent.mkdir()
        if not _chmod_stops_writes(parent):
            parent.chmod(0o700)
            pytest.skip("chmod does not stop this user writing (root)")
        expected = "not writable"
    else:
        parent = tmp_path / "afile"
        parent.write_text("not a directory")
        expected = "is a file, not a directory"
    path = parent / "runs.db"
    try:
        with pytest.raises(StoreError) as caught:
            await SQLiteStore(path).open()
    finally:
        if parent.is_dir():
            parent.chmod(0o700)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    assert caught.value.__cause__ is None


async def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    """A path whose directory does not exist gives a StoreError naming it, and creates nothing."""
    path = tmp_path / "no" / "such" / "runs.db"
    with pytest.raises(StoreError, match="does not exist") as caught:
        await SQLiteStore(path).open()
    assert str(path) in str(caught.value)
    assert not (tmp_path / "no").exists()


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """Opening a file that is not SQLite gives a StoreError naming it."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(StoreError, match=r"notes\.txt"):
        await SQLiteStore(path).open()


# -- opening without creating ------------------------------------------------------------------


def foreign_database(path: Path, *, wal: bool = False) -> None:
    """Another application's SQLite database at ``path`` (closed, so no -wal or -shm file)."""
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO orders VALUES (1, 9.5)")
    conn.close()


async def test_open_without_create_leaves_a_missing_file_missing(tmp_path: Path) -> None:
    """open(create=False) of a missing file: StoreNotFound, and no file, -wal or -shm appears."""
    path = tmp_path / "runs.db"
    with pytest.raises(StoreNotFound, match=r"\(no such file\)") as caught:
        await store_from_url(f"sqlite:///{path}").open(create=False)
    assert str(caught.value).startswith(f"no statesaga store at sqlite:///{path} ")
    assert os.listdir(tmp_path) == []


async def test_open_without_create_makes_no_missing_folder(tmp_path: Path) -> None:
    """open(create=False) of a file in a missing folder: StoreNotFound, the folder not made."""
    with pytest.raises(StoreNotFound, match="no such file"):
        await SQLiteStore(tmp_path / "no" / "runs.db").open(create=False)
    assert os.listdir(tmp_path) == []


async def test_open_without_create_refuses_an_empty_file_as_it_is(tmp_path: Path) -> None:
    """An empty file is no store: StoreNotFound says it is empty; it stays empty and alone."""
    path = tmp_path / "runs.db"
    path.touch()
    with pytest.raises(StoreNotFound, match="the file is empty"):
        await SQLiteStore(path).open(create=False)
    assert path.stat().st_size == 0
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
async def test_open_without_create_refuses_another_apps_database_unchanged(
    tmp_path: Path, wal: bool
) -> None:
    """A SQLite database without statesaga's tables is refused, left byte for byte as it was."""
    path = tmp_path / "app.db"
    foreign_database(path, wal=wal)
    before = digest(path)
    with pytest.raises(StoreNotFound, match="no statesaga tables") as caught:
        await SQLiteStore(path).open(create=False)
    assert "not a statesaga store" in str(caught.value)
    assert digest(path) == before
    assert os.listdir(tmp_path) == [path.name]  # no -wal or -shm beside it either


async def test_open_without_create_refuses_a_file_that_is_not_sqlite_unchanged(
    tmp_path: Path,
) -> None:
    """A file that is not a SQLite database is refused as no store, and left as it was."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(StoreNotFound, match="not a SQLite database"):
        await SQLiteStore(path).open(create=False)
    assert path.read_bytes() == b"this is not a database, just text " * 100
    assert os.listdir(tmp_path) == [path.name]


async def test_open_without_create_refuses_a_newer_schema_as_such(tmp_path: Path) -> None:
    """A store of a newer schema version is a store: the error says to upgrade, not 'no store'."""
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE statesaga_meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO statesaga_meta VALUES ('schema_version', '999')")
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="upgrade statesaga") as caught:
        await SQLiteStore(path).open(create=False)
    assert not isinstance(caught.value, StoreNotFound)
    assert digest(path) == before


async def test_open_without_create_sees_the_latest_writes_of_a_store_in_use(
    tmp_path: Path,
) -> None:
    """A store another connection is writing (its -wal file present) opens with its last runs."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as writer:
        await writer.create(make_run("r1"))
        assert (tmp_path / "runs.db-wal").exists()  # the run is there, not yet in the main file
        reader = SQLiteStore(path)
        await reader.open(create=False)
        try:
            assert [run.run_id for run in await reader.list_runs()] == ["r1"]
        finally:
            await reader.close()


async def test_memory_path_is_refused(tmp_path: Path) -> None:
    """':memory:' is refused (each connection would see its own database)."""
    with pytest.raises(StoreError, match="memory://"):
        await SQLiteStore(":memory:").open()


def test_url_is_the_scheme_plus_the_path_as_given(tmp_path: Path) -> None:
    """url is sqlite:/// plus the path; an absolute path gives four slashes and round-trips."""
    assert SQLiteStore("runs.db").url == "sqlite:///runs.db"
    absolute = SQLiteStore(tmp_path / "runs.db")
    assert absolute.url == f"sqlite:///{tmp_path}/runs.db"
    assert absolute.url.startswith("sqlite:////")
    again = store_from_url(absolute.url)
    assert isinstance(again, SQLiteStore)
    assert again.path == str(tmp_path / "runs.db")


async def test_group_commit_batches_concurrent_writes(tmp_path: Path) -> None:
    """100 concurrent commits share far fewer than 100 transactions."""
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await asyncio.gather(*(store.create(make_run(f"r{i}")) for i in range(100)))
        before = store.stats.batches
        await asyncio.gather(*(store.commit(make_commit(f"r{i}")) for i in range(100)))
        batches = store.stats.batches - before
        assert 1 <= batches <= 10
        assert store.stats.largest_batch >= 10
        snapshots = [await store.load(f"r{i}") for i in range(100)]
        assert {s.run.version for s in snapshots} == {1}


async def test_a_failing_write_does_not_spoil_its_batch(tmp_path: Path) -> None:
    """In one batch, a duplicate create fails alone while the other creates commit."""
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await store.create(make_run("r0"))
        before = store.stats.batches
        outcomes = await asyncio.gather(
            *(store.create(make_run(f"r{i}")) for i in range(20)), return_exceptions=True
        )
        assert store.stats.batches - before < 20
        assert isinstance(outcomes[0], StoreError)
        assert "already exists" in str(outcomes[0])
        assert outcomes[1:] == [None] * 19
        assert len(await store.list_runs()) == 20


async def test_a_write_lock_held_elsewhere_fails_the_batch_then_clears(tmp_path: Path) -> None:
    """Writes fail with StoreError while another connection holds the lock, and work after."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path, busy_timeout=0.1) as store:
        await store.create(make_run("before"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            outcomes = await asyncio.gather(
                *(store.create(make_run(f"r{i}")) for i in range(5)), return_exceptions=True
            )
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert all(isinstance(o, StoreError) and "busy_timeout" in str(o) for o in outcomes)
        await store.create(make_run("after", created_at=2.0))
        assert [r.run_id for r in await store.list_runs()] == ["after", "before"]


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    """Writes queued before close() are committed, then the store refuses new ones."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    await store.open()
    tasks = [asyncio.create_task(store.create(make_run(f"r{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # let every task queue its write
    await store.close()
    assert await asyncio.gather(*tasks) == [None] * 50
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await store.create(make_run("late"))
    async with SQLiteStore(path) as again:
        assert len(await again.list_runs()) == 50


async def test_two_stores_on_one_file_share_runs_and_leases(tmp_path: Path) -> None:
    """Two stores on one file (as two processes would) see each other's writes and leases."""
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.create(make_run("r1"))
        await first.commit(make_commit("r1"))
        assert (await second.load("r1")).run.version == 1
        with pytest.raises(LeaseHeld):
            await second.acquire("r1", "w2", expires=FAR, now=0.0)
        taken = await second.acquire("r1", "w2", expires=FAR + 2, now=FAR + 1)
        assert taken.run.lease_owner == "w2"
        assert await first.unfinished(now=FAR + 3) == ["r1"]


async def test_runs_asleep_in_a_wait_cost_the_poll_nothing(tmp_path: Path) -> None:
    """With 10,000 runs asleep in a wait, unfinished() finds the due ones through its indexes."""
    from statesaga.store import _sqlite_sql as sql

    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.create(make_run("due"))
        await store.release("due", "w1")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE statesaga_runs SET status = 'waiting', wake_at = 5.0")
        conn.executemany(
            "INSERT INTO statesaga_runs (run_id, saga, saga_path, fingerprint, input, status,"
            " config, version, created_at, updated_at, wake_at)"
            " VALUES (?, 's', 's:S', 'fp', '{}', 'waiting', '{}', 0, 0.5, 0.5, ?)",
            [(f"w{i:05}", None if i % 2 else 1e9 + i) for i in range(10_000)],
        )
    plan = " ".join(
        row[-1]
        for row in conn.execute(f"EXPLAIN QUERY PLAN {sql._UNFINISHED}", {"now": 10, "limit": 5})
    )
    conn.close()
    assert "USING INDEX statesaga_runs_runnable" in plan  # small: no waiting runs in it
    assert "SEARCH statesaga_runs USING INDEX statesaga_runs_waking (wake_at<?)" in plan
    assert "statesaga_runs_by_status" not in plan  # it would read every waiting run
    async with SQLiteStore(path) as store:
        assert await store.unfinished(10.0) == ["due"]
        assert len(await store.waiting(limit=20_000)) == 10_001
