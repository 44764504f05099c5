"""Stored records through the codec: round trips for any value, and a golden file per schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from statesaga.store import _codec
from statesaga.store.base import (
    SCHEMA_VERSION,
    Commit,
    RunRecord,
    RunSnapshot,
    SignalRecord,
    StepRecord,
    TransitionRecord,
)

GOLDEN = Path(__file__).parent / "golden" / f"records_v{SCHEMA_VERSION}.json"

# -- strategies ------------------------------------------------------------------------------

times = st.floats(allow_nan=False, allow_infinity=False)
names = st.text(max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | times | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(names, json_values, max_size=5)
configs = st.dictionaries(names, names, max_size=4)

step_records = st.builds(
    StepRecord,
    step=names,
    phase=names,
    attempt=st.integers(min_value=0),
    result=st.none() | json_objects,
    error=st.none() | st.text(),
)
transition_records = st.builds(
    TransitionRecord,
    seq=st.integers(min_value=1),
    trigger=names,
    source=names,
    dest=names,
    at=times,
    attempt=st.integers(min_value=0),
    error=st.none() | st.text(),
)
run_records = st.builds(
    RunRecord,
    run_id=names,
    saga=names,
    saga_path=names,
    fingerprint=names,
    input=json_objects,
    status=names,
    config=configs,
    version=st.integers(min_value=0),
    lease_owner=st.none() | names,
    lease_expires=st.none() | times,
    created_at=times,
    updated_at=times,
    failed_step=st.none() | names,
    error=st.none() | st.text(),
    wake_at=st.none() | times,
)
signal_records = st.builds(
    SignalRecord, run_id=names, signal_id=names, event=names, payload=json_objects, at=times
)
# Sequences come back from cattrs as tuples, so generate tuples to compare with ``==``.
commits = st.builds(
    Commit,
    run_id=names,
    version=st.integers(min_value=0),
    lease_owner=names,
    status=names,
    config=configs,
    steps=st.lists(step_records, max_size=3).map(tuple),
    transitions=st.lists(transition_records, max_size=3).map(tuple),
    updated_at=times,
    failed_step=st.none() | names,
    error=st.none() | st.text(),
    wake_at=st.none() | times,
    unless_signals=st.lists(names, max_size=3).map(tuple),
)
snapshots = st.builds(
    RunSnapshot,
    run=run_records,
    steps=st.dictionaries(names, step_records, max_size=3),
    history=st.lists(transition_records, max_size=3).map(tuple),
    signals=st.dictionaries(names, signal_records, max_size=3),
)


def through_json(record: Any) -> Any:
    """``record`` unstructured, written as JSON text, read back and structured again."""
    text = json.dumps(_codec.unstructure(record))
    return _codec.structure(json.loads(text), type(record))


@given(step_records)
def test_step_record_round_trips(record: StepRecord) -> None:
    """Any StepRecord survives unstructure, JSON and structure unchanged."""
    assert through_json(record) == record


@given(transition_records)
def test_transition_record_round_trips(record: TransitionRecord) -> None:
    """Any TransitionRecord survives unstructure, JSON and structure unchanged."""
    assert through_json(record) == record


@given(run_records)
def test_run_record_round_trips(record: RunRecord) -> None:
    """Any RunRecord survives unstructure, JSON and structure unchanged."""
    assert through_json(record) == record


@given(signal_records)
def test_signal_record_round_trips(record: SignalRecord) -> None:
    """Any SignalRecord survives unstructure, JSON and structure unchanged."""
    assert through_json(record) == record


@given(commits)
def test_commit_round_trips(record: Commit) -> None:
    """Any Commit survives unstructure, JSON and structure unchanged."""
    assert through_json(record) == record


@given(snapshots)
def test_run_snapshot_round_trips(record: RunSnapshot) -> None:
    """Any RunSnapshot survives unstructure, JSON and structure unchanged."""
    assert through_json(record) == record


# -- golden records --------------------------------------------------------------------------

STEP = StepRecord("charge", "failed", 3, {"receipt": "R-1", "amount": 9.5}, "ValueError: declined")
TRANSITION = TransitionRecord(
    4, "charge.fail", "charge.running", "charge.failed", 1700000004.5, 3, "ValueError: declined"
)
RUN = RunRecord(
    run_id="run-1",
    saga="OrderSaga",
    saga_path="shop.sagas:OrderSaga",
    fingerprint="0123456789abcdef",
    input={"order_id": "ORD-1", "items": [{"sku": "A", "quantity": 2}], "gift": None},
    status="compensating",
    config={"saga": "saga.compensating", "charge": "charge.failed"},
    version=5,
    lease_owner="host:42:abcdef",
    lease_expires=1700000030.0,
    created_at=1700000000.25,
    updated_at=1700000004.5,
    failed_step="charge",
    error="ValueError: declined",
    wake_at=1700003600.0,
)
SIGNAL = SignalRecord("run-1", "sig-1", "approval", {"approved": True, "by": "ann"}, 1700000003.5)
GOLDEN_RECORDS: dict[str, Any] = {
    "StepRecord": STEP,
    "TransitionRecord": TRANSITION,
    "RunRecord": RUN,
    "SignalRecord": SIGNAL,
    "Commit": Commit(
        run_id="run-1",
        version=4,
        lease_owner="host:42:abcdef",
        status="compensating",
        config={"saga": "saga.compensating", "charge": "charge.failed"},
        steps=(STEP,),
        transitions=(TRANSITION,),
        updated_at=1700000004.5,
        failed_step="charge",
        error="ValueError: declined",
        wake_at=1700003600.0,
        unless_signals=("approval",),
    ),
    "RunSnapshot": RunSnapshot(
        run=RUN, steps={"charge": STEP}, history=(TRANSITION,), signals={"approval": SIGNAL}
    ),
}


def load_golden() -> dict[str, Any]:
    """The golden file's records, by type name."""
    data: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert data.pop("schema_version") == SCHEMA_VERSION
    return data


