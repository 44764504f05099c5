"""Waits in memory: a step that waits for a signal or its timeout, signals through the handle."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import pytest

from statesaga import (
    InvalidSagaError,
    RunHandle,
    Saga,
    SagaDeadlineError,
    SagaStatus,
    SignalRefused,
    Step,
    Wait,
    WaitTimeoutError,
    compile_saga,
)
from statesaga.context import Context
from statesaga.errors import StoreError

CALLS: list[str] = []


async def reserve(ctx: Context) -> dict[str, Any]:
    CALLS.append("reserve")
    return {"held": True}


async def release(ctx: Context) -> None:
    CALLS.append("release")


async def ship(ctx: Context) -> dict[str, Any]:
    CALLS.append("ship")
    return {"amount": ctx.results["paid"].get("amount")}


async def charge(ctx: Context) -> None:
    CALLS.append("charge")


async def boom(ctx: Context) -> None:
    CALLS.append("boom")
    raise RuntimeError("boom")


class Booking(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=30),
        Step("ship", ship),
    )


class ShortWait(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid", timeout=0.02),
        Step("ship", ship),
    )


class Sleep(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("cooling_off", timeout=timedelta(milliseconds=20), on_timeout="continue"),
        Step("charge", charge),
    )


class AfterPivot(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", charge, pivot=True),
        Wait("paid", timeout=0.02),
        Step("ship", ship),
    )


class WaitForever(Saga):
    steps = (Step("reserve", reserve, compensate=release), Wait("paid"), Step("ship", ship))


class Deadline(Saga):
    deadline = 0.03
    steps = (Step("reserve", reserve, compensate=release), Wait("paid"), Step("ship", ship))


class DagWait(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid"),
        Step("ship", ship, depends_on=["reserve", "paid"]),
    )


class DagSiblingFails(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("paid"),
        Step("boom", boom, depends_on="reserve"),
        Step("ship", ship, depends_on=["boom", "paid"]),
    )


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.clear()


async def _waiting(run: RunHandle) -> None:
    """Let the run reach its wait."""
    for _ in range(20):
        await asyncio.sleep(0)


# -- the definition ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"action": reserve}, "a Wait has no action"),
        ({"compensate": release}, "a Wait has no compensation"),
        ({"timeout": -1}, "a wait's timeout must be a positive number"),
        ({"timeout": math.nan}, "a wait's timeout must be a positive number"),
        ({"timeout": 0}, "a wait's timeout must be a positive number"),
        ({"on_timeout": "retry"}, "on_timeout='retry': use 'fail'"),
        ({"on_timeout": "continue"}, "on_timeout='continue' needs a timeout"),
        ({"pivot": True}, "a Wait cannot be the pivot"),
        ({"depends_on": 3}, "depends_on must be a step name"),
    ],
)
def test_a_bad_wait_is_refused_naming_the_problem(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidSagaError) as caught:

        class Bad(Saga):
            steps = (Step("reserve", reserve), Wait("paid", **kwargs))

    assert says in str(caught.value)
    assert "'paid'" in str(caught.value)


def test_a_wait_named_like_a_step_is_refused() -> None:
    with pytest.raises(InvalidSagaError, match="used by more than one step"):

        class Bad(Saga):
            steps = (Step("paid", reserve), Wait("paid"))


def test_a_wait_compiles_to_its_own_states_and_transitions() -> None:
    c = compile_saga(Booking)
    assert {"paid.waiting", "paid.succeeded", "paid.failed"} <= set(c.states)
    assert "paid.running" not in c.states
    assert "paid.in_doubt" not in c.states
    edges = {(t.trigger, t.source, t.dest) for t in c.transitions if t.step == "paid"}
    assert edges == {
        ("paid.wait", "reserve.succeeded", "paid.waiting"),
        ("paid.signal", "paid.waiting", "paid.succeeded"),
        ("paid.time_out", "paid.waiting", "paid.failed"),
        ("paid.fail", "paid.waiting", "paid.failed"),
    }
    sleep = {(t.trigger, t.dest) for t in compile_saga(Sleep).transitions}
    assert ("cooling_off.time_out", "cooling_off.succeeded") in sleep
    assert compile_saga(Booking).to_dict()["steps"][1]["wait"] is True


def test_a_wait_in_a_dag_joins_like_a_step() -> None:
    c = compile_saga(DagWait)
    start = next(t for t in c.transitions if t.trigger == "ship.start")
    assert set(start.requires) == {"running", "reserve.succeeded", "paid.succeeded"}

    class Model:
        state: str

    model = Model()
    c.machine(model)  # the transitions library accepts it
    model.trigger("start")  # type: ignore[attr-defined]
    model.trigger("reserve.start")  # type: ignore[attr-defined]
    model.trigger("paid.wait")  # type: ignore[attr-defined]
    model.trigger("paid.signal")  # type: ignore[attr-defined]
    assert "run/paid/succeeded" in model.state


def test_sagas_without_waits_keep_their_fingerprints() -> None:
    """Stored runs of sagas that have no wait stay resumable across this change."""

    class Chain(Saga):
        steps = (Step("reserve", reserve, compensate=release), Step("ship", ship, pivot=True))

    class Dag(Saga):
        steps = (
            Step("x", reserve, compensate=release),
            Step("y", ship),
            Step("z", ship, depends_on=["x", "y"]),
        )

    class Changed(Saga):
        steps = (Step("reserve", reserve, compensate=release), Wait("ship"))

    assert compile_saga(Dag).fingerprint == "cec86f197e54f503"
    assert compile_saga(Chain).fingerprint != compile_saga(Changed).fingerprint


# -- signals -------------------------------------------------------------------------------


async def test_a_signal_completes_the_wait_with_its_payload() -> None:
    run = await Booking().start()
    await _waiting(run)
    assert CALLS == ["reserve"]
    assert await run.signal("paid", {"amount": 42}) is True
    result = await run.result()
    assert result.status == SagaStatus.COMPLETED
    assert result.completed_steps == ("reserve", "paid", "ship")
    assert result.results["paid"] == {"amount": 42}
    assert result.results["ship"] == {"amount": 42}
    triggers = [entry.trigger for entry in result.history]
    assert triggers[3:5] == ["paid.wait", "paid.signal"]


async def test_a_signal_before_the_wait_is_kept_until_the_run_gets_there() -> None:
    run = await Booking().start()
    assert await run.signal("paid") is True  # the run has not reached its wait yet
    result = await run.result()
    assert result.status == SagaStatus.COMPLETED
    assert result.results["paid"] == {}


async def test_a_repeated_signal_id_is_a_duplicate_never_applied_twice() -> None:
    run = await WaitForever().start()
    assert await run.signal("paid", {"amount": 1}, signal_id="pay-1") is True
    assert await run.signal("paid", {"amount": 1}, signal_id="pay-1") is False
    with pytest.raises(SignalRefused, match="already used with another event or payload"):
        await run.signal("paid", {"amount": 2}, signal_id="pay-1")
    result = await run.result()
    assert result.results["paid"] == {"amount": 1}


async def test_a_second_signal_for_one_wait_is_refused() -> None:
    run = await WaitForever().start()
    await run.signal("paid", {"amount": 1})
    with pytest.raises(SignalRefused, match="already signalled") as caught:
        await run.signal("paid", {"amount": 2})
    assert caught.value.run_id == run.saga_id
    assert (await run.result()).results["paid"] == {"amount": 1}


async def test_signals_the_run_cannot_take_are_refused_with_the_reason() -> None:
    run = await WaitForever().start()
    with pytest.raises(SignalRefused, match="has no wait for it \\(its waits: paid\\)"):
        await run.signal("shipped")
    with pytest.raises(SignalRefused, match="has no wait for it"):
        await run.signal("reserve")  # a step, not a wait
    with pytest.raises(SignalRefused, match="not a mapping"):
        await run.signal("paid", ["amount"])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="signal payload"):
        await run.signal("paid", {"when": object()})
    await run.signal("paid")
    await run.result()
    with pytest.raises(SignalRefused, match="the run has finished: it is completed"):
        await run.signal("paid")


async def test_a_refused_payload_is_not_delivered() -> None:
    run = await WaitForever().start()
    await _waiting(run)
    with pytest.raises(StoreError):
        await run.signal("paid", {"bad": {1: "int key"}})
    assert await run.signal("paid", {"good": 1}) is True
    assert (await run.result()).results["paid"] == {"good": 1}


# -- timeouts, deadline, cancellation -------------------------------------------------------


async def test_a_wait_that_times_out_fails_and_the_run_is_compensated() -> None:
    result = await (await ShortWait().start()).result()
    assert result.status == SagaStatus.COMPENSATED
    assert result.failed_step == "paid"
    assert isinstance(result.error, WaitTimeoutError)
    assert "waited 0.02 s for 'paid'" in str(result.error)
    assert result.compensated_steps == ("reserve",)
    assert CALLS == ["reserve", "release"]


async def test_a_signal_after_the_timeout_is_refused() -> None:
    run = await ShortWait().start()
    await run.result()
    with pytest.raises(SignalRefused):
        await run.signal("paid")


async def test_on_timeout_continue_is_a_durable_sleep() -> None:
    result = await Sleep().execute()
    assert result.status == SagaStatus.COMPLETED
    assert result.results["cooling_off"] == {}
    assert [e.trigger for e in result.history if e.trigger.startswith("cooling_off.")] == [
        "cooling_off.wait",
        "cooling_off.time_out",
    ]


async def test_a_wait_after_the_pivot_that_times_out_halts_the_run() -> None:
    result = await AfterPivot().execute()
    assert result.status == SagaStatus.FAILED
    assert result.failed_step == "paid"
    assert result.compensated_steps == ()
    assert "release" not in CALLS


async def test_the_saga_deadline_ends_a_wait_before_the_pivot() -> None:
    result = await Deadline().execute()
    assert result.status == SagaStatus.COMPENSATED
    assert result.failed_step == "paid"
    assert isinstance(result.error, SagaDeadlineError)
    assert "passed its deadline of 0.03 s while it waited for 'paid'" in str(result.error)
    assert CALLS == ["reserve", "release"]


async def test_cancelling_a_waiting_run_compensates_it() -> None:
    run = await WaitForever().start()
    await _waiting(run)
    result = await run.cancel()
    assert result.status == SagaStatus.COMPENSATED
    assert result.failed_step == "paid"
    assert result.compensated_steps == ("reserve",)
    assert "cancelled while it waited" in str(result.error)


async def test_cancelling_the_caller_of_result_leaves_the_run_waiting() -> None:
    run = await WaitForever().start()
    waiting = asyncio.ensure_future(run.result())
    await _waiting(run)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await run.signal("paid")
    assert (await run.result()).status == SagaStatus.COMPLETED


# -- DAGs -----------------------------------------------------------------------------------


async def test_a_wait_in_a_dag_runs_beside_its_siblings() -> None:
    run = await DagWait().start()
    await _waiting(run)
    assert CALLS == ["reserve"]
    await run.signal("paid", {"amount": 3})
    result = await run.result()
    assert result.status == SagaStatus.COMPLETED
    assert set(result.completed_steps) == {"reserve", "paid", "ship"}


async def test_a_sibling_failing_gives_the_wait_up() -> None:
    result = await asyncio.wait_for((await DagSiblingFails().start()).result(), 5)
    assert result.status == SagaStatus.COMPENSATED
    assert result.failed_step == "boom"
    assert result.compensated_steps == ("reserve",)
    given_up = [e for e in result.history if e.trigger == "paid.fail"]
    assert len(given_up) == 1


async def test_a_signal_after_cancel_is_refused() -> None:
    run = await WaitForever().start()
    await _waiting(run)
    cancelling = asyncio.ensure_future(run.cancel())
    await asyncio.sleep(0)  # the cancellation is asked for
    with pytest.raises(SignalRefused, match="asked to stop"):
        await run.signal("paid")
    assert (await cancelling).status == SagaStatus.COMPENSATED
