"""Engine invariants over random sagas (chains and DAGs) and random failure plans."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statesaga import CompiledSaga, Context, Retry, Saga, SagaResult, SagaStatus, Step, compile_saga
from statesaga.testing import FakeClock
from statesaga.vocabulary import SAGA_REGION

# How a step's action behaves in one example.
OK = "ok"  # takes effect and returns a mapping
FLAKY = "flaky"  # raises on its first attempt, then behaves like OK (Retry(attempts=2))
RAISE = "raise"  # raises before doing anything: no effect
TIME_OUT = "time_out"  # takes effect, then hangs until the step's timeout: outcome unknown
NON_MAPPING = "non_mapping"  # takes effect, then returns 42: outcome unknown
FAILURE_MODES = (RAISE, TIME_OUT, NON_MAPPING)
IN_DOUBT_MODES = (TIME_OUT, NON_MAPPING)
SUCCESS_MODES = (OK, FLAKY)

STEP_TIMEOUT = 0.01
COMPENSATE_ATTEMPTS = 3  # the documented default: Retry(attempts=3)
FAILURE_TRIGGERS = (".fail", ".time_out", ".invalid_result")

PROPERTY = settings(max_examples=150, deadline=None)

_names = itertools.count()


class Boom(Exception):
    """An ordinary error raised by a test action or compensation."""


@dataclass(frozen=True)
class SagaPlan:
    """One random saga: its shape and how each action and compensation behaves."""

    names: tuple[str, ...]
    depends_on: dict[str, tuple[str, ...]]
    compensable: frozenset[str]
    behaviour: dict[str, str]
    failing_compensations: frozenset[str] = frozenset()
    pauses: dict[str, int] = field(default_factory=dict)
    undo_pauses: dict[str, int] = field(default_factory=dict)
    pivot: str | None = None

    @property
    def sequential(self) -> bool:
        return not any(self.depends_on.values())

    def deps(self, name: str) -> tuple[str, ...]:
        """The step's effective direct dependencies (the previous step in a chain)."""
        if self.sequential:
            index = self.names.index(name)
            return self.names[index - 1 : index]
        return self.depends_on[name]

    def ancestors(self, name: str) -> set[str]:
        """The step's transitive dependencies."""
        found: set[str] = set()
        stack = list(self.deps(name))
        while stack:
            dep = stack.pop()
            if dep not in found:
                found.add(dep)
                stack.extend(self.deps(dep))
        return found


@dataclass
class Run:
    """One executed example: the plan, its compiled machine, the result and the ledger."""

    plan: SagaPlan
    compiled: CompiledSaga
    result: SagaResult
    ledger: list[tuple[str, str]]

    def steps_with(self, kind: str) -> set[str]:
        return {step for k, step in self.ledger if k == kind}

    def count(self, kind: str, step: str) -> int:
        return self.ledger.count((kind, step))

    def first(self, kind: str, step: str) -> int:
        return self.ledger.index((kind, step))

    def last(self, kinds: tuple[str, ...], step: str) -> int:
        return max(i for i, (k, s) in enumerate(self.ledger) if k in kinds and s == step)

    @property
    def took_effect(self) -> set[str]:
        return self.steps_with("do")

    @property
    def succeeded(self) -> set[str]:
        return {s for s in self.took_effect if self.plan.behaviour[s] in SUCCESS_MODES}

    @property
    def failed(self) -> set[str]:
        return {s for s in self.steps_with("start") if self.plan.behaviour[s] in FAILURE_MODES}

    @property
    def owed(self) -> set[str]:
        """The steps that must be compensated: compensable ones that took effect, on failure."""
        return self.took_effect & self.plan.compensable if self.failed else set()

    def history_index(self, trigger: str) -> int | None:
        for i, entry in enumerate(self.result.history):
            if entry.trigger == trigger:
                return i
        return None

    def first_failure(self) -> int | None:
        for i, entry in enumerate(self.result.history):
            if entry.trigger.endswith(FAILURE_TRIGGERS):
                return i
        return None


def _action(ledger: list[tuple[str, str]], name: str, behaviour: str, pauses: int) -> Any:
    async def action(ctx: Context) -> Any:
        ledger.append(("start", name))
        for _ in range(pauses):  # let concurrent steps interleave
            await asyncio.sleep(0)
        if behaviour == RAISE or (behaviour == FLAKY and ctx.attempt == 1):
            raise Boom(f"{name} failed")
        ledger.append(("do", name))
        if behaviour == TIME_OUT:
            await asyncio.Event().wait()
        if behaviour == NON_MAPPING:
            return 42
        return {"step": name}

    return action


