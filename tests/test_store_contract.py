"""The store contract: every backend must pass every test here, with the same results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from statesaga.store import (
    Commit,
    LeaseHeld,
    MemoryStore,
    RunNotFound,
    RunRecord,
    SagaStore,
    StepRecord,
    StoreError,
    TransitionRecord,
    WriteConflict,
)
from statesaga.store.sqlite import SQLiteStore

FAR = 1e12  # a lease expiry far in the future (epoch seconds)
NOW = 1_000.0


# To run the suite against another backend, add its name to ``params`` and a branch that builds
# it (e.g. "postgres": a PostgresStore on a fresh schema, skipped when no server is configured).
@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SagaStore]:
    """An open, empty store of each backend."""
    backend: SagaStore
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "contract.db")
    elif request.param == "postgres":
        from test_store_postgres import postgres_store  # skips (fails under CI) with no server

        backend = postgres_store(request)
    else:  # pragma: no cover - a param added without its branch
        raise AssertionError(f"no store for {request.param}")
    await backend.open()
    yield backend
    await backend.close()


def make_run(run_id: str = "r1", **changes: Any) -> RunRecord:
    """A run leased to ``w1``, version 0, with every field set to something distinctive."""
    fields: dict[str, Any] = {
        "run_id": run_id,
        "saga": "OrderSaga",
        "saga_path": "shop.sagas:OrderSaga",
        "fingerprint": "f" * 16,
        "input": {"order_id": "ORD-1", "items": [{"sku": "A", "quantity": 2}], "total": 9.5},
        "status": "running",
        "config": {"saga": "saga.running", "reserve": "reserve.pending"},
        "version": 0,
        "lease_owner": "w1",
        "lease_expires": FAR,
        "created_at": 100.0,
        "updated_at": 100.0,
    }
    fields.update(changes)
    return RunRecord(**fields)


def make_commit(run_id: str = "r1", version: int = 0, *, seq: int = 1, **changes: Any) -> Commit:
    """A commit by ``w1`` that starts step ``reserve`` (one step row, one transition)."""
    fields: dict[str, Any] = {
        "run_id": run_id,
        "version": version,
        "lease_owner": "w1",
        "status": "running",
        "config": {"saga": "saga.running", "reserve": "reserve.running"},
        "steps": [StepRecord("reserve", "running", 1)],
        "transitions": [
            TransitionRecord(seq, "reserve.start", "reserve.pending", "reserve.running", 101.0, 1)
        ],
        "updated_at": 101.0,
    }
    fields.update(changes)
    return Commit(**fields)


async def test_create_then_load_round_trips_every_field(store: SagaStore) -> None:
    """A created run loads back equal in every field, with no steps and no history."""
    run = make_run(
        version=3,
        lease_owner="w9",
        lease_expires=456.75,
        created_at=123.25,
        updated_at=124.5,
        failed_step="charge",
        error="ValueError: declined",
        status="compensating",
    )
    assert all(getattr(run, field.name) is not None for field in attrs.fields(RunRecord))
    await store.create(run)
    snapshot = await store.load("r1")
    assert snapshot.run == run
    assert dict(snapshot.steps) == {}
    assert snapshot.history == ()


async def test_duplicate_create_fails(store: SagaStore) -> None:
    """Creating a run whose id exists raises StoreError and leaves the first run as it was."""
    await store.create(make_run())
    with pytest.raises(StoreError, match="r1") as caught:
        await store.create(make_run(saga="Other"))
    assert caught.value.run_id == "r1"
    assert (await store.load("r1")).run.saga == "OrderSaga"


async def test_commit_applies_status_config_steps_and_history(store: SagaStore) -> None:
    """Commits set the run's fields, upsert steps, append history in seq order, bump version."""
    await store.create(make_run())
    await store.commit(make_commit())
    await store.commit(
        make_commit(
            version=1,
            status="compensating",
            config={"saga": "saga.compensating", "reserve": "reserve.compensating"},
            steps=[
                StepRecord("reserve", "succeeded", 1, {"reservation": "R-9"}),
                StepRecord("charge", "failed", 3, None, "ValueError: declined"),
            ],
            transitions=[
                TransitionRecord(2, "reserve.succeed", "reserve.running", "reserve.succeeded", 102),
                TransitionRecord(3, "charge.fail", "charge.running", "charge.failed", 103, 3, "x"),
            ],
            updated_at=104.0,
            failed_step="charge",
            error="ValueError: declined",
        )
    )
    snapshot = await store.load("r1")
    run = snapshot.run
    assert (run.status, run.version, run.updated_at) == ("compensating", 2, 104.0)
    assert run.config == {"saga": "saga.compensating", "reserve": "reserve.compensating"}
    assert (run.failed_step, run.error) == ("charge", "ValueError: declined")
    assert (run.created_at, run.lease_owner) == (100.0, "w1")
    assert dict(snapshot.steps) == {
        "reserve": StepRecord("reserve", "succeeded", 1, {"reservation": "R-9"}),
        "charge": StepRecord("charge", "failed", 3, None, "ValueError: declined"),
    }
    assert [t.seq for t in snapshot.history] == [1, 2, 3]
    assert snapshot.history[2] == TransitionRecord(
        3, "charge.fail", "charge.running", "charge.failed", 103.0, 3, "x"
    )