def test_golden_file_covers_every_record_type() -> None:
    """The golden file for this schema version holds one record of each stored type."""
    assert set(load_golden()) == set(GOLDEN_RECORDS)


def test_golden_records_structure() -> None:
    """Every golden record structures into the record it stands for."""
    golden = load_golden()
    for name, record in GOLDEN_RECORDS.items():
        assert _codec.structure(golden[name], type(record)) == record, name


def test_current_records_unstructure_to_the_golden_data() -> None:
    """Records unstructure exactly to the golden data (a change means a new schema version)."""
    golden = load_golden()
    for name, record in GOLDEN_RECORDS.items():
        assert json.loads(json.dumps(_codec.unstructure(record))) == golden[name], name


def test_records_of_schema_version_1_still_structure() -> None:
    """The golden records of version 1 structure into today's records, new fields defaulted."""
    old = json.loads((GOLDEN.parent / "records_v1.json").read_text(encoding="utf-8"))
    assert old.pop("schema_version") == 1
    run = _codec.structure(old["RunRecord"], RunRecord)
    assert run == attrs.evolve(RUN, wake_at=None)
    commit = _codec.structure(old["Commit"], Commit)
    assert (commit.wake_at, commit.unless_signals) == (None, ())
    snapshot = _codec.structure(old["RunSnapshot"], RunSnapshot)
    assert snapshot.signals == {}
    assert snapshot.run == run


def test_a_commit_without_waits_keeps_the_shape_of_version_1() -> None:
    """A commit that neither parks a run nor names signals unstructures as in version 1."""
    old = json.loads((GOLDEN.parent / "records_v1.json").read_text(encoding="utf-8"))
    commit = attrs.evolve(GOLDEN_RECORDS["Commit"], wake_at=None, unless_signals=())
    assert json.loads(json.dumps(_codec.unstructure(commit))) == old["Commit"]


def test_config_json_is_the_same_as_dumps_and_remembered() -> None:
    """The remembered JSON of a run's states is exactly what dumps() writes."""
    from statesaga.store._codec import _CONFIGS, dumps, dumps_config

    config = {"saga": "running", "b": "b.pending", "a": "a.succeeded"}
    assert dumps_config(config) == dumps(config)
    assert tuple(config.items()) in _CONFIGS
    assert dumps_config(dict(config)) is dumps_config(config)
    assert dumps({}) == "{}"
