"""The ``transitions`` machine built from a compiled saga agrees with the compiled table."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transitions import MachineError

from statesaga import CompiledSaga, Context, Saga, SagaResult, SagaStatus, Step, compile_saga
from statesaga._fsm import hsm_name
from statesaga.testing import FakeClock, fail_step
from statesaga.vocabulary import SAGA_REGION

_names = itertools.count()


async def _act(ctx: Context) -> dict[str, str]:
    return {"step": ctx.step}


async def _undo(ctx: Context) -> None:
    return None


async def _not_a_mapping(ctx: Context) -> int:
    return 42


class Model:
    """A plain object for ``transitions`` to drive."""

    state: Any


def make_saga(spec: list[tuple[str, str, tuple[str, ...]]]) -> type[Saga]:
    """A saga from ``(name, kind, depends_on)`` triples.

    Kinds: "comp" (compensable), "plain", "pivot", or "doubt" (compensable, but its action
    returns a non-mapping, so its outcome is unknown).
    """
    steps = tuple(
        Step(
            name,
            _not_a_mapping if kind == "doubt" else _act,
            compensate=_undo if kind in ("comp", "doubt") else None,
            pivot=kind == "pivot",
            depends_on=deps,
        )
        for name, kind, deps in spec
    )
    return type(f"FsmSaga{next(_names)}", (Saga,), {"steps": steps})


def chain(*kinds: str) -> type[Saga]:
    """A sequential saga with one step per kind, named a, b, c, ..."""
    return make_saga([(chr(ord("a") + i), kind, ()) for i, kind in enumerate(kinds)])


CHAINS: dict[str, Callable[[], type[Saga]]] = {
    "one_plain_step": lambda: chain("plain"),
    "one_compensable_step": lambda: chain("comp"),
    "all_compensable": lambda: chain("comp", "comp", "comp"),
    "mixed": lambda: chain("comp", "plain", "comp", "plain"),
    "no_compensations": lambda: chain("plain", "plain", "plain"),
    "pivot_in_the_middle": lambda: chain("comp", "plain", "pivot", "plain", "plain"),
    "pivot_first": lambda: chain("pivot", "plain", "plain"),
    "pivot_last": lambda: chain("comp", "comp", "pivot"),
    "only_a_pivot": lambda: chain("pivot"),
}

DAGS: dict[str, Callable[[], type[Saga]]] = {
    "diamond": lambda: make_saga(
        [
            ("a", "comp", ()),
            ("b", "comp", ("a",)),
            ("c", "plain", ("a",)),
            ("d", "comp", ("b", "c")),
        ]
    ),
    "fan_in": lambda: make_saga(
        [("a", "comp", ()), ("b", "comp", ()), ("c", "plain", ()), ("d", "comp", ("a", "b", "c"))]
    ),
    "two_chains": lambda: make_saga(
        [("a", "comp", ()), ("b", "comp", ("a",)), ("x", "plain", ()), ("y", "comp", ("x",))]
    ),
}


def triggers(compiled: CompiledSaga) -> list[str]:
    """Every trigger of the machine, sorted."""
    return sorted({t.trigger for t in compiled.transitions})


def pairs(compiled: CompiledSaga) -> Iterator[tuple[str, str]]:
    """Every (state, trigger) pair of a machine."""
    for state in compiled.states:
        for trigger in triggers(compiled):
            yield state, trigger


@pytest.fixture(params=sorted(CHAINS))
def chain_saga(request: pytest.FixtureRequest) -> CompiledSaga:
    return compile_saga(CHAINS[request.param]())


@pytest.fixture(params=sorted(DAGS))
def dag_saga(request: pytest.FixtureRequest) -> CompiledSaga:
    return compile_saga(DAGS[request.param]())


# -- chains: a flat Machine ---------------------------------------------------------------------


def test_chain_machine_starts_in_the_initial_state(chain_saga: CompiledSaga) -> None:
    """A fresh model of a chain starts in ``compiled.initial``."""
    model = Model()
    chain_saga.machine(model)
    assert model.state == chain_saga.initial


def test_chain_machine_knows_every_compiled_state(chain_saga: CompiledSaga) -> None:
    """The flat machine's states are exactly the compiled states."""
    machine = chain_saga.machine(Model())
    assert set(machine.states) == set(chain_saga.states)


