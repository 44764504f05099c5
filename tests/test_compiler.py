from __future__ import annotations

import json

import pytest

from statesaga import CompiledSaga, InvalidSagaError, Saga, Step, compile_saga


async def act(ctx: object) -> None:
    """No-op."""


async def undo(ctx: object) -> None:
    """No-op."""


class Chain(Saga):
    steps = (Step("a", act, compensate=undo), Step("b", act), Step("c", act, compensate=undo))


class Dag(Saga):
    steps = (
        Step("a", act, compensate=undo),
        Step("b", act, compensate=undo, depends_on="a"),
        Step("c", act, depends_on="a"),
        Step("d", act, depends_on=["b", "c"]),
    )


class Pivoted(Saga):
    steps = (Step("a", act, compensate=undo), Step("p", act, pivot=True), Step("z", act))


def edges(compiled: CompiledSaga) -> set[tuple[str, str, str, str]]:
    return {(t.trigger, t.source, t.dest, t.kind) for t in compiled.transitions}


def test_chain_forward_path_reads_left_to_right() -> None:
    """A chain's forward edges go pending -> a -> b -> c -> completed."""
    c = compile_saga(Chain)
    assert c.sequential
    assert c.regions == ("saga",)
    assert c.initial == "pending"
    assert c.terminal_states == ("completed", "compensated", "failed")
    assert {
        ("start", "pending", "running", "forward"),
        ("a.start", "running", "a.running", "forward"),
        ("a.succeed", "a.running", "a.succeeded", "forward"),
        ("b.start", "a.succeeded", "b.running", "forward"),
        ("c.start", "b.succeeded", "c.running", "forward"),
        ("complete", "c.succeeded", "completed", "forward"),
    } <= edges(c)


def test_chain_compensation_path_reads_right_to_left() -> None:
    """Compensating edges skip steps without compensation and end in compensated."""
    c = compile_saga(Chain)
    assert {
        ("c.compensate", "compensating", "c.compensating", "compensate"),
        ("a.compensate", "c.compensated", "a.compensating", "compensate"),
        ("a.compensate", "c.compensation_failed", "a.compensating", "compensate"),
        ("finish", "a.compensated", "compensated", "compensate"),
        ("give_up", "a.compensation_failed", "failed", "compensate"),
    } <= edges(c)
    assert "b.compensating" not in c.states


def test_chain_failure_edges_are_marked() -> None:
    """fail / time_out / abort edges carry failure=True."""
    c = compile_saga(Chain)
    failures = {t.trigger for t in c.transitions if t.failure}
    assert {"a.fail", "b.time_out", "abort", "give_up", "a.compensation_fail"} <= failures
    assert not any(t.failure for t in c.transitions if t.trigger.endswith(".succeed"))


def test_pivot_chain_halts_after_the_pivot() -> None:
    """After the pivot, failures lead to failed; before it, to compensation."""
    c = compile_saga(Pivoted)
    e = edges(c)
    assert ("halt", "z.failed", "failed", "forward") in e
    assert ("halt", "p.in_doubt", "failed", "forward") in e
    assert ("abort", "p.failed", "compensating", "compensate") in e
    assert not any(t.source == "z.failed" and t.trigger == "abort" for t in c.transitions)
    plan = {p.name: p for p in c.steps}
    assert plan["z"].after_pivot
    assert not plan["p"].after_pivot
    assert not plan["a"].after_pivot


def test_dag_compiles_to_regions_with_joins() -> None:
    """A DAG has the saga's region plus one per step, and starts join on dependencies."""
    c = compile_saga(Dag)
    assert not c.sequential
    assert c.regions == ("saga", "a", "b", "c", "d")
    (start_d,) = [t for t in c.transitions if t.trigger == "d.start"]
    assert start_d.source == "d.pending"
    assert start_d.requires == ("running", "b.succeeded", "c.succeeded")
    (complete,) = [t for t in c.transitions if t.trigger == "complete"]
    assert set(complete.requires) == {f"{n}.succeeded" for n in "abcd"}
    assert c.region_of_trigger["b.compensate"] == "b"
    assert c.region_of_state["compensating"] == "saga"


