from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pytest

from statesaga import InvalidSagaError, NonRetryableError, Retry, Saga, Step
from statesaga.definition import validate_steps


async def act(ctx: object) -> None:
    """A no-op action."""


async def undo(ctx: object) -> None:
    """A no-op compensation."""


def sync_action(ctx: object) -> None:
    """Not async."""


def problems_of(steps: object) -> list[str]:
    with pytest.raises(InvalidSagaError) as info:
        validate_steps("S", steps)
    return [str(p) for p in info.value.problems]


def test_valid_saga_class_is_accepted() -> None:
    """A well-formed saga class is created without error and keeps its steps."""

    class Fine(Saga):
        steps = (Step("a", act, compensate=undo), Step("b", act))

    assert [s.name for s in Fine.steps] == ["a", "b"]
    assert Fine.name == "Fine"


def test_errors_are_raised_when_the_class_is_defined() -> None:
    """A broken saga fails at class definition, not at run time."""
    with pytest.raises(InvalidSagaError, match="more than one"):

        class Broken(Saga):
            steps = (Step("a", act), Step("a", act))


def test_all_problems_are_reported_together() -> None:
    """Every problem appears in one error, each naming its step."""
    found = problems_of(
        (
            Step("a", act),
            Step("a", act),
            Step("b", sync_action),  # type: ignore[arg-type]
            Step("c", act, retry=Retry(attempts=0)),
            Step("d", act, timeout=-1),
        )
    )
    assert any("'a'" in p and "more than one" in p for p in found)
    assert any("'b'" in p and "not async" in p for p in found)
    assert any("'c'" in p and "attempts" in p for p in found)
    assert any("'d'" in p and "timeout" in p for p in found)


def test_unknown_dependency_is_reported_as_unknown_not_as_cycle() -> None:
    """depends_on naming a missing step says 'unknown', not 'cycle'."""
    found = problems_of((Step("a", act, depends_on="ghost"),))
    assert found == ["step 'a': depends_on names unknown step 'ghost'"]


def test_cycle_names_the_steps_in_it() -> None:
    """A dependency cycle is reported with the steps that form it."""
    found = problems_of(
        (
            Step("a", act, depends_on="c"),
            Step("b", act, depends_on="a"),
            Step("c", act, depends_on="b"),
            Step("d", act),
        )
    )
    assert len(found) == 1
    assert "cycle" in found[0]
    for name in "abc":
        assert name in found[0]
    assert "a -> b -> c -> a" in found[0]
    assert "d ->" not in found[0]


def test_self_dependency_is_rejected() -> None:
    """A step may not depend on itself."""
    assert any("itself" in p for p in problems_of((Step("a", act, depends_on="a"),)))


def test_non_async_compensation_is_rejected() -> None:
    """A compensation must be async too."""
    found = problems_of((Step("a", act, compensate=sync_action),))  # type: ignore[arg-type]
    assert any("compensate" in p and "not async" in p for p in found)


def test_non_callable_action_is_rejected() -> None:
    """An action that is not callable is named with its type."""
    found = problems_of((Step("a", "nope"),))  # type: ignore[arg-type]
    assert any("str" in p for p in found)


def test_async_callable_object_and_partial_are_accepted() -> None:
    """Objects with an async __call__ and partials of async functions are actions."""
    import functools

    class Callable:
        async def __call__(self, ctx: object) -> None:
            return None

    validate_steps("S", (Step("a", Callable()), Step("b", functools.partial(act))))


def test_empty_saga_is_rejected() -> None:
    """A saga with no steps is an error."""
    with pytest.raises(InvalidSagaError, match="no steps"):

        class Empty(Saga):
            steps = ()


def test_missing_steps_attribute_is_rejected() -> None:
    """A saga class without steps is an error unless declared abstract."""
    with pytest.raises(InvalidSagaError, match="no steps"):

        class NoSteps(Saga):
            pass

    class Base(Saga, abstract=True):
        pass

    class Concrete(Base):
        steps = (Step("a", act),)

    assert Concrete.steps[0].name == "a"


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a.b", "a b", "_hidden", "x" * 101, "for"])
def test_names_that_cannot_be_state_names_are_rejected(name: str) -> None:
    """Step names must be identifiers that can name states."""
    found = problems_of((Step(name, act),))
    assert any(repr(name) in p for p in found)


def test_non_step_item_is_rejected() -> None:
    """Every item in steps must be a Step."""
    found = problems_of((Step("a", act), act))
    assert any("steps[1]" in p for p in found)


def test_compensation_after_pivot_is_rejected() -> None:
    """A step after the pivot may not have a compensation."""
    found = problems_of(
        (
            Step("a", act, compensate=undo),
            Step("p", act, pivot=True),
            Step("c", act, compensate=undo),
        )
    )
    assert found == [
        "step 'c': has a compensation but runs after pivot 'p', where nothing is compensated: "
        "remove compensate= (use retry= to push it forward)"
    ]