def _check_may_trigger(compiled: CompiledSaga) -> None:
    model = Model()
    machine = compiled.machine(model)
    for state, trigger in pairs(compiled):
        machine.set_state(state, model=model)
        allowed = compiled.next_state(state, trigger) is not None
        assert model.may_trigger(trigger) is allowed, (state, trigger)


def _check_trigger(compiled: CompiledSaga) -> None:
    model = Model()
    machine = compiled.machine(model)
    for state, trigger in pairs(compiled):
        machine.set_state(state, model=model)
        dest = compiled.next_state(state, trigger)
        if dest is None:
            with pytest.raises(MachineError):
                model.trigger(trigger)
            assert model.state == state, (state, trigger)
        else:
            assert model.trigger(trigger) is True, (state, trigger)
            assert model.state == dest, (state, trigger)


def test_chain_may_trigger_agrees_with_the_table(chain_saga: CompiledSaga) -> None:
    """``may_trigger`` is True exactly for the (state, trigger) pairs the table has."""
    _check_may_trigger(chain_saga)


def test_chain_trigger_leads_where_the_table_says(chain_saga: CompiledSaga) -> None:
    """Each (state, trigger) either moves to the table's dest or raises ``MachineError``."""
    _check_trigger(chain_saga)


@st.composite
def chain_specs(draw: st.DrawFn) -> list[str]:
    """Step kinds of a random chain: compensable or plain, with an optional pivot."""
    count = draw(st.integers(1, 6))
    pivot = draw(st.none() | st.integers(0, count - 1))
    kinds = []
    for i in range(count):
        if pivot is not None and i == pivot:
            kinds.append("pivot")
        elif pivot is not None and i > pivot:
            kinds.append("plain")
        else:
            kinds.append(draw(st.sampled_from(("comp", "plain"))))
    return kinds


@settings(max_examples=40, deadline=None)
@given(chain_specs())
def test_random_chain_machine_agrees_with_the_table(kinds: list[str]) -> None:
    """For random chains, the flat machine and the table agree on every (state, trigger)."""
    compiled = compile_saga(chain(*kinds))
    _check_may_trigger(compiled)
    _check_trigger(compiled)


# -- DAGs: a HierarchicalMachine with parallel regions ------------------------------------------


def run(saga: type[Saga], *, fail: str | None = None, broken: str | None = None) -> SagaResult:
    """Run ``saga``, failing step ``fail``'s action and ``broken``'s compensation."""
    with ExitStack() as stack:
        if fail is not None:
            stack.enter_context(fail_step(fail))
        if broken is not None:
            stack.enter_context(fail_step(broken, compensation=True))
        return asyncio.run(saga().execute(clock=FakeClock()))


def configuration(compiled: CompiledSaga) -> dict[str, str]:
    """The table-driven configuration of a fresh run, one state per region."""
    config = dict.fromkeys(compiled.regions, compiled.initial)
    config.update((p.name, p.state("pending")) for p in compiled.steps)
    return config


def active(compiled: CompiledSaga, config: dict[str, str]) -> set[str]:
    """The nested state names the HierarchicalMachine should report for ``config``."""
    if config[SAGA_REGION] == compiled.initial:
        return {compiled.initial}
    return {hsm_name(compiled, state) for state in config.values()}


def reported(model: Model) -> set[str]:
    """The model's active states as a set of nested names."""
    state = model.state
    return set(state) if isinstance(state, list) else {state}