async def test_stale_version_conflicts_and_applies_nothing(store: SagaStore) -> None:
    """A commit naming an old version raises WriteConflict and changes nothing."""
    await store.create(make_run())
    await store.commit(make_commit())
    before = await store.load("r1")
    stale = make_commit(
        version=0,
        seq=2,
        status="completed",
        steps=[StepRecord("charge", "running", 1)],
        failed_step="x",
        error="y",
    )
    with pytest.raises(WriteConflict) as caught:
        await store.commit(stale)
    assert caught.value.run_id == "r1"
    assert await store.load("r1") == before


async def test_wrong_lease_owner_conflicts(store: SagaStore) -> None:
    """A commit by a worker that does not hold the lease raises WriteConflict."""
    await store.create(make_run())
    with pytest.raises(WriteConflict):
        await store.commit(make_commit(lease_owner="w2"))
    assert (await store.load("r1")).run.version == 0


async def test_commit_to_unknown_run_is_not_found(store: SagaStore) -> None:
    """A commit to an id the store never saw raises RunNotFound."""
    with pytest.raises(RunNotFound):
        await store.commit(make_commit("nope"))


async def test_acquire_free_run(store: SagaStore) -> None:
    """Acquiring an unleased run leases it, bumps its version and returns the snapshot."""
    await store.create(make_run(lease_owner=None, lease_expires=None))
    snapshot = await store.acquire("r1", "w2", expires=NOW + 30, now=NOW)
    assert (snapshot.run.lease_owner, snapshot.run.lease_expires) == ("w2", NOW + 30)
    assert snapshot.run.version == 1
    assert await store.load("r1") == snapshot


async def test_acquire_takes_over_an_expired_lease(store: SagaStore) -> None:
    """An expired lease is taken over, and the old owner's next commit conflicts."""
    await store.create(make_run(lease_expires=NOW - 1))
    await store.commit(make_commit())
    snapshot = await store.acquire("r1", "w2", expires=NOW + 30, now=NOW)
    assert (snapshot.run.lease_owner, snapshot.run.version) == ("w2", 2)
    assert [t.seq for t in snapshot.history] == [1]
    assert snapshot.steps["reserve"].phase == "running"
    with pytest.raises(WriteConflict):
        await store.commit(make_commit(version=1, seq=2))


async def test_acquire_of_a_live_lease_held_by_another_fails(store: SagaStore) -> None:
    """A live lease held by another worker raises LeaseHeld naming owner and expiry."""
    await store.create(make_run(lease_expires=NOW + 10))
    with pytest.raises(LeaseHeld) as caught:
        await store.acquire("r1", "w2", expires=NOW + 30, now=NOW)
    assert (caught.value.owner, caught.value.expires, caught.value.run_id) == (
        "w1",
        NOW + 10,
        "r1",
    )
    run = (await store.load("r1")).run
    assert (run.lease_owner, run.version) == ("w1", 0)


async def test_same_owner_reacquires(store: SagaStore) -> None:
    """The lease holder can acquire again, which extends the lease and bumps the version."""
    await store.create(make_run(lease_expires=NOW + 10))
    snapshot = await store.acquire("r1", "w1", expires=NOW + 60, now=NOW)
    assert (snapshot.run.lease_expires, snapshot.run.version) == (NOW + 60, 1)