def _compensation(ledger: list[tuple[str, str]], name: str, fails: bool, pauses: int) -> Any:
    async def compensate(ctx: Context) -> None:
        ledger.append(("undo-start", name))
        for _ in range(pauses):  # let concurrent compensations interleave
            await asyncio.sleep(0)
        if fails:
            ledger.append(("undo-fail", name))
            raise Boom(f"cannot undo {name}")
        ledger.append(("undo", name))

    return compensate


def build_saga(plan: SagaPlan, ledger: list[tuple[str, str]]) -> type[Saga]:
    """A new saga class whose actions and compensations follow ``plan`` and write ``ledger``."""
    steps = []
    for name in plan.names:
        behaviour = plan.behaviour[name]
        compensate = None
        if name in plan.compensable:
            fails = name in plan.failing_compensations
            compensate = _compensation(ledger, name, fails, plan.undo_pauses.get(name, 0))
        steps.append(
            Step(
                name,
                _action(ledger, name, behaviour, plan.pauses.get(name, 0)),
                compensate=compensate,
                depends_on=plan.depends_on[name],
                retry=Retry(attempts=2) if behaviour == FLAKY else None,
                timeout=STEP_TIMEOUT if behaviour == TIME_OUT else None,
                pivot=name == plan.pivot,
            )
        )
    return type(f"RandomSaga{next(_names)}", (Saga,), {"steps": tuple(steps)})


def execute(plan: SagaPlan, saga_id: str | None = None) -> Run:
    """Run ``plan``'s saga to the end on a fresh event loop with a fake clock."""
    ledger: list[tuple[str, str]] = []
    saga = build_saga(plan, ledger)
    result = asyncio.run(saga().execute(clock=FakeClock(), saga_id=saga_id))
    return Run(plan, compile_saga(saga), result, ledger)


@st.composite
def saga_plans(draw: st.DrawFn, shape: str | None = None) -> SagaPlan:
    """Random sagas: a chain or a DAG of 1..8 steps with a random failure plan."""
    sequential = draw(st.booleans()) if shape is None else shape == "chain"
    count = draw(st.integers(1 if sequential else 2, 8))
    names = tuple(f"s{i}" for i in range(count))
    depends_on: dict[str, tuple[str, ...]] = dict.fromkeys(names, ())
    if not sequential:
        for i, name in enumerate(names[1:], start=1):
            earlier = st.sampled_from(names[:i])
            depends_on[name] = tuple(draw(st.lists(earlier, unique=True, max_size=3)))
        if not any(depends_on.values()):
            i = draw(st.integers(1, count - 1))
            depends_on[names[i]] = (names[draw(st.integers(0, i - 1))],)
    compensable = frozenset(draw(st.sets(st.sampled_from(names))))
    failing = draw(st.sets(st.sampled_from(names), max_size=3))
    behaviour = {
        name: draw(st.sampled_from(FAILURE_MODES if name in failing else SUCCESS_MODES))
        for name in names
    }
    failing_compensations: frozenset[str] = frozenset()
    if compensable:
        failing_compensations = frozenset(
            draw(st.sets(st.sampled_from(sorted(compensable)), max_size=2))
        )
    # A step that times out takes effect before its first await: pausing first would let a
    # busy machine spend its whole timeout in the pauses, so that it had no effect.
    pauses = {name: 0 if behaviour[name] == TIME_OUT else draw(st.integers(0, 3)) for name in names}
    # A timed-out step's compensation runs under the same short timeout: it must not wait,
    # or a busy machine could make it time out too (an await is where a timeout can strike).
    undo_pauses = {
        name: 0 if behaviour[name] == TIME_OUT else draw(st.integers(0, 3))
        for name in sorted(compensable)
    }
    return SagaPlan(
        names, depends_on, compensable, behaviour, failing_compensations, pauses, undo_pauses
    )


# -- a) what is compensated ---------------------------------------------------------------------


@PROPERTY
@given(saga_plans())
def test_compensates_exactly_the_compensable_steps_that_took_effect(plan: SagaPlan) -> None:
    """Compensations run for exactly the compensable steps that took effect, and only on failure."""
    run = execute(plan)
    assert run.steps_with("undo-start") == run.owed