def test_state_count_grows_linearly() -> None:
    """Each step adds a bounded number of states, for chains and DAGs alike."""

    def sizes(n: int, dag: bool) -> int:
        steps = tuple(
            Step(f"s{i}", act, compensate=undo, depends_on=(f"s{i - 1}",) if dag and i else ())
            for i in range(n)
        )
        cls = type(f"S{n}{dag}", (Saga,), {"steps": steps})
        return len(compile_saga(cls).states)

    for dag in (False, True):
        assert sizes(42, dag) - sizes(22, dag) == sizes(22, dag) - sizes(2, dag)
        assert sizes(41, dag) <= 8 * 41 + 6


def test_compilation_is_cached_and_deterministic() -> None:
    """compile_saga returns the same object per class and the same data for equal classes."""
    assert compile_saga(Chain) is compile_saga(Chain)
    twin = type("Chain", (Saga,), {"steps": Chain.steps})
    assert compile_saga(twin).to_dict() == compile_saga(Chain).to_dict()
    assert compile_saga(twin).fingerprint == compile_saga(Chain).fingerprint


def test_fingerprint_changes_with_the_definition() -> None:
    """Adding a dependency or a compensation changes the fingerprint."""
    other = type("Chain", (Saga,), {"steps": (*Chain.steps[:2], Step("c", act))})
    assert compile_saga(other).fingerprint != compile_saga(Chain).fingerprint


def _fingerprint(*steps: Step) -> str:
    return compile_saga(type("Shape", (Saga,), {"steps": steps})).fingerprint


def test_fingerprint_follows_what_a_stored_run_relies_on() -> None:
    """Steps, order, dependencies, compensability and the pivot count; tuning does not."""
    from statesaga import Retry

    base = _fingerprint(Step("a", act, compensate=act), Step("b", act))
    tuned = _fingerprint(
        Step("a", act, compensate=act, retry=Retry(attempts=5), timeout=3),
        Step("b", act, compensate_retry=Retry(attempts=9)),
    )
    assert tuned == base
    assert _fingerprint(Step("a", act), Step("b", act)) != base  # a no longer compensable
    assert _fingerprint(Step("a", act, compensate=act), Step("b", act, pivot=True)) != base
    assert _fingerprint(Step("b", act), Step("a", act, compensate=act)) != base  # order
    dag = _fingerprint(Step("a", act, compensate=act), Step("b", act, depends_on="a"))
    assert dag != base  # the same order as a DAG has other regions


def test_to_dict_is_json_serialisable() -> None:
    """to_dict gives plain JSON data that round-trips."""
    data = compile_saga(Dag).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["saga"] == "Dag"
    assert {"trigger", "source", "dest", "kind", "step", "failure", "requires"} == set(
        data["transitions"][0]
    )


def test_every_trigger_and_source_pair_is_unique() -> None:
    """The transition table is deterministic: one destination per (state, trigger)."""
    for cls in (Chain, Dag, Pivoted):
        c = compile_saga(cls)
        assert len(c.table) == len(c.transitions)
        for t in c.transitions:
            assert c.next_state(t.source, t.trigger) == t.dest


def test_saga_without_compensations_cannot_fail() -> None:
    """With nothing to compensate and no pivot there is no 'failed' state."""
    cls = type("Plain", (Saga,), {"steps": (Step("a", act), Step("b", act))})
    c = compile_saga(cls)
    assert "failed" not in c.states
    assert c.terminal_states == ("completed", "compensated")


@pytest.mark.parametrize("bad", [Saga, int, "Chain", None])
def test_compiling_something_that_is_not_a_saga_is_an_error(bad: object) -> None:
    """compile_saga rejects the base class and non-saga objects with a clear error."""
    with pytest.raises(InvalidSagaError, match="not a saga"):
        compile_saga(bad)  # type: ignore[arg-type]


def test_repr_summarises_the_machine() -> None:
    """The repr says chain or DAG and how big the machine is."""
    assert repr(compile_saga(Dag)).startswith("<CompiledSaga Dag: DAG of 4 steps")


def test_compiling_an_abstract_base_says_it_is_a_base() -> None:
    """A class declared abstract=True (statesaga.Saga itself too) is a base, not a saga."""

    class Base(Saga, abstract=True):
        pass

    for base in (Base, Saga):
        with pytest.raises(InvalidSagaError, match="is not a saga but a base for sagas"):
            compile_saga(base)
    assert not type("Concrete", (Base,), {"steps": (Step("a", act),)}).abstract
