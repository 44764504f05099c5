"""Conditional steps: ``Step(..., when=predicate)``, skipped as a transition of the machine."""

from __future__ import annotations

from typing import Any

import pytest

from statesaga import InvalidSagaError, Saga, SagaStatus, Step, compile_saga
from statesaga.context import Context

CALLS: list[str] = []


async def act(ctx: Context) -> dict[str, Any]:
    CALLS.append(ctx.step)
    return {"seen": sorted(ctx.results)}


async def undo(ctx: Context) -> None:
    CALLS.append(f"undo:{ctx.step}")


async def boom(ctx: Context) -> None:
    CALLS.append(ctx.step)
    raise RuntimeError("boom")


def is_large(ctx: Context) -> bool:
    return bool(ctx.data["amount"] > 1000)


def raises(ctx: Context) -> bool:
    raise KeyError("no amount")


def not_a_bool(ctx: Context) -> bool:
    return "yes"  # type: ignore[return-value]


class Trade(Saga):
    steps = (
        Step("reserve", act, compensate=undo),
        Step("review", act, compensate=undo, when=is_large),
        Step("execute", act),
    )


class TradeThenFail(Saga):
    steps = (
        Step("reserve", act, compensate=undo),
        Step("review", act, compensate=undo, when=is_large),
        Step("fail", boom),
    )


class DagTrade(Saga):
    steps = (
        Step("reserve", act, compensate=undo),
        Step("review", act, compensate=undo, when=is_large, depends_on="reserve"),
        Step("execute", act, depends_on=["review"]),
    )


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.clear()


@pytest.mark.parametrize("saga", [Trade, DagTrade])
async def test_a_false_condition_skips_the_step_and_the_rest_runs(saga: type[Saga]) -> None:
    result = await saga(amount=10).execute()
    assert result.status == SagaStatus.COMPLETED
    assert result.skipped_steps == ("review",)
    assert result.completed_steps == ("reserve", "execute")
    assert "review" not in result.results  # later steps see no result for it
    assert result.results["execute"] == {"seen": ["reserve"]}
    assert CALLS == ["reserve", "execute"]
    assert "review.skip" in [e.trigger for e in result.history]


@pytest.mark.parametrize("saga", [Trade, DagTrade])
async def test_a_true_condition_runs_the_step(saga: type[Saga]) -> None:
    result = await saga(amount=5000).execute()
    assert result.status == SagaStatus.COMPLETED
    assert result.skipped_steps == ()
    assert CALLS == ["reserve", "review", "execute"]


async def test_a_skipped_step_is_never_compensated() -> None:
    result = await TradeThenFail(amount=10).execute()
    assert result.status == SagaStatus.COMPENSATED
    assert result.compensated_steps == ("reserve",)
    assert CALLS == ["reserve", "fail", "undo:reserve"]
    ran = await TradeThenFail(amount=5000).execute()
    assert ran.compensated_steps == ("review", "reserve")


@pytest.mark.parametrize(("condition", "says"), [(raises, "no amount"), (not_a_bool, "str")])
async def test_a_condition_that_raises_fails_the_step_without_retries(
    condition: Any, says: str
) -> None:
    class Bad(Saga):
        steps = (
            Step("reserve", act, compensate=undo),
            Step("review", act, when=condition),
            Step("execute", act),
        )

    result = await Bad(amount=1).execute()
    assert result.status == SagaStatus.COMPENSATED
    assert result.failed_step == "review"
    assert says in str(result.error)
    assert CALLS == ["reserve", "undo:reserve"]


def test_the_machine_has_the_skipped_state_and_its_edges() -> None:
    c = compile_saga(Trade)
    assert "review.skipped" in c.states
    edges = {(t.trigger, t.source, t.dest) for t in c.transitions}
    assert ("review.skip", "reserve.succeeded", "review.skipped") in edges
    assert ("execute.start", "review.skipped", "execute.running") in edges
    assert ("execute.start", "review.succeeded", "execute.running") in edges
    assert c.to_dict()["steps"][1]["when"].endswith("is_large")
    dag = compile_saga(DagTrade)
    start = next(t for t in dag.transitions if t.trigger == "execute.start")
    assert start.requires_any == (("review.succeeded", "review.skipped"),)


def test_a_condition_is_part_of_the_fingerprint() -> None:
    class Plain(Saga):
        name = "Trade"
        steps = (
            Step("reserve", act, compensate=undo),
            Step("review", act, compensate=undo),
            Step("execute", act),
        )

    assert compile_saga(Plain).fingerprint != compile_saga(Trade).fingerprint


@pytest.mark.parametrize(
    ("when", "pivot", "says"),
    [
        ("yes", False, "when must be a function of the context"),
        (act, False, "when must be a plain function"),
        (is_large, True, "the pivot cannot be conditional"),
    ],
)
def test_a_bad_condition_is_refused(when: Any, pivot: bool, says: str) -> None:
    with pytest.raises(InvalidSagaError, match=says):

        class Bad(Saga):
            steps = (Step("reserve", act, when=when, pivot=pivot),)


async def test_the_transitions_machine_follows_a_skip() -> None:
    class Model:
        state: str

    model = Model()
    compile_saga(DagTrade).machine(model)
    for trigger in ("start", "reserve.start", "reserve.succeed"):
        model.trigger(trigger)  # type: ignore[attr-defined]
    assert model.trigger("execute.start") is False  # type: ignore[attr-defined]  # review not done
    for trigger in ("review.skip", "execute.start"):
        model.trigger(trigger)  # type: ignore[attr-defined]
    assert "run/execute/running" in model.state


async def test_compensation_steps_over_a_skipped_step_in_a_chain() -> None:
    class Long(Saga):
        steps = (
            Step("a", act, compensate=undo),
            Step("b", act, compensate=undo, when=is_large),
            Step("c", act, compensate=undo),
            Step("d", boom),
        )

    result = await Long(amount=1).execute()
    assert result.status == SagaStatus.COMPENSATED
    assert result.compensated_steps == ("c", "a")
    assert ("a.compensate", "c.compensated", "a.compensating") in {
        (t.trigger, t.source, t.dest) for t in compile_saga(Long).transitions
    }


def test_diagrams_draw_the_skip_with_its_condition() -> None:
    from statesaga.render import dot_of, mermaid_of

    chain = mermaid_of(Trade)
    assert "s_reserve__succeeded --> s_review__skipped : skip (not is_large)" in chain
    assert "s_reserve__succeeded --> s_review__running : start (if is_large)" in chain
    assert "s_review__skipped --> s_execute__running : start" in chain
    assert "s_review__skipped --> s_compensating" not in chain  # cancelling between steps
    dag = mermaid_of(DagTrade)
    assert "s_review__skipped --> s_execute__running : ⋔" in dag  # the join takes a skip too
    assert "skip (not is_large)" in dot_of(DagTrade)