async def test_acquire_and_load_of_unknown_id_are_not_found(store: SagaStore) -> None:
    """acquire and load of an id the store never saw raise RunNotFound carrying the id."""
    with pytest.raises(RunNotFound) as caught:
        await store.acquire("ghost", "w1", expires=NOW + 30, now=NOW)
    assert caught.value.run_id == "ghost"
    with pytest.raises(RunNotFound):
        await store.load("ghost")


async def test_renew_returns_only_ids_still_held(store: SagaStore) -> None:
    """renew extends the owner's leases and returns just those ids."""
    await store.create(make_run("mine"))
    await store.create(make_run("theirs", lease_owner="w2"))
    await store.create(make_run("free", lease_owner=None, lease_expires=None))
    kept = await store.renew(["mine", "theirs", "free", "ghost"], "w1", expires=NOW + 99)
    assert kept == {"mine"}
    assert (await store.load("mine")).run.lease_expires == NOW + 99
    assert (await store.load("theirs")).run.lease_expires == FAR


async def test_release(store: SagaStore) -> None:
    """release frees the owner's lease without a version bump; others' releases do nothing."""
    await store.create(make_run())
    await store.release("r1", "w2")
    assert (await store.load("r1")).run.lease_owner == "w1"
    await store.release("r1", "w1")
    run = (await store.load("r1")).run
    assert (run.lease_owner, run.lease_expires, run.version) == (None, None, 0)
    await store.release("ghost", "w1")  # unknown ids are a no-op too


async def test_unfinished_excludes_terminal_runs_and_live_leases(store: SagaStore) -> None:
    """unfinished lists free and expired unfinished runs, oldest first."""
    await store.create(make_run("expired", created_at=3.0, lease_expires=NOW - 1))
    await store.create(make_run("free", created_at=2.0, lease_owner=None, lease_expires=None))
    await store.create(make_run("live", created_at=1.0, lease_expires=NOW + 1))
    await store.create(make_run("compensating", created_at=4.0, status="compensating"))
    for i, status in enumerate(("completed", "compensated", "failed")):
        await store.create(make_run(status, created_at=i, status=status, lease_owner=None))
    assert await store.unfinished(NOW) == ["free", "expired"]
    assert await store.unfinished(FAR + 1) == ["live", "free", "expired", "compensating"]


async def test_unfinished_honours_limit(store: SagaStore) -> None:
    """unfinished returns at most ``limit`` ids, the oldest ones."""
    for i in range(5):
        await store.create(make_run(f"r{i}", created_at=10.0 - i, lease_owner=None))
    assert await store.unfinished(NOW, limit=2) == ["r4", "r3"]
    assert await store.unfinished(NOW, limit=0) == []


async def test_list_runs_newest_first_with_filters_and_limit(store: SagaStore) -> None:
    """list_runs orders newest first and filters by status and saga name."""
    await store.create(make_run("a", created_at=1.0))
    await store.create(make_run("b", created_at=2.0, status="completed"))
    await store.create(make_run("c", created_at=3.0, saga="Refund"))
    await store.create(make_run("d", created_at=4.0, saga="Refund", status="completed"))

    def ids(runs: list[RunRecord]) -> list[str]:
        return [r.run_id for r in runs]

    assert ids(await store.list_runs()) == ["d", "c", "b", "a"]
    assert ids(await store.list_runs(status="completed")) == ["d", "b"]
    assert ids(await store.list_runs(saga="Refund")) == ["d", "c"]
    assert ids(await store.list_runs(status="running", saga="OrderSaga")) == ["a"]
    assert ids(await store.list_runs(limit=3)) == ["d", "c", "b"]
    assert await store.list_runs(saga="Nothing") == []
    assert (await store.list_runs(limit=1))[0] == (await store.load("d")).run


