"""The store contract: every backend must pass every test here, with the same results."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from statesaga.messaging.message import Message
from statesaga.store import (
    Commit,
    LeaseHeld,
    MemoryStore,
    OutboxRecord,
    RunNotFound,
    RunRecord,
    SagaStore,
    SignalArrived,
    SignalRecord,
    SignalRefused,
    StepRecord,
    StoreError,
    StoreNotFound,
    TransitionRecord,
    WriteConflict,
    hide_password,
)
from statesaga.store.sqlite import SQLiteStore
from statesaga.vocabulary import CANCEL_EVENT

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


@pytest.fixture(params=["sqlite", "postgres"])
async def missing(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SagaStore]:
    """An unopened store of each durable backend where no store exists (a memory store always
    exists: it keeps nothing outside its process)."""
    backend: SagaStore
    if request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "missing.db")
    else:
        from test_store_postgres import postgres_store  # a schema that does not exist

        backend = postgres_store(request)
    yield backend
    await backend.close()


def twin(store: SagaStore) -> SagaStore:
    """A new, unopened store on the data of ``store`` (a memory store is its own)."""
    if isinstance(store, MemoryStore):
        return store
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    from statesaga.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url, schema=store.schema)


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


# -- opening without creating ------------------------------------------------------------------


async def test_open_without_create_refuses_a_store_that_does_not_exist(missing: SagaStore) -> None:
    """open(create=False) where there is no store raises StoreNotFound naming the URL."""
    with pytest.raises(StoreNotFound) as caught:
        await missing.open(create=False)
    assert isinstance(caught.value, StoreError)
    assert caught.value.url == hide_password(missing.url)
    assert str(caught.value).startswith(f"no statesaga store at {caught.value.url} (")


async def test_a_store_refused_without_create_is_created_by_open(missing: SagaStore) -> None:
    """After open(create=False) refused it, open() creates the store and it works."""
    with pytest.raises(StoreNotFound):
        await missing.open(create=False)
    await missing.open()
    await missing.create(make_run())
    assert (await missing.load("r1")).run == make_run()


async def test_open_without_create_opens_an_existing_store_with_its_runs(store: SagaStore) -> None:
    """A store that exists opens with create=False and lists the runs stored in it."""
    await store.create(make_run("r1"))
    await store.create(make_run("r2", created_at=200.0))
    reader = twin(store)
    await reader.open(create=False)
    try:
        assert [r.run_id for r in await reader.list_runs()] == ["r2", "r1"]
        assert (await reader.load("r1")).run == make_run("r1")
    finally:
        if reader is not store:
            await reader.close()


async def test_a_store_opened_without_create_takes_writes(store: SagaStore) -> None:
    """A store opened with create=False commits like any other; open() on it is a no-op."""
    await store.create(make_run())
    other = twin(store)
    await other.open(create=False)
    try:
        await other.open()
        await other.commit(make_commit())
        await other.create(make_run("r2"))
        assert (await store.load("r1")).run.version == 1
        assert (await store.load("r2")).run == make_run("r2")
    finally:
        if other is not store:
            await other.close()


async def test_open_without_create_of_an_open_store_returns_at_once(store: SagaStore) -> None:
    """open(create=False) on a store that is open already changes nothing and keeps it open."""
    await store.create(make_run())
    await store.open(create=False)
    assert (await store.load("r1")).run == make_run()


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
        status="waiting",
        wake_at=789.125,
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
    """unfinished lists unfinished runs whose lease ran out, soonest run out first (a dead
    driver's runs go on before new ones), then those nobody holds, oldest first."""
    await store.create(make_run("expired", created_at=3.0, lease_expires=NOW - 1))
    await store.create(make_run("free", created_at=2.0, lease_owner=None, lease_expires=None))
    await store.create(make_run("live", created_at=1.0, lease_expires=NOW + 1))
    await store.create(make_run("compensating", created_at=4.0, status="compensating"))
    for i, status in enumerate(("completed", "compensated", "failed")):
        await store.create(make_run(status, created_at=i, status=status, lease_owner=None))
    assert await store.unfinished(NOW) == ["expired", "free"]
    assert await store.unfinished(FAR + 1) == ["expired", "live", "compensating", "free"]
    assert await store.unfinished(NOW, limit=1) == ["expired"]


async def test_unfinished_lists_a_run_held_by_an_owner_without_an_expiry(store: SagaStore) -> None:
    """A lease with no expiry (a row written by hand) has run out: the run is not stuck."""
    await store.create(make_run("odd", lease_expires=None))
    assert await store.unfinished(NOW) == ["odd"]


async def test_unfinished_honours_limit(store: SagaStore) -> None:
    """unfinished returns at most ``limit`` ids, the oldest ones."""
    for i in range(5):
        await store.create(make_run(f"r{i}", created_at=10.0 - i, lease_owner=None))
    assert await store.unfinished(NOW, limit=2) == ["r4", "r3"]
    assert await store.unfinished(NOW, limit=0) == []


async def test_leased_lists_unfinished_runs_with_live_leases_soonest_first(
    store: SagaStore,
) -> None:
    """leased lists the unfinished runs whose lease is live, the soonest to run out first."""
    await store.create(make_run("later", lease_expires=NOW + 20))
    await store.create(make_run("sooner", lease_expires=NOW + 10, lease_owner="w2"))
    await store.create(make_run("expired", lease_expires=NOW - 1))
    await store.create(make_run("free", lease_owner=None, lease_expires=None))
    await store.create(make_run("done", status="completed", lease_expires=NOW + 5))
    leased = await store.leased(NOW)
    assert [(r.run_id, r.lease_owner, r.lease_expires) for r in leased] == [
        ("sooner", "w2", NOW + 10),
        ("later", "w1", NOW + 20),
    ]
    assert [r.run_id for r in await store.leased(NOW, limit=1)] == ["sooner"]
    assert await store.leased(NOW + 30) == []


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


# -- the outbox ------------------------------------------------------------------------------


def message(n: int, key: str | None = "k", run_id: str = "r1", step: str = "reserve") -> Message:
    """The n-th message of ``step`` in run ``run_id``, created at ``n`` (epoch seconds)."""
    return Message(
        id=f"{run_id}:{step}:{n}",
        topic="orders",
        payload={"n": n, "items": [1, 2.5, None, "x"]},
        key=key,
        headers={"h": str(n)},
        saga_id=run_id,
        step=step,
        created_at=float(n),
    )


async def with_messages(
    store: SagaStore, *messages: Message, claim_until: float | None = None, owner: str = "w1"
) -> list[str]:
    """Create run r1 and commit ``messages`` with its first commit; the ids claimed."""
    run = make_run(lease_owner=owner)
    commit = make_commit(messages=messages, claim_until=claim_until, lease_owner=owner)
    return list(await store.commit(attrs.evolve(commit, create=run)) or ())


def ids(records: Sequence[OutboxRecord]) -> list[str]:
    return [r.id for r in records]


async def test_messages_are_written_with_their_commit(store: SagaStore) -> None:
    """A commit's messages land in the outbox, pending, round-tripping every field."""
    sent = [message(1), message(2, key=None)]
    assert await with_messages(store, *sent) == []  # no claim asked for
    listed = await store.outbox_list()
    assert [r.message for r in listed] == sent[::-1]  # newest first
    assert {(r.status, r.attempts, r.claim_owner) for r in listed} == {("pending", 0, None)}
    assert listed[0].seq > listed[1].seq


async def test_stale_commit_writes_no_messages(store: SagaStore) -> None:
    """A commit refused as stale leaves the outbox empty."""
    await store.create(make_run())
    with pytest.raises(WriteConflict):
        await store.commit(make_commit(version=5, messages=[message(1)]))
    assert await store.outbox_list() == []


async def test_unstorable_payload_fails_the_commit(store: SagaStore) -> None:
    """A payload JSON cannot hold fails the whole commit; nothing is applied."""
    await store.create(make_run())
    before = await store.load("r1")
    bad = attrs.evolve(message(1), payload={"at": object()})
    with pytest.raises(StoreError, match="JSON"):
        await store.commit(make_commit(messages=[bad]))
    assert await store.load("r1") == before
    assert await store.outbox_list() == []


async def test_commit_claims_its_messages_for_optimistic_sending(store: SagaStore) -> None:
    """With claim_until, a commit claims its messages for its lease owner."""
    claimed = await with_messages(store, message(1), message(2, key=None), claim_until=FAR)
    assert claimed == ["r1:reserve:1", "r1:reserve:2"]
    assert {r.claim_owner for r in await store.outbox_list()} == {"w1"}
    assert await store.outbox_claim("relay", NOW, NOW + 30) == []  # claimed: not the relay's


async def test_commit_does_not_claim_behind_a_pending_message_of_its_key(
    store: SagaStore,
) -> None:
    """A keyed message is left to the relay while an earlier one of its key is unsent."""
    await with_messages(store, message(1))  # pending, nobody sending it
    second = make_commit(version=1, seq=2, messages=[message(2), message(3, key="other")])
    claimed = await store.commit(attrs.evolve(second, claim_until=FAR))
    assert list(claimed or ()) == ["r1:reserve:3"]


async def test_relay_claims_in_order_and_never_twice(store: SagaStore) -> None:
    """Claims come in seq order, are exclusive while live, and expire."""
    await with_messages(store, message(1), message(2), message(3, key=None))
    first = await store.outbox_claim("a", NOW, NOW + 30, limit=10)
    assert ids(first) == ["r1:reserve:1", "r1:reserve:2", "r1:reserve:3"]
    assert first[0].claim_owner == "a"
    assert await store.outbox_claim("b", NOW + 1, NOW + 31) == []
    again = await store.outbox_claim("b", NOW + 31, NOW + 61)  # a's claim ran out
    assert ids(again) == ids(first)


async def test_claim_waits_for_the_head_of_a_key(store: SagaStore) -> None:
    """A key's later messages are not claimed while an earlier one is not due or is dead."""
    await with_messages(store, message(1), message(2), message(3, key="other"))
    [head, *_] = await store.outbox_claim("a", NOW, NOW + 30, limit=1)
    await store.outbox_mark_failed(head.id, "a", "BrokerError: down", NOW + 60, dead=False)
    assert ids(await store.outbox_claim("a", NOW, NOW + 30)) == ["r1:reserve:3"]
    await store.outbox_mark_sent(["r1:reserve:3"], NOW)
    later = await store.outbox_claim("a", NOW + 61, NOW + 90)
    assert ids(later) == ["r1:reserve:1", "r1:reserve:2"]
    assert later[0].attempts == 1
    assert later[0].last_error == "BrokerError: down"
    await store.outbox_mark_failed(head.id, "a", "refused", NOW, dead=True)
    await store.outbox_release(["r1:reserve:2"], "a")
    assert await store.outbox_claim("a", NOW + 100, NOW + 130) == []  # a dead head holds its key


async def test_claim_skips_a_key_being_sent(store: SagaStore) -> None:
    """While any message of a key is claimed, no other message of that key is claimed."""
    await with_messages(store, message(1), message(2), message(3), claim_until=FAR)
    await store.outbox_release(["r1:reserve:2", "r1:reserve:3"], "w1")
    assert await store.outbox_claim("relay", NOW, NOW + 30) == []
    await store.outbox_mark_sent(["r1:reserve:1"], NOW)
    assert ids(await store.outbox_claim("relay", NOW, NOW + 30)) == [
        "r1:reserve:2",
        "r1:reserve:3",
    ]


async def test_mark_sent_release_and_failed_need_the_right_rows(store: SagaStore) -> None:
    """Sent is final; release and failure apply only to the claimant's pending rows."""
    await with_messages(store, message(1, key=None), message(2, key=None), claim_until=FAR)
    await store.outbox_mark_failed("r1:reserve:1", "intruder", "x", NOW, dead=True)
    await store.outbox_release(["r1:reserve:1"], "intruder")
    await store.outbox_mark_sent(["r1:reserve:1"], 123.0)
    await store.outbox_mark_failed("r1:reserve:1", "w1", "late", NOW, dead=True)
    await store.outbox_release(["r1:reserve:2"], "w1", "BrokerError: timeout")
    by_id = {r.id: r for r in await store.outbox_list()}
    sent, released = by_id["r1:reserve:1"], by_id["r1:reserve:2"]
    assert (sent.status, sent.sent_at, sent.claim_owner, sent.attempts) == ("sent", 123.0, None, 0)
    assert (released.status, released.claim_owner, released.attempts) == ("pending", None, 0)
    assert released.last_error == "BrokerError: timeout"


async def test_list_retry_and_purge(store: SagaStore) -> None:
    """Listing filters by status; retry requeues dead messages; purge deletes old ones."""
    await with_messages(store, *(message(n, key=None) for n in (1, 2, 3)))
    claimed = await store.outbox_claim("a", NOW, NOW + 30)
    await store.outbox_mark_sent([claimed[0].id], NOW)
    await store.outbox_mark_failed(claimed[1].id, "a", "refused", NOW, dead=True)
    await store.outbox_mark_failed(claimed[2].id, "a", "refused", NOW, dead=True)
    assert ids(await store.outbox_list(status="dead")) == ["r1:reserve:3", "r1:reserve:2"]
    assert ids(await store.outbox_list(status="sent", limit=5)) == ["r1:reserve:1"]
    assert await store.outbox_retry(["r1:reserve:2", "r1:reserve:1", "nope"], NOW) == 1
    assert await store.outbox_retry(None, NOW) == 1
    retried = await store.outbox_list(status="pending")
    assert [(r.attempts, r.retry_at) for r in retried] == [(0, NOW), (0, NOW)]
    assert await store.outbox_purge("sent", before=1.0) == 0  # created at 1.0: not older
    assert await store.outbox_purge("sent", before=2.0) == 1
    with pytest.raises(StoreError, match="pending"):
        await store.outbox_purge("pending", before=FAR)
    assert len(await store.outbox_list()) == 2


async def test_purge_by_id_deletes_only_those_dead_messages(store: SagaStore) -> None:
    """With ids, purge deletes those of them in the status and older than ``before``: other
    statuses, newer messages, unknown ids and messages not named are left alone."""
    await with_messages(store, *(message(n, key=None) for n in (1, 2, 3, 4)))
    claimed = await store.outbox_claim("a", NOW, NOW + 30)
    await store.outbox_mark_sent([claimed[0].id], NOW)
    await store.outbox_mark_failed(claimed[1].id, "a", "refused", NOW, dead=True)
    await store.outbox_mark_failed(claimed[2].id, "a", "refused", NOW, dead=True)
    await store.outbox_release([claimed[3].id], "a")  # r1:reserve:4 stays pending
    assert await store.outbox_purge("dead", FAR, ["r1:reserve:1", "r1:reserve:4", "nope"]) == 0
    assert await store.outbox_purge("dead", FAR, []) == 0  # no ids: nothing, not everything
    assert await store.outbox_purge("dead", 2.0, ["r1:reserve:2"]) == 0  # created at 2.0
    assert await store.outbox_purge("dead", 3.0, ["r1:reserve:2", "nope"]) == 1
    assert await store.outbox_purge("dead", FAR, ["r1:reserve:2"]) == 0  # gone already
    left = {r.id: r.status for r in await store.outbox_list()}
    assert left == {"r1:reserve:1": "sent", "r1:reserve:3": "dead", "r1:reserve:4": "pending"}
    assert await store.outbox_purge("sent", math.inf, ["r1:reserve:3", "r1:reserve:1"]) == 1
    with pytest.raises(StoreError, match="pending"):
        await store.outbox_purge("pending", FAR, ["r1:reserve:4"])
    assert ids(await store.outbox_list()) == ["r1:reserve:4", "r1:reserve:3"]


@pytest.mark.parametrize("by_id", [False, True], ids=["by-age", "by-id"])
async def test_purging_a_dead_head_frees_its_key(store: SagaStore, by_id: bool) -> None:
    """Once a key's dead head is purged (by age, or by its id), its later messages are claimed
    again, and once they are sent a new commit of the key claims its own for optimistic
    sending. Another key's dead head, not purged, still holds its key."""
    await with_messages(store, message(1), message(2), message(5, "other"), message(6, "other"))
    claimed = await store.outbox_claim("a", NOW, NOW + 30)
    for head in ("r1:reserve:1", "r1:reserve:5"):
        await store.outbox_mark_failed(head, "a", "refused", NOW, dead=True)
    await store.outbox_release([r.id for r in claimed], "a")  # the dead heads are not pending
    assert await store.outbox_claim("a", NOW, NOW + 30) == []  # behind the dead heads
    if by_id:
        assert await store.outbox_purge("dead", FAR, ["r1:reserve:1"]) == 1
    else:
        assert await store.outbox_purge("dead", before=3.0) == 1
    [second] = await store.outbox_claim("a", NOW, NOW + 30)
    assert second.id == "r1:reserve:2"
    await store.outbox_mark_sent([second.id], NOW)
    third = make_commit(version=1, seq=2, messages=[message(3)])
    assert list(await store.commit(attrs.evolve(third, claim_until=FAR)) or ()) == ["r1:reserve:3"]


async def test_a_message_id_is_written_once(store: SagaStore) -> None:
    """A message id already in the outbox is left as it was."""
    await with_messages(store, message(1))
    again = attrs.evolve(message(1), payload={"changed": True})
    await store.commit(make_commit(version=1, seq=2, messages=[again]))
    [record] = await store.outbox_list()
    assert record.message == message(1)


async def test_concurrent_commits_write_and_claim_their_own_messages(store: SagaStore) -> None:
    """Commits of many runs at once (one batch) each write and claim just their messages."""
    runs = [f"r{n}" for n in range(12)]
    commits = [
        make_commit(
            run_id,
            create=make_run(run_id),
            messages=[message(1, key=run_id, run_id=run_id), message(2, key=None, run_id=run_id)],
            claim_until=FAR if n % 2 else None,
        )
        for n, run_id in enumerate(runs)
    ]
    claimed = await asyncio.gather(*(store.commit(c) for c in commits))
    for n, (run_id, ids) in enumerate(zip(runs, claimed, strict=True)):
        expected = [f"{run_id}:reserve:1", f"{run_id}:reserve:2"] if n % 2 else []
        assert list(ids or ()) == expected
    listed = await store.outbox_list(limit=100)
    assert len(listed) == 24
    assert sum(r.claim_owner == "w1" for r in listed) == 12


async def test_a_backlog_of_one_key_is_committed_and_claimed_quickly(store: SagaStore) -> None:
    """20,000 messages of one key: one commit claims them all, a claim the first 100, quickly."""
    import time

    backlog = [
        attrs.evolve(message(n), payload={"n": n}, headers={}, created_at=1.0)
        for n in range(1, 20_001)
    ]
    began = time.perf_counter()
    claimed = await with_messages(store, *backlog, claim_until=FAR)
    assert len(claimed) == 20_000
    await store.outbox_release(claimed, "w1")  # its publish failed: the relay's now
    first = await store.outbox_claim("relay", NOW + 60, NOW + 90, limit=100)
    assert ids(first) == [f"r1:reserve:{n}" for n in range(1, 101)]
    assert await store.outbox_claim("other", NOW + 61, NOW + 91) == []  # the key is busy
    assert time.perf_counter() - began < 5.0  # per-message scans of the key took minutes


async def test_a_new_message_is_due_at_once_whatever_its_created_at(store: SagaStore) -> None:
    """A message emitted on a machine whose clock runs ahead is not held back (nor its key)."""
    ahead = attrs.evolve(message(1), created_at=NOW + 3600)
    await with_messages(store, ahead, message(2))
    assert ids(await store.outbox_claim("relay", NOW, NOW + 30)) == [
        "r1:reserve:1",
        "r1:reserve:2",
    ]


# -- waits and signals -------------------------------------------------------------------------


def waiting_run(run_id: str = "r1", wake_at: float | None = FAR, **changes: Any) -> RunRecord:
    """A run parked in a wait: status ``waiting``, no lease, due at ``wake_at``."""
    fields: dict[str, Any] = {"lease_owner": None, "lease_expires": None, "wake_at": wake_at}
    fields.update(changes)
    return make_run(run_id, status="waiting", **fields)


def signal(
    signal_id: str = "s1", event: str = "approval", run_id: str = "r1", **changes: Any
) -> SignalRecord:
    """A signal of ``event`` for ``run_id``, with a payload and a time."""
    fields: dict[str, Any] = {"payload": {"approved": True, "by": "ann"}, "at": 500.0}
    fields.update(changes)
    return SignalRecord(run_id, signal_id, event, **fields)


async def refusal(store: SagaStore, sent: SignalRecord) -> str:
    """The reason ``store`` gives for refusing ``sent`` (failing if it is not refused)."""
    with pytest.raises(SignalRefused) as caught:
        await store.add_signal(sent)
    assert isinstance(caught.value, StoreError)
    assert (caught.value.run_id, caught.value.event) == (sent.run_id, sent.event)
    return caught.value.reason


async def test_a_signal_is_stored_and_loaded_by_its_event(store: SagaStore) -> None:
    """add_signal returns True and load() gives the signal back, keyed by event, exactly."""
    await store.create(waiting_run())
    sent = signal(payload={"n": 1.5, "list": [1, "é", None], "nested": {"ok": False}})
    assert await store.add_signal(sent) is True
    assert await store.add_signal(signal("s2", "shipping", at=600.0)) is True
    signals = (await store.load("r1")).signals
    assert dict(signals) == {"approval": sent, "shipping": signal("s2", "shipping", at=600.0)}


async def test_a_run_without_signals_loads_with_none(store: SagaStore) -> None:
    """load() of a run nobody signalled has an empty signals mapping; others' are not mixed in."""
    await store.create(waiting_run("r1"))
    await store.create(waiting_run("r2"))
    await store.add_signal(signal(run_id="r2"))
    assert dict((await store.load("r1")).signals) == {}
    assert list((await store.load("r2")).signals) == ["approval"]


async def test_the_same_signal_sent_again_is_a_duplicate(store: SagaStore) -> None:
    """The same id, event and payload again returns False and stores nothing new."""
    await store.create(waiting_run())
    assert await store.add_signal(signal()) is True
    assert await store.add_signal(signal(at=999.0)) is False  # a retry, sent later
    assert dict((await store.load("r1")).signals) == {"approval": signal()}


async def test_a_signal_id_used_with_another_payload_or_event_is_refused(store: SagaStore) -> None:
    """A signal id reused with another payload, or another event, is refused naming the id."""
    await store.create(waiting_run())
    await store.add_signal(signal())
    other_payload = await refusal(store, signal(payload={"approved": False}))
    assert other_payload == "signal id s1 was already used with another event/payload"
    assert await refusal(store, signal(event="shipping")) == other_payload
    assert dict((await store.load("r1")).signals) == {"approval": signal()}


async def test_a_signal_after_a_cancel_request_is_refused(store: SagaStore) -> None:
    """Once a run was asked to stop (the ``saga.cancel`` signal), later signals lose."""
    await store.create(waiting_run())
    assert await store.add_signal(signal("stop", CANCEL_EVENT, payload={}))
    reason = await refusal(store, signal("s1"))
    assert reason == "the run was asked to stop (statesaga runs cancel)"
    assert list((await store.load("r1")).signals) == [CANCEL_EVENT]
    assert await store.add_signal(signal("stop", CANCEL_EVENT, payload={})) is False


async def test_a_second_signal_for_an_event_is_refused(store: SagaStore) -> None:
    """Another signal id for an event already signalled is refused, naming the first id."""
    await store.create(waiting_run())
    await store.add_signal(signal("s1"))
    assert await refusal(store, signal("s2")) == "it was already signalled (signal id s1)"
    assert dict((await store.load("r1")).signals) == {"approval": signal("s1")}


@pytest.mark.parametrize("status", ["completed", "compensated", "failed"])
async def test_a_signal_for_a_finished_run_is_refused(store: SagaStore, status: str) -> None:
    """A run in a terminal state takes no signal; the reason names its status."""
    await store.create(make_run(status=status))
    assert status in await refusal(store, signal())
    assert dict((await store.load("r1")).signals) == {}


async def test_a_duplicate_of_a_stored_signal_is_recognised_after_the_run_ends(
    store: SagaStore,
) -> None:
    """A sender retrying a signal that was stored before the run ended gets False, not refused."""
    await store.create(make_run())
    await store.add_signal(signal())
    await store.commit(make_commit(status="completed"))
    assert await store.add_signal(signal()) is False


@pytest.mark.parametrize(
    "phase",
    ["succeeded", "failed", "in_doubt", "compensating", "compensated", "compensation_failed"],
)
async def test_a_signal_for_a_wait_that_is_over_is_refused(store: SagaStore, phase: str) -> None:
    """A signal whose event names a step past its wait is refused, naming the phase."""
    await store.create(make_run())
    await store.commit(make_commit(steps=[StepRecord("approval", phase, 1)]))
    assert await refusal(store, signal()) == f"its wait is over: it is {phase}"
    assert dict((await store.load("r1")).signals) == {}


async def test_a_signal_for_a_wait_still_open_or_not_reached_is_stored(store: SagaStore) -> None:
    """A step row that is still waiting (or running), or none yet, does not refuse a signal."""
    await store.create(make_run())
    steps = [StepRecord("approval", "waiting", 1), StepRecord("shipping", "running", 1)]
    await store.commit(make_commit(steps=steps))
    for event in ("approval", "shipping", "later"):
        assert await store.add_signal(signal(f"id-{event}", event)) is True


async def test_a_signal_for_an_unknown_run_is_not_found(store: SagaStore) -> None:
    """add_signal for a run id nobody created raises RunNotFound and stores nothing."""
    await store.create(waiting_run("r1"))
    with pytest.raises(RunNotFound):
        await store.add_signal(signal(run_id="nope"))
    assert dict((await store.load("r1")).signals) == {}


async def test_a_payload_json_cannot_hold_is_refused(store: SagaStore) -> None:
    """A signal whose payload is not JSON data is a StoreError, and nothing is stored."""
    await store.create(waiting_run())
    with pytest.raises(StoreError):
        await store.add_signal(signal(payload={"when": object()}))
    assert dict((await store.load("r1")).signals) == {}


async def test_a_signal_makes_a_waiting_run_due_at_once(store: SagaStore) -> None:
    """A waiting run's wake_at becomes the signal's time (if sooner), its version unchanged."""
    await store.create(waiting_run("far", FAR, version=4))
    await store.create(waiting_run("soon", 100.0))
    await store.add_signal(signal(run_id="far", at=500.0))
    await store.add_signal(signal(run_id="soon", at=500.0))
    far, soon = (await store.load("far")).run, (await store.load("soon")).run
    assert (far.wake_at, far.version, far.status) == (500.0, 4, "waiting")
    assert soon.wake_at == 100.0  # due sooner already
    assert await store.unfinished(500.0) == ["far", "soon"]


async def test_a_signal_wakes_a_waiting_run_without_a_timeout_by_now(store: SagaStore) -> None:
    """A waiting run with no wake_at is due at min(now, signal time) once signalled."""
    import time

    await store.create(waiting_run("future", None))
    await store.create(waiting_run("past", None))
    before = time.time()
    await store.add_signal(signal(run_id="future", at=before + 3600))
    await store.add_signal(signal(run_id="past", at=500.0))
    future = (await store.load("future")).run.wake_at
    assert future is not None
    assert before <= future <= time.time()
    assert (await store.load("past")).run.wake_at == 500.0


async def test_a_signal_leaves_a_running_run_and_its_driver_alone(store: SagaStore) -> None:
    """A signal to a run being driven changes neither its wake_at nor its version."""
    await store.create(make_run())
    await store.add_signal(signal())
    run = (await store.load("r1")).run
    assert (run.wake_at, run.version) == (None, 0)
    await store.commit(make_commit())  # the lease holder's next commit does not conflict
    assert (await store.load("r1")).run.version == 1


async def test_commits_write_wake_at_and_a_later_commit_clears_it(store: SagaStore) -> None:
    """A commit parking a run writes its wake_at; the next commit, without one, writes None."""
    await store.create(make_run())
    await store.commit(make_commit(status="waiting", wake_at=1234.5))
    assert (await store.load("r1")).run.wake_at == 1234.5
    assert [r.run_id for r in await store.list_runs(status="waiting")] == ["r1"]
    await store.commit(make_commit(version=1, seq=2))
    run = (await store.load("r1")).run
    assert (run.wake_at, run.status) == (None, "running")


async def test_a_releasing_commit_lets_go_of_the_lease_in_the_same_write(
    store: SagaStore,
) -> None:
    """A commit with ``release`` (a run parking) leaves the run with no lease: it is due to any
    driver at its wake_at, and the old owner's next commit conflicts. Without it the lease
    stays; a releasing commit stopped by a signal keeps it, and changes nothing."""
    await store.create(make_run())
    await store.commit(make_commit(status="waiting", wake_at=500.0))
    assert (await store.load("r1")).run.lease_owner == "w1"
    assert await store.unfinished(NOW) == []  # still leased
    await store.commit(make_commit(version=1, seq=2, status="waiting", wake_at=500.0, release=True))
    run = (await store.load("r1")).run
    assert (run.lease_owner, run.lease_expires, run.version) == (None, None, 2)
    assert await store.unfinished(NOW) == ["r1"]
    with pytest.raises(WriteConflict):
        await store.commit(make_commit(version=2, seq=3))
    await store.create(make_run("r2"))
    await store.add_signal(signal(run_id="r2", event="approval"))
    with pytest.raises(SignalArrived):
        await store.commit(
            make_commit("r2", status="waiting", release=True, unless_signals=("approval",))
        )
    assert (await store.load("r2")).run.lease_owner == "w1"


async def test_a_guarded_commit_fails_with_signal_arrived_and_writes_nothing(
    store: SagaStore,
) -> None:
    """A commit whose unless_signals names a signalled event raises SignalArrived, naming it."""
    await store.create(make_run())
    await store.add_signal(signal(event="approval"))
    before = await store.load("r1")
    parked = make_commit(
        status="waiting",
        wake_at=2000.0,
        unless_signals=("shipping", "approval"),
        messages=[message(1)],
    )
    with pytest.raises(SignalArrived) as caught:
        await store.commit(parked)
    assert isinstance(caught.value, StoreError)
    assert (caught.value.run_id, caught.value.events) == ("r1", ("approval",))
    assert await store.load("r1") == before
    assert await store.outbox_list() == []


async def test_a_guarded_commit_applies_when_its_events_were_not_signalled(
    store: SagaStore,
) -> None:
    """Signals of other events do not stop a guarded commit: it applies with its wake_at."""
    await store.create(make_run())
    await store.add_signal(signal(event="other"))
    await store.commit(make_commit(status="waiting", wake_at=2000.0, unless_signals=("approval",)))
    run = (await store.load("r1")).run
    assert (run.status, run.wake_at, run.version) == ("waiting", 2000.0, 1)


async def test_a_stale_guarded_commit_is_a_write_conflict(store: SagaStore) -> None:
    """The version and lease are checked first: a stale guarded commit is a WriteConflict."""
    await store.create(make_run())
    await store.add_signal(signal())
    with pytest.raises(WriteConflict):
        await store.commit(make_commit(version=7, unless_signals=("approval",)))
    with pytest.raises(WriteConflict):
        await store.commit(make_commit(lease_owner="w2", unless_signals=("approval",)))


async def test_a_guarded_commit_fails_alone_among_concurrent_commits(store: SagaStore) -> None:
    """Committed together with others, a commit stopped by a signal fails alone."""
    for i in range(12):
        await store.create(make_run(f"r{i}"))
    await store.add_signal(signal(run_id="r5"))
    commits = [
        make_commit(f"r{i}", status="waiting", wake_at=3000.0, unless_signals=("approval",))
        for i in range(12)
    ]
    outcomes = await asyncio.gather(*(store.commit(c) for c in commits), return_exceptions=True)
    assert isinstance(outcomes[5], SignalArrived)
    assert [o for i, o in enumerate(outcomes) if i != 5] == [None] * 11
    versions = [(await store.load(f"r{i}")).run.version for i in range(12)]
    assert versions == [1] * 5 + [0] + [1] * 6


async def test_unfinished_leaves_out_runs_asleep_in_a_wait(store: SagaStore) -> None:
    """Waiting runs are polled only once due; a due one with a live lease is not."""
    await store.create(make_run("running", lease_owner=None, lease_expires=None, created_at=1))
    await store.create(waiting_run("no-timeout", None, created_at=2))
    await store.create(waiting_run("later", NOW + 1, created_at=3))
    await store.create(waiting_run("due", NOW, created_at=4))
    await store.create(waiting_run("overdue", 10.0, created_at=5))
    await store.create(waiting_run("leased", 10.0, lease_owner="w2", lease_expires=FAR))
    await store.create(make_run("done", status="completed", lease_owner=None))
    assert await store.unfinished(NOW) == ["running", "due", "overdue"]
    assert await store.unfinished(NOW + 1) == ["running", "later", "due", "overdue"]
    assert await store.unfinished(NOW, limit=2) == ["running", "due"]


async def test_unfinished_keeps_the_oldest_first_across_waiting_and_runnable(
    store: SagaStore,
) -> None:
    """Due waiting runs and runnable ones are merged oldest first before the limit applies."""
    for i in range(6):
        free = {"lease_owner": None, "lease_expires": None, "created_at": float(10 + i)}
        if i % 2:
            await store.create(waiting_run(f"r{i}", 5.0, **free))
        else:
            await store.create(make_run(f"r{i}", **free))
    assert await store.unfinished(NOW, limit=4) == ["r0", "r1", "r2", "r3"]


async def test_waiting_lists_the_soonest_first_and_those_without_timeout_last(
    store: SagaStore,
) -> None:
    """waiting() lists only waiting runs, by wake_at, runs without one last; limit honoured."""
    await store.create(waiting_run("none", None, created_at=1))
    await store.create(waiting_run("late", 900.0, created_at=2))
    await store.create(waiting_run("early", 200.0, created_at=3))
    await store.create(waiting_run("mid", 500.0, created_at=4))
    await store.create(make_run("running"))
    waiting = await store.waiting()
    assert [r.run_id for r in waiting] == ["early", "mid", "late", "none"]
    assert waiting[0] == waiting_run("early", 200.0, created_at=3)
    assert [r.run_id for r in await store.waiting(limit=2)] == ["early", "mid"]
    listed = [r.run_id for r in await store.list_runs(status="waiting")]
    assert listed == ["mid", "early", "late", "none"]


async def test_count_waiting_counts_the_waiting_runs_of_each_saga(store: SagaStore) -> None:
    """count_waiting() counts waiting runs by saga, leaving out other runs and idle sagas."""
    assert await store.count_waiting() == {}
    await store.create(waiting_run("a1", None))
    await store.create(waiting_run("a2", 500.0, lease_owner="w2", lease_expires=FAR))
    await store.create(waiting_run("b1", 200.0, saga="Booking"))
    await store.create(make_run("running"))
    await store.create(make_run("done", status="completed", lease_owner=None))
    await store.create(make_run("idle", saga="Idle", status="compensated", lease_owner=None))
    assert await store.count_waiting() == {"OrderSaga": 2, "Booking": 1}
    await store.acquire("a1", "w1", FAR, NOW)  # woken and driven again
    await store.commit(make_commit("a1", version=1, status="running"))
    assert await store.count_waiting() == {"OrderSaga": 1, "Booking": 1}


async def test_concurrent_signals_for_one_event_store_exactly_one(store: SagaStore) -> None:
    """Two signal ids for one event sent at once (through two connections): one is stored."""
    other = twin(store)
    await other.open()
    try:
        for n in range(8):
            run_id = f"r{n}"
            await store.create(waiting_run(run_id))
            first, second = signal("a", run_id=run_id), signal("b", run_id=run_id)
            outcomes = await asyncio.gather(
                store.add_signal(first), other.add_signal(second), return_exceptions=True
            )
            assert sorted(map(repr, map(type, outcomes))) == [
                repr(bool),
                repr(SignalRefused),
            ], outcomes
            winner = first if outcomes[0] is True else second
            assert dict((await store.load(run_id)).signals) == {"approval": winner}
    finally:
        if other is not store:
            await other.close()


async def test_a_signal_racing_a_guarded_commit_one_of_them_wins(store: SagaStore) -> None:
    """A signal and a commit timing its wait out, at once: exactly one of them takes effect."""
    other = twin(store)
    await other.open()
    try:
        for n in range(8):
            run_id = f"r{n}"
            await store.create(make_run(run_id))
            timed_out = make_commit(
                run_id, steps=[StepRecord("approval", "failed", 1)], unless_signals=("approval",)
            )
            committed, signalled = await asyncio.gather(
                store.commit(timed_out),
                other.add_signal(signal(run_id=run_id)),
                return_exceptions=True,
            )
            snapshot = await store.load(run_id)
            if signalled is True:
                assert isinstance(committed, SignalArrived)
                assert snapshot.run.version == 0
                assert list(snapshot.signals) == ["approval"]
            else:
                assert committed is None
                assert isinstance(signalled, SignalRefused)
                assert snapshot.steps["approval"].phase == "failed"
                assert dict(snapshot.signals) == {}
    finally:
        if other is not store:
            await other.close()
