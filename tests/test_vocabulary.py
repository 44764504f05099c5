from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statesaga
from statesaga import CompiledSaga, Saga, SagaStatus, Step, Wait, compile_saga
from statesaga.context import Context
from statesaga.store import base
from statesaga.vocabulary import (
    SAGA_REGION,
    SAGA_STATES,
    TERMINAL,
    TERMINAL_STATES,
    Event,
    Outcome,
    Phase,
    SagaState,
    SagaTrigger,
    idempotency_key,
    parse_name,
    saga_status,
    step_state,
    step_trigger,
)

PACKAGE = Path(statesaga.__file__).parent


async def act(ctx: object) -> None:
    """No-op."""


async def undo(ctx: object) -> None:
    """No-op."""


class Chain(Saga):
    steps = (Step("a", act, compensate=undo), Step("b", act), Step("c", act, compensate=undo))


class PlainChain(Saga):
    steps = (Step("a", act), Step("b", act))


class PivotChain(Saga):
    steps = (Step("a", act, compensate=undo), Step("p", act, pivot=True), Step("z", act))


class Dag(Saga):
    steps = (Step("x", act, compensate=undo), Step("y", act), Step("z", act, depends_on=["x", "y"]))


class PivotDag(Saga):
    steps = (
        Step("a", act, compensate=undo),
        Step("p", act, pivot=True, depends_on="a"),
        Step("z", act, depends_on="p"),
    )


class WaitChain(Saga):
    steps = (
        Step("a", act, compensate=undo),
        Wait("w", timeout=5),
        Step("p", act, pivot=True),
        Wait("later", timeout=1, on_timeout="continue"),
    )


def small(ctx: Context) -> bool:
    return True


class WaitDag(Saga):
    steps = (
        Step("a", act, compensate=undo, when=small),
        Wait("w"),
        Step("z", act, depends_on=["a", "w"]),
    )


SAGAS = (Chain, PlainChain, PivotChain, Dag, PivotDag, WaitChain, WaitDag)

step_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)


@given(step_names, st.sampled_from(list(Phase)))
def test_a_step_state_parses_back_to_its_step_and_phase(step: str, phase: Phase) -> None:
    """step_state and parse_name round-trip."""
    assert parse_name(step_state(step, phase)) == (step, phase)


@given(step_names, st.sampled_from(list(Event)))
def test_a_step_trigger_parses_back_to_its_step_and_event(step: str, event: Event) -> None:
    """step_trigger and parse_name round-trip."""
    assert parse_name(step_trigger(step, event)) == (step, event)


@pytest.mark.parametrize("name", [*SagaState, *SagaTrigger])
def test_a_saga_name_parses_to_no_step(name: str) -> None:
    """A saga state or trigger has no step."""
    assert parse_name(name) == (None, name)


def _names(compiled: CompiledSaga) -> Iterator[tuple[str, str | None, str]]:
    """(kind, step, part) of every state and trigger of ``compiled``."""
    for state in compiled.states:
        yield ("state", *parse_name(state))
    for t in compiled.transitions:
        yield ("trigger", *parse_name(t.trigger))


@pytest.mark.parametrize("saga", SAGAS, ids=lambda s: s.__name__)
def test_every_name_of_a_compiled_saga_is_in_the_vocabulary(saga: type[Saga]) -> None:
    """Each state and trigger parses to a known step and phase or event, or a saga name."""
    compiled = compile_saga(saga)
    known = {
        ("state", False): set(SagaState),
        ("state", True): set(Phase),
        ("trigger", False): set(SagaTrigger),
        ("trigger", True): set(Event),
    }
    for kind, step, part in _names(compiled):
        assert step is None or step in compiled.by_name
        assert part in known[kind, step is not None], (kind, step, part)
    for t in compiled.transitions:
        assert parse_name(t.trigger)[0] == t.step


def test_the_compiled_sagas_use_the_whole_vocabulary() -> None:
    """No phase, event or saga trigger is left over: the enums are what the compiler builds."""
    used = {
        (kind, step is not None, part)
        for s in SAGAS
        for kind, step, part in _names(compile_saga(s))
    }
    assert {p for kind, step, p in used if kind == "state" and step} == set(Phase)
    assert {p for kind, step, p in used if kind == "state" and not step} == set(SagaState)
    assert {p for kind, step, p in used if kind == "trigger" and step} == set(Event)
    assert {p for kind, step, p in used if kind == "trigger" and not step} == set(SagaTrigger)


@pytest.mark.parametrize("saga", SAGAS, ids=lambda s: s.__name__)
def test_a_compiled_machine_holds_plain_strings(saga: type[Saga]) -> None:
    """Its names are str, not enum members: histories and reprs show them as names."""
    compiled = compile_saga(saga)
    names = [compiled.initial, *compiled.states, *compiled.terminal_states]
    for t in compiled.transitions:
        names += [t.trigger, t.source, t.dest, *t.requires]
    assert {type(name) for name in names} == {str}
    assert repr(compiled.transitions[0]).startswith("Transition(trigger='start', ")


def test_a_step_plan_has_a_trigger_per_event() -> None:
    """StepPlan.t_<event> is the step's trigger of that event."""
    plan = compile_saga(Chain).by_name["a"]
    for event in Event:
        assert getattr(plan, f"t_{event.value}") == plan.trigger(event) == f"a.{event.value}"