async def test_concurrent_commits_all_land_and_stale_ones_fail_alone(store: SagaStore) -> None:
    """200 concurrent commits on 50 runs all land; stale commits in the same burst fail alone."""
    runs, per_run = 50, 4
    for i in range(runs):
        await store.create(make_run(f"r{i}"))
        await store.commit(make_commit(f"r{i}", 0, transitions=[]))  # now at version 1

    async def drive(run_id: str) -> None:
        for n in range(per_run):
            await store.commit(make_commit(run_id, 1 + n, seq=1 + n, updated_at=200.0 + n))

    async def stale(run_id: str) -> None:
        await store.commit(make_commit(run_id, 0, seq=99, status="completed"))

    tasks = [drive(f"r{i}") for i in range(runs)] + [stale(f"r{i}") for i in range(0, runs, 5)]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert outcomes[:runs] == [None] * runs
    assert all(isinstance(o, WriteConflict) for o in outcomes[runs:])
    assert len(outcomes[runs:]) == 10
    snapshots = [await store.load(f"r{i}") for i in range(runs)]
    assert sum(len(s.history) for s in snapshots) == runs * per_run
    for snapshot in snapshots:
        assert [t.seq for t in snapshot.history] == [1, 2, 3, 4]
        assert (snapshot.run.version, snapshot.run.status) == (1 + per_run, "running")


async def test_values_round_trip_exactly(store: SagaStore) -> None:
    """Nested dicts, unicode, floats, booleans and None come back exactly as stored."""
    value: dict[str, Any] = {
        "nested": {"deeper": {"list": [1, 2.5, None, True, False, "", [], {}]}},
        "unicode": "ünïcødé ✓ 日本語 🚀 \u0000 \n\t\"'\\",
        "ключ": "значение",
        "floats": [0.1, 1 / 3, -2.5e-308, 1.7976931348623157e308, 5e-324, -0.0, 1e16],
        "ints": [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)],
        "none": None,
    }
    await store.create(make_run(input=value))
    step = StepRecord("reserve", "succeeded", 2, value, "ValueError: ✗ \u00e9")
    transition = TransitionRecord(1, "reserve.succeed", "ä", "ö", 1 / 3, 2, "✗ é")
    commit = make_commit(
        steps=[step],
        transitions=[transition],
        updated_at=1 / 7,
        error="Ошибка: ✗",
        failed_step="шаг",
        config={"saga": "saga.running", "régión": "ß"},
    )
    await store.commit(commit)
    snapshot = await store.load("r1")
    assert snapshot.run.input == value
    assert snapshot.run.updated_at == 1 / 7
    assert (snapshot.run.error, snapshot.run.failed_step) == ("Ошибка: ✗", "шаг")
    assert snapshot.run.config == {"saga": "saga.running", "régión": "ß"}
    assert snapshot.steps["reserve"] == step
    assert snapshot.history == (transition,)
    assert repr(snapshot.run.input["floats"]) == repr(value["floats"])  # -0.0 stays -0.0


async def test_non_json_input_is_a_store_error_at_create(store: SagaStore) -> None:
    """An input JSON cannot hold is refused by create with StoreError, and nothing is stored."""
    with pytest.raises(StoreError, match="JSON") as caught:
        await store.create(make_run(input={"when": {1, 2}}))
    assert caught.value.run_id == "r1"
    with pytest.raises(RunNotFound):
        await store.load("r1")


async def test_create_keeps_a_copy_of_the_input(store: SagaStore) -> None:
    """Mutating the input after create does not change the stored run."""
    data = {"items": [1, 2]}
    await store.create(make_run(input=data))
    data["items"].append(3)
    assert (await store.load("r1")).run.input == {"items": [1, 2]}


def test_store_satisfies_the_protocol(tmp_path: Path) -> None:
    """Both backends are SagaStores by the runtime-checkable protocol."""
    assert isinstance(MemoryStore(), SagaStore)
    assert isinstance(SQLiteStore(tmp_path / "x.db"), SagaStore)


async def test_non_json_step_result_is_refused_and_nothing_applied(store: SagaStore) -> None:
    """A commit whose step result JSON cannot hold raises StoreError and changes nothing."""
    await store.create(make_run())
    before = await store.load("r1")
    bad = make_commit(steps=[StepRecord("reserve", "succeeded", 1, {"at": object()})])
    with pytest.raises(StoreError, match="JSON"):
        await store.commit(bad)
    assert await store.load("r1") == before