def replay(compiled: CompiledSaga, result: SagaResult) -> None:
    """Drive a fresh model with the run's history; check each step against the table."""
    model = Model()
    compiled.machine(model)
    config = configuration(compiled)
    for entry in result.history:
        assert model.trigger(entry.trigger) is True, entry
        config[compiled.region_of_trigger[entry.trigger]] = entry.dest
        assert reported(model) == active(compiled, config), entry


def test_dag_machine_starts_in_the_initial_state(dag_saga: CompiledSaga) -> None:
    """A fresh model of a DAG starts in ``compiled.initial``."""
    model = Model()
    dag_saga.machine(model)
    assert model.state == dag_saga.initial


def test_dag_start_enters_every_region(dag_saga: CompiledSaga) -> None:
    """``start`` enters the saga's running state and every step's pending state at once."""
    model = Model()
    dag_saga.machine(model)
    assert model.trigger("start") is True
    config = configuration(dag_saga)
    config[SAGA_REGION] = "running"
    assert reported(model) == active(dag_saga, config)


def test_dag_machine_replays_a_successful_run(dag_saga: CompiledSaga) -> None:
    """A completed run's history replays on the machine, configuration by configuration."""
    result = run(dag_saga.saga)
    assert result.status is SagaStatus.COMPLETED
    replay(dag_saga, result)


def test_dag_machine_replays_a_compensated_run(dag_saga: CompiledSaga) -> None:
    """A run compensated after its last step failed replays on the machine."""
    last = dag_saga.steps[-1].name
    result = run(dag_saga.saga, fail=last)
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps
    replay(dag_saga, result)


def test_dag_machine_replays_a_failed_compensation(dag_saga: CompiledSaga) -> None:
    """A run whose compensation failed (status FAILED) replays on the machine."""
    last = dag_saga.steps[-1].name
    first = dag_saga.steps[0].name
    result = run(dag_saga.saga, fail=last, broken=first)
    assert result.status is SagaStatus.FAILED
    assert set(result.compensation_errors) == {first}
    replay(dag_saga, result)


def test_dag_join_refuses_a_start_before_the_dependencies_succeed(dag_saga: CompiledSaga) -> None:
    """A step with dependencies cannot start while any of them has not succeeded."""
    for plan in (p for p in dag_saga.steps if p.deps):
        model = Model()
        dag_saga.machine(model)
        model.trigger("start")
        # Every dependency but the last succeeds: the join must still hold the step back.
        for dep in plan.deps[:-1]:
            for event in ("start", "succeed"):
                if model.may_trigger(f"{dep}.{event}"):
                    model.trigger(f"{dep}.{event}")
        before = reported(model)
        assert model.may_trigger(plan.trigger("start")) is False, plan.name
        assert model.trigger(plan.trigger("start")) is False, plan.name
        assert reported(model) == before


def test_dag_join_opens_once_the_dependencies_succeed(dag_saga: CompiledSaga) -> None:
    """A step can start as soon as all of its own dependencies have succeeded."""
    for plan in (p for p in dag_saga.steps if p.deps):
        model = Model()
        machine = dag_saga.machine(model)
        config = configuration(dag_saga)
        config[SAGA_REGION] = "running"
        config.update((dep, f"{dep}.succeeded") for dep in plan.deps)
        machine.set_state(sorted(active(dag_saga, config)), model=model)
        assert model.trigger(plan.trigger("start")) is True, plan.name
        assert hsm_name(dag_saga, plan.state("running")) in reported(model)


def test_dag_complete_waits_for_every_step(dag_saga: CompiledSaga) -> None:
    """``complete`` is refused until every step region is in ``succeeded``."""
    model = Model()
    machine = dag_saga.machine(model)
    config = configuration(dag_saga)
    config[SAGA_REGION] = "running"
    config.update((p.name, p.state("succeeded")) for p in dag_saga.steps)
    last = dag_saga.steps[-1]
    config[last.name] = last.state("running")
    machine.set_state(sorted(active(dag_saga, config)), model=model)
    assert model.trigger("complete") is False
    model.trigger(last.trigger("succeed"))
    assert model.trigger("complete") is True
    assert hsm_name(dag_saga, "completed") in reported(model)