def test_pivot_with_compensation_is_rejected() -> None:
    """A pivot is the point of no return: it has no compensation."""
    found = problems_of((Step("p", act, pivot=True, compensate=undo),))
    assert any("pivot" in p and "'p'" in p for p in found)


def test_dag_step_unrelated_to_pivot_is_rejected() -> None:
    """In a DAG, every step must run before or after the pivot."""
    found = problems_of(
        (
            Step("a", act),
            Step("p", act, pivot=True, depends_on="a"),
            Step("side", act, depends_on="a"),
        )
    )
    assert found == [
        "step 'side': neither runs before nor after pivot 'p': make it depend on the pivot, "
        "or make the pivot depend on it"
    ]


def test_timeout_accepts_timedelta() -> None:
    """A timedelta timeout is stored in seconds."""
    assert Step("a", act, timeout=timedelta(milliseconds=1500)).timeout == 1.5


def test_depends_on_accepts_step_objects_and_a_single_name() -> None:
    """depends_on takes names, Step objects or one name."""
    a = Step("a", act)
    assert Step("b", act, depends_on=[a, "c"]).depends_on == ("a", "c")
    assert Step("b", act, depends_on="a").depends_on == ("a",)


@pytest.mark.parametrize(
    ("retry", "text"),
    [
        (Retry(attempts=0), "attempts"),
        (Retry(delay=-1), "delay"),
        (Retry(backoff=0.5), "backoff"),
        (Retry(jitter=2), "jitter"),
        (Retry(retry_on=(int,)), "retry_on"),  # type: ignore[arg-type]
    ],
)
def test_bad_retry_settings_are_reported(retry: Retry, text: str) -> None:
    """Unusable Retry settings are reported against their step."""
    found = problems_of((Step("a", act, retry=retry),))
    assert any("'a'" in p and text in p for p in found)


def test_bad_compensate_retry_is_reported() -> None:
    """compensate_retry is checked like retry."""
    found = problems_of((Step("a", act, compensate=undo, compensate_retry=Retry(attempts=0)),))
    assert any("compensate_retry" in p for p in found)