@PROPERTY
@given(saga_plans())
def test_each_compensation_runs_once_or_exhausts_its_retries(plan: SagaPlan) -> None:
    """A working compensation runs once; a broken one is tried compensate_retry.attempts times."""
    run = execute(plan)
    for step in run.owed:
        attempts = [
            e.attempt
            for e in run.result.history
            if e.trigger in {f"{step}.compensate", f"{step}.retry_compensation"}
        ]
        assert attempts == list(range(1, run.count("undo-start", step) + 1))
        if step in plan.failing_compensations:
            assert run.count("undo-start", step) == COMPENSATE_ATTEMPTS
            assert run.count("undo-fail", step) == COMPENSATE_ATTEMPTS
            assert run.count("undo", step) == 0
        else:
            assert run.count("undo-start", step) == 1
            assert run.count("undo", step) == 1


# -- b) compensation order ----------------------------------------------------------------------


@PROPERTY
@given(saga_plans())
def test_compensation_starts_after_its_dependants_compensations_end(plan: SagaPlan) -> None:
    """A compensation starts only once every compensated (transitive) dependant has finished."""
    run = execute(plan)
    for step in run.owed:
        begins = run.first("undo-start", step)
        for dependant in run.owed:
            if step in plan.ancestors(dependant):
                assert run.last(("undo", "undo-fail"), dependant) < begins, (dependant, step)


# -- c) forward order ---------------------------------------------------------------------------


@PROPERTY
@given(saga_plans())
def test_no_step_starts_before_its_dependencies_succeed(plan: SagaPlan) -> None:
    """Every step starts after each of its dependencies took effect and succeeded."""
    run = execute(plan)
    for step in run.steps_with("start"):
        starts = run.first("start", step)
        started = run.history_index(f"{step}.start")
        assert started is not None
        for dep in plan.deps(step):
            assert dep in run.succeeded
            assert run.first("do", dep) < starts
            succeeded = run.history_index(f"{dep}.succeed")
            assert succeeded is not None
            assert succeeded < started


@PROPERTY
@given(saga_plans(shape="chain"))
def test_chain_runs_steps_in_written_order_up_to_the_first_failure(plan: SagaPlan) -> None:
    """A chain starts its steps in written order and stops at the first failing step."""
    run = execute(plan)
    starts = [step for kind, step in run.ledger if kind == "start"]
    expected = []
    for name in plan.names:
        expected.append(name)
        if plan.behaviour[name] in FAILURE_MODES:
            break
    assert list(dict.fromkeys(starts)) == expected


# -- d) failure stops new work ------------------------------------------------------------------


@PROPERTY
@given(saga_plans())
def test_no_step_starts_after_a_failure_unless_it_was_ready_before(plan: SagaPlan) -> None:
    """After the first failure only steps whose dependencies had all succeeded may still start."""
    run = execute(plan)
    history = run.result.history
    failure = run.first_failure()
    if failure is None:
        return
    for i, entry in enumerate(history):
        if i > failure and entry.trigger.endswith(".start"):
            step = entry.trigger.split(".")[0]
            for dep in plan.deps(step):
                succeeded = run.history_index(f"{dep}.succeed")
                assert succeeded is not None
                assert succeeded < failure, (step, dep)
    abort = run.history_index("abort")
    if abort is not None:
        assert not any(e.trigger.endswith(".start") for e in history[abort:])


@PROPERTY
@given(saga_plans())
def test_steps_never_started_have_no_effect(plan: SagaPlan) -> None:
    """A step the engine never started (per its history) never ran its action."""
    run = execute(plan)
    started = {e.trigger.split(".")[0] for e in run.result.history if e.trigger.endswith(".start")}
    assert run.steps_with("start") == started


@PROPERTY
@given(saga_plans())
def test_running_steps_are_awaited_before_compensation(plan: SagaPlan) -> None:
    """Every started step reaches an outcome before the saga starts compensating."""
    run = execute(plan)
    history = run.result.history
    end = run.history_index("abort")
    forward = history if end is None else history[:end]
    outcomes = (".succeed", *FAILURE_TRIGGERS)
    for step in run.steps_with("start"):
        assert any(e.trigger in {f"{step}{o}" for o in outcomes} for e in forward), step


# -- e) the result ------------------------------------------------------------------------------