def test_dag_join_checks_the_model_being_triggered() -> None:
    """A join reads the state of the model being triggered, not of the machine's first model."""
    compiled = compile_saga(DAGS["diamond"]())
    first, second = Model(), Model()
    machine = compiled.machine(first)
    machine.add_model(second)
    for model in (first, second):
        model.trigger("start")
    first.trigger("a.start")
    first.trigger("a.succeed")
    assert second.may_trigger("b.start") is False
    assert second.trigger("b.start") is False


def test_dag_region_edges_agree_with_the_table(dag_saga: CompiledSaga) -> None:
    """In each region, every (state, trigger) is allowed iff the table has it (joins satisfied)."""
    model = Model()
    machine = dag_saga.machine(model)
    everything_done = configuration(dag_saga)
    everything_done[SAGA_REGION] = "running"
    everything_done.update((p.name, p.state("succeeded")) for p in dag_saga.steps)
    for state in dag_saga.states:
        region = dag_saga.region_of_state[state]
        if state == dag_saga.initial:
            continue
        for trigger in (t for t in triggers(dag_saga) if dag_saga.region_of_trigger[t] == region):
            config = {**everything_done, region: state}
            for t in dag_saga.transitions:  # satisfy the edge's join, e.g. saga compensating
                if t.trigger == trigger and t.source == state:
                    config.update((dag_saga.region_of_state[r], r) for r in t.requires)
            machine.set_state(sorted(active(dag_saga, config)), model=model)
            allowed = dag_saga.next_state(state, trigger) is not None
            assert model.may_trigger(trigger) is allowed, (state, trigger)


@st.composite
def dag_runs(draw: st.DrawFn) -> tuple[type[Saga], str | None, str | None]:
    """A random DAG with optional failing action, unknown outcomes and failing compensation."""
    count = draw(st.integers(2, 6))
    names = [f"s{i}" for i in range(count)]
    spec = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2)) if i else []
        kind = draw(st.sampled_from(("comp", "plain", "comp", "doubt")))
        spec.append((name, kind, tuple(deps)))
    if not any(deps for _, _, deps in spec):
        name, kind, _ = spec[-1]
        spec[-1] = (name, kind, (names[0],))
    fail = draw(st.none() | st.sampled_from(names))
    broken = draw(st.none() | st.sampled_from(names))
    return make_saga(spec), fail, broken


@settings(max_examples=60, deadline=None)
@given(dag_runs())
def test_random_dag_runs_replay_on_the_machine(
    case: tuple[type[Saga], str | None, str | None],
) -> None:
    """Histories of random DAG runs, failures included, replay on the HierarchicalMachine."""
    saga, fail, broken = case
    compiled = compile_saga(saga)
    replay(compiled, run(saga, fail=fail, broken=broken))


# -- the compiled machine as data ---------------------------------------------------------------


@pytest.mark.parametrize("factory", [*CHAINS.values(), *DAGS.values()])
def test_to_dict_round_trips_through_json(factory: Callable[[], type[Saga]]) -> None:
    """``to_dict()`` survives ``json.dumps``/``json.loads`` unchanged."""
    data = compile_saga(factory()).to_dict()
    assert json.loads(json.dumps(data)) == data


def test_state_count_of_a_large_dag_is_linear() -> None:
    """A 200-step DAG compiles to at most 8 states per step plus the saga's 6."""
    count = 200
    rng = random.Random(200)
    spec = [("s0", "comp", ())]
    for i in range(1, count):
        deps = tuple(f"s{j}" for j in rng.sample(range(i), k=min(i, rng.randint(1, 3))))
        spec.append((f"s{i}", rng.choice(("comp", "plain")), deps))
    compiled = compile_saga(make_saga(spec))
    assert len(compiled.states) <= 8 * count + 6
    assert len(compiled.transitions) <= 12 * count + 6