def test_retry_backoff_doubles_and_is_capped() -> None:
    """Delays start at 0.1 s, double, and never exceed max_delay."""
    retry = Retry(attempts=10, jitter=0, max_delay=0.5)
    assert [retry.delay_before(n, 0.0) for n in range(2, 7)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_retry_jitter_shortens_delay_within_bounds() -> None:
    """Jitter takes at most its fraction off a delay."""
    retry = Retry(delay=1.0, jitter=0.25)
    assert retry.delay_before(2, 0.0) == 1.0
    assert retry.delay_before(2, 0.999) == pytest.approx(0.75, abs=1e-3)


def test_retry_decision_honours_attempts_filter_and_non_retryable() -> None:
    """should_retry stops at attempts, on NonRetryableError and outside retry_on."""
    retry = Retry(attempts=3, retry_on=(ConnectionError,))
    assert retry.should_retry(ConnectionError(), 1)
    assert not retry.should_retry(ConnectionError(), 3)
    assert not retry.should_retry(ValueError(), 1)
    assert not Retry(attempts=3).should_retry(NonRetryableError("no"), 1)


def test_instance_keeps_its_input() -> None:
    """SagaClass(**data) keeps the data, and instances share nothing."""

    class S(Saga):
        steps = (Step("a", act),)

    one, two = S(order_id="1", items=[1]), S(order_id="2", items=[2])
    assert one.data == {"order_id": "1", "items": [1]}
    assert two.data["order_id"] == "2"
    assert "order_id='1'" in repr(one)


def test_error_message_lists_every_problem() -> None:
    """The error's text names the saga and each problem on its own line."""
    with pytest.raises(InvalidSagaError) as info:
        validate_steps("Orders", (Step("a", act, depends_on="x"), Step("b", act, timeout=0)))
    text = str(info.value)
    assert text.startswith("saga 'Orders' has 2 problems:")
    assert text.count("\n  - ") == 2


def test_the_saga_region_name_is_reserved() -> None:
    """A step cannot be called 'saga': the saga's own region uses the name."""
    found = problems_of((Step("saga", act), Step("b", act, depends_on="saga")))
    assert any("reserved" in p for p in found)


@pytest.mark.parametrize(
    "retry",
    [
        Retry(delay="1"),  # type: ignore[arg-type]
        Retry(backoff=None),  # type: ignore[arg-type]
        Retry(jitter="x"),  # type: ignore[arg-type]
        Retry(delay=float("nan")),
        Retry(max_delay=float("nan")),
        Retry(attempts=True),
    ],
)
def test_retry_settings_of_the_wrong_type_are_listed_not_raised(retry: Retry) -> None:
    """Bad Retry values are problems in the one error, beside the others."""
    found = problems_of((Step("a", act, retry=retry), Step("a", act)))
    assert any("Retry(" in p for p in found)
    assert any("more than one" in p for p in found)


def test_boolean_timeout_is_rejected() -> None:
    """timeout=True is not a number of seconds."""
    assert any("timeout" in p for p in problems_of((Step("a", act, timeout=True),)))


def test_retry_delay_never_overflows() -> None:
    """A very late retry waits max_delay, not an OverflowError."""
    assert Retry(attempts=5000, jitter=0, max_delay=2.0).delay_before(1100, 0.0) == 2.0


async def agen(ctx: object) -> Any:
    """An async generator: it yields instead of returning."""
    yield {}


class AsyncGenCall:
    """An object whose __call__ is an async generator."""

    async def __call__(self, ctx: object) -> Any:
        yield {}


@pytest.mark.parametrize("value", [None, 1])
def test_depends_on_of_the_wrong_type_is_listed_not_raised(value: object) -> None:
    """depends_on=None or 1 is a problem in the one error, naming the step, beside the others."""
    bad = Step("b", act, depends_on=value)  # type: ignore[arg-type]
    found = problems_of((bad, Step("b", act)))
    assert any(
        p.startswith("step 'b': depends_on must be a step name or a sequence of step names, not ")
        and repr(value) in p
        for p in found
    )
    assert any("more than one" in p for p in found)


def test_depends_on_holding_a_non_name_says_which_value() -> None:
    """depends_on=['a', 1] names the value that is not a step name."""
    bad = Step("b", act, depends_on=["a", 1])  # type: ignore[list-item]
    found = problems_of((Step("a", act), bad))
    assert any(p.startswith("step 'b': depends_on") and "1 (int)" in p for p in found)


@pytest.mark.parametrize("name", [None, 7, ["a"]])
def test_step_name_of_the_wrong_type_is_listed_not_raised(name: object) -> None:
    """A step name that is not a string is a problem in the one error, beside the others."""
    found = problems_of((Step(name, act), Step("a", act), Step("a", act)))  # type: ignore[arg-type]
    assert any("steps[0]" in p and repr(name) in p and "not a string" in p for p in found)
    assert any("more than one" in p for p in found)


@pytest.mark.parametrize("value", [None, 1, "ValueError"])
def test_retry_on_of_the_wrong_type_is_listed_not_raised(value: object) -> None:
    """Retry(retry_on=None, 1 or a string) is a problem in the one error, not a TypeError."""
    retry = Retry(retry_on=value)  # type: ignore[arg-type]
    found = problems_of((Step("a", act, retry=retry), Step("a", act)))
    assert any(
        "step 'a': retry: Retry(retry_on=" in p and "exception type or a tuple" in p for p in found
    )
    assert any("more than one" in p for p in found)


def test_pivot_that_is_not_a_bool_is_rejected() -> None:
    """pivot='no' is not silently taken as True."""
    found = problems_of((Step("a", act, pivot="no"),))  # type: ignore[arg-type]
    assert found == ["step 'a': pivot must be True or False, not 'no'"]


@pytest.mark.parametrize(
    ("fn", "label"),
    [
        (agen, "agen"),
        (functools.partial(agen), "agen"),
        (AsyncGenCall(), "AsyncGenCall"),
    ],
    ids=["function", "partial", "callable-object"],
)
@pytest.mark.parametrize("role", ["action", "compensate"])
def test_async_generator_is_refused_for_what_it_is(fn: Any, label: str, role: str) -> None:
    """An async generator is refused as one (use return, not yield), not as 'not async'."""
    step = Step("a", fn) if role == "action" else Step("a", act, compensate=fn)
    (problem,) = problems_of((step,))
    assert problem.startswith(f"step 'a': {role} {label}")
    assert "async generator" in problem
    assert "'return'" in problem
    assert "not async" not in problem


@pytest.mark.parametrize("name", [123, "", "../x", "a.b", "_x", "x" * 101])
def test_unusable_saga_name_is_rejected(name: object) -> None:
    """A saga's name follows the rule for step names (also when compiled after a change)."""
    with pytest.raises(InvalidSagaError) as info:
        validate_steps(name, (Step("a", act),))  # type: ignore[arg-type]
    assert [str(p) for p in info.value.problems] == [
        f"name {name!r} cannot name the saga: set the class attribute name to a Python "
        "identifier that starts with a letter (letters, digits, underscores; at most 100 "
        "characters)"
    ]


def test_saga_name_is_checked_when_the_class_is_defined_with_the_other_problems() -> None:
    """A bad saga name is listed in the one error raised at class definition, with step problems."""
    with pytest.raises(InvalidSagaError) as info:

        class Named(Saga):
            name = "../x"
            steps = (Step("a", act), Step("a", act))

    found = [str(p) for p in info.value.problems]
    assert len(found) == 2
    assert found[0].startswith("name '../x' cannot name the saga")
    assert "more than one" in found[1]


def test_default_saga_name_from_an_unusable_class_name_is_rejected() -> None:
    """A class name that cannot name the saga (a leading underscore) asks for name = ..."""
    with pytest.raises(InvalidSagaError, match="set the class attribute name"):

        class _Private(Saga):
            steps = (Step("a", act),)