def test_the_terminal_states_are_defined_once() -> None:
    """The store's TERMINAL is the vocabulary's, and SagaStatus has exactly those values."""
    assert base.TERMINAL is TERMINAL
    assert set(TERMINAL_STATES) == TERMINAL == {s.value for s in SagaStatus}
    assert set(TERMINAL) < set(SAGA_STATES) == set(SagaState)
    for saga in SAGAS:
        assert set(compile_saga(saga).terminal_states) <= TERMINAL


def test_saga_status_of_a_chain_state() -> None:
    """A chain's step state is running, or compensating once its compensation began."""
    compiled = compile_saga(Chain)
    for state in compiled.states:
        step, phase = parse_name(state)
        if step is None:
            expected = state
        elif phase in (Phase.COMPENSATING, Phase.COMPENSATED, Phase.COMPENSATION_FAILED):
            expected = SagaState.COMPENSATING
        else:
            expected = SagaState.RUNNING
        assert saga_status(state) == expected
        assert type(saga_status(state)) is str


def test_the_idempotency_keys() -> None:
    """A context's keys are the vocabulary's: the action's, and the compensation's apart."""
    action = Context({}, {}, "run-1", "pay", 1)
    compensation = Context({}, {}, "run-1", "pay", 2, compensating=True)
    assert action.idempotency_key == idempotency_key("run-1", "pay") == "run-1:pay"
    assert compensation.idempotency_key == "run-1:pay:compensate"
    assert compensation.idempotency_key == idempotency_key("run-1", "pay", compensating=True)
    assert compensation.action_key == action.idempotency_key


def test_the_vocabulary_imports_nothing_from_statesaga() -> None:
    """It is the bottom layer."""
    tree = ast.parse((PACKAGE / "vocabulary.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0
            assert not (node.module or "").startswith("statesaga")
        elif isinstance(node, ast.Import):
            assert not any(alias.name.startswith("statesaga") for alias in node.names)


#: Where another module uses a word of the vocabulary in another sense: module -> word -> the
#: sense. Each entry must still be needed (the test below checks).
OTHER_SENSES: dict[str, dict[str, str]] = {
    "compiler/compiled.py": {
        "saga": "a key of to_dict()",
        "wait": "a key of to_dict() and a mark in the fingerprint",
    },
    "definition/wait.py": {"fail": "a wait's on_timeout value"},
    "compiler/edges.py": {"compensate": "a transition's kind"},
    "definition/step.py": {"compensate": "a Step field named in problems", "retry": "the same"},
    "__init__.py": {"signal": "the name of the function it exports"},
    "durable/__init__.py": {
        "start": "the name of the function it exports",
        "signal": "the same",
    },
    "messaging/inbox.py": {"failed": "an inbox message's status"},
    "observe/logs.py": {
        "saga": "a log field",
        "compensating": "a log field",
        "compensation_failed": "an observer hook's name",
    },
    "observe/collectors.py": {"saga": "a metric label"},
    "observe/metrics.py": {"saga": "a metric label", "wait": "a metric label"},
    "observe/registry.py": {"compensation_failed": "an observer hook's name"},
    "render/dot.py": {"compensate": "an edge's kind", "start": "a node's kind"},
    "render/graph.py": {
        "compensate": "an edge's kind",
        "start": "a node's kind",
        "compensating": "the legend's text for compensating edges",
    },
    "render/mermaid.py": {
        "compensate": "an edge's kind",
        "waiting": "a Mermaid class, named like the Node attribute it draws",
    },
    **{
        module: {"pending": "an outbox message's status"}
        for module in (
            "store/_sqlite_outbox.py",
            "store/base.py",
            "store/memory.py",
            "store/postgres.py",
        )
    },
}


def _spelled(tree: ast.AST, words: set[str]) -> Iterator[tuple[int, str]]:
    """(line, word) of each string constant in ``tree`` that is one of ``words``, leaving out
    docstrings (any bare string statement), ``Literal[...]`` arguments and ``__slots__``:
    those are text, types and attribute names, not values."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skipped.add(id(node.value))
        elif isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal":
            skipped.update(id(n) for n in ast.walk(node.slice))
        elif isinstance(node, ast.Assign) and any(
            getattr(target, "id", "") == "__slots__" for target in node.targets
        ):
            skipped.update(id(n) for n in ast.walk(node.value))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in words
            and id(node) not in skipped
        ):
            yield node.lineno, node.value


def test_no_other_module_spells_the_vocabulary() -> None:
    """Outside vocabulary.py, no string literal in statesaga is a state, phase, event, trigger,
    outcome or the saga region's name, except where a module means another sense of the word
    (``OTHER_SENSES``: an outbox status "pending", an edge kind "compensate", a hook named
    "compensation_failed"...). The command line modules (``cli*.py``) are left out: they move
    elsewhere separately."""
    words = {m.value for e in (SagaState, Phase, Event, SagaTrigger, Outcome) for m in e}
    words.add(SAGA_REGION)
    found: list[str] = []
    used: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module == "vocabulary.py" or module.startswith("cli"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = OTHER_SENSES.get(module, {})
        for line, word in _spelled(tree, words):
            if word in allowed:
                used.add((module, word))
            else:
                found.append(f"{module}:{line}: {word!r}")
    assert found == [], "use statesaga.vocabulary instead"
    stale = {(m, w) for m, senses in OTHER_SENSES.items() for w in senses} - used
    assert stale == set(), "no longer needed in OTHER_SENSES"