@PROPERTY
@given(saga_plans())
def test_status_follows_failures_and_compensation_errors(plan: SagaPlan) -> None:
    """COMPLETED without failures, COMPENSATED after clean compensation, FAILED otherwise."""
    run = execute(plan)
    broken = run.owed & plan.failing_compensations
    if not run.failed:
        assert run.result.status is SagaStatus.COMPLETED
    elif broken:
        assert run.result.status is SagaStatus.FAILED
    else:
        assert run.result.status is SagaStatus.COMPENSATED


@PROPERTY
@given(saga_plans())
def test_completed_steps_are_the_steps_that_succeeded(plan: SagaPlan) -> None:
    """``completed_steps`` names each step whose action succeeded, once."""
    run = execute(plan)
    assert sorted(run.result.completed_steps) == sorted(run.succeeded)


@PROPERTY
@given(saga_plans())
def test_completed_steps_are_in_the_order_the_steps_succeeded(plan: SagaPlan) -> None:
    """``completed_steps`` is ordered as the history's ``<step>.succeed`` edges (its docs)."""
    run = execute(plan)
    succeeded = [
        e.trigger.split(".")[0] for e in run.result.history if e.trigger.endswith(".succeed")
    ]
    assert list(run.result.completed_steps) == succeeded


@PROPERTY
@given(saga_plans())
def test_compensated_steps_and_errors_match_the_ledger(plan: SagaPlan) -> None:
    """``compensated_steps`` and ``compensation_errors`` name what the ledger shows."""
    run = execute(plan)
    assert sorted(run.result.compensated_steps) == sorted(run.steps_with("undo"))
    assert set(run.result.compensation_errors) == run.owed & plan.failing_compensations
    assert all(isinstance(e, Boom) for e in run.result.compensation_errors.values())


@PROPERTY
@given(saga_plans())
def test_compensated_steps_are_in_the_order_compensations_finished(plan: SagaPlan) -> None:
    """``compensated_steps`` is ordered as the compensations finished (its docs)."""
    run = execute(plan)
    finished = [
        e.trigger.split(".")[0]
        for e in run.result.history
        if e.trigger.endswith(".compensation_done")
    ]
    assert list(run.result.compensated_steps) == finished


@PROPERTY
@given(saga_plans())
def test_failed_step_is_a_step_that_failed(plan: SagaPlan) -> None:
    """``failed_step`` and ``error`` name a failed step, or are None when the run completed."""
    run = execute(plan)
    if run.failed:
        assert run.result.failed_step in run.failed
        assert run.result.error is not None
    else:
        assert run.result.failed_step is None
        assert run.result.error is None


# -- f) the history is a walk through the compiled machine --------------------------------------


def _initial_config(compiled: CompiledSaga) -> dict[str, str]:
    config = dict.fromkeys(compiled.regions, compiled.initial)
    if not compiled.sequential:
        config.update((p.name, p.state("pending")) for p in compiled.steps)
    return config


@PROPERTY
@given(saga_plans())
def test_history_replays_on_the_compiled_table(plan: SagaPlan) -> None:
    """Each history entry leaves its region's current state by a table edge to its dest."""
    run = execute(plan)
    compiled = run.compiled
    config = _initial_config(compiled)
    for entry in run.result.history:
        region = compiled.region_of_trigger[entry.trigger]
        assert entry.source == config[region], entry
        assert compiled.next_state(entry.source, entry.trigger) == entry.dest, entry
        config[region] = entry.dest


@PROPERTY
@given(saga_plans(shape="dag"))
def test_joins_hold_when_their_trigger_fires(plan: SagaPlan) -> None:
    """A transition with ``requires`` fires only while every required state is current."""
    run = execute(plan)
    compiled = run.compiled
    requires = {(t.source, t.trigger): t.requires for t in compiled.transitions if t.requires}
    config = _initial_config(compiled)
    for entry in run.result.history:
        for state in requires.get((entry.source, entry.trigger), ()):
            assert config[compiled.region_of_state[state]] == state, (entry, state)
        config[compiled.region_of_trigger[entry.trigger]] = entry.dest


@PROPERTY
@given(saga_plans())
def test_run_ends_in_the_terminal_state_of_its_status(plan: SagaPlan) -> None:
    """The saga region's last state is terminal and names the result's status."""
    run = execute(plan)
    compiled = run.compiled
    config = _initial_config(compiled)
    for entry in run.result.history:
        config[compiled.region_of_trigger[entry.trigger]] = entry.dest
    final = config[SAGA_REGION]
    assert final in compiled.terminal_states
    assert final == run.result.status.value


# -- pivots -------------------------------------------------------------------------------------


@st.composite
def pivot_plans(draw: st.DrawFn, where: str) -> tuple[SagaPlan, int]:
    """A chain with a pivot and one failing step; returns the plan and the failing index.

    ``where`` is ``"before"`` (a failure before the pivot, or the pivot raising), ``"after"``
    (a failure after the pivot) or ``"pivot_in_doubt"`` (the pivot's outcome is unknown).
    """
    count = draw(st.integers(2 if where == "after" else 1, 8))
    names = tuple(f"s{i}" for i in range(count))
    pivot = draw(st.integers(0, count - 2 if where == "after" else count - 1))
    if where == "before":
        failing = draw(st.integers(0, pivot))
        mode = RAISE if failing == pivot else draw(st.sampled_from(FAILURE_MODES))
    elif where == "after":
        failing = draw(st.integers(pivot + 1, count - 1))
        mode = draw(st.sampled_from(FAILURE_MODES))
    else:
        failing = pivot
        mode = draw(st.sampled_from(IN_DOUBT_MODES))
    behaviour = dict.fromkeys(names, OK)
    behaviour[names[failing]] = mode
    plan = SagaPlan(
        names=names,
        depends_on=dict.fromkeys(names, ()),
        compensable=frozenset(names[:pivot]),
        behaviour=behaviour,
        pivot=names[pivot],
    )
    return plan, failing


@PROPERTY
@given(pivot_plans("before"))
def test_failure_before_or_at_the_pivot_compensates(case: tuple[SagaPlan, int]) -> None:
    """A failure before the pivot (or the pivot raising) compensates what took effect."""
    plan, failing = case
    run = execute(plan)
    in_doubt = plan.behaviour[plan.names[failing]] in IN_DOUBT_MODES
    undone = plan.names[: failing + 1] if in_doubt else plan.names[:failing]
    assert run.result.status is SagaStatus.COMPENSATED
    assert run.result.completed_steps == plan.names[:failing]
    assert run.result.compensated_steps == tuple(reversed(undone))
    assert run.result.failed_step == plan.names[failing]


@PROPERTY
@given(pivot_plans("after"))
def test_failure_after_the_pivot_fails_without_compensating(case: tuple[SagaPlan, int]) -> None:
    """A failure after the pivot leaves the run FAILED with nothing compensated."""
    plan, failing = case
    run = execute(plan)
    assert run.result.status is SagaStatus.FAILED
    assert run.result.completed_steps == plan.names[:failing]
    assert run.result.compensated_steps == ()
    assert run.result.compensation_errors == {}
    assert run.steps_with("undo-start") == set()
    assert run.result.failed_step == plan.names[failing]
    assert run.result.history[-1].trigger == "halt"


@PROPERTY
@given(pivot_plans("pivot_in_doubt"))
def test_pivot_with_unknown_outcome_fails_without_compensating(
    case: tuple[SagaPlan, int],
) -> None:
    """A pivot that times out or returns a non-mapping leaves FAILED, nothing compensated."""
    plan, failing = case
    run = execute(plan)
    assert run.result.status is SagaStatus.FAILED
    assert run.result.completed_steps == plan.names[:failing]
    assert run.result.compensated_steps == ()
    assert run.steps_with("undo-start") == set()
    assert run.result.failed_step == plan.pivot
    assert Counter(e.trigger for e in run.result.history)["halt"] == 1


# -- e) observing changes nothing --------------------------------------------------------------


@PROPERTY
@given(saga_plans(shape="chain"))
def test_an_observed_run_does_what_an_unobserved_one_does(plan: SagaPlan) -> None:
    """The same chain run with and without an observer calls the same actions in the same
    order and ends with the same result and history."""
    from statesaga.observe import Observer, observing

    alone = execute(plan, "run-1")
    with observing(Observer()):
        observed = execute(plan, "run-1")
    assert alone.ledger == observed.ledger
    assert alone.result.status == observed.result.status
    assert alone.result.completed_steps == observed.result.completed_steps
    assert alone.result.compensated_steps == observed.result.compensated_steps
    assert alone.result.failed_step == observed.result.failed_step
    assert dict(alone.result.results) == dict(observed.result.results)
    assert alone.result.history == observed.result.history
