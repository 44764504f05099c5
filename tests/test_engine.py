from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from statesaga import (
    InvalidResultError,
    NonRetryableError,
    Retry,
    Saga,
    SagaStatus,
    Step,
    StepTimeoutError,
)
from statesaga.context import Context
from statesaga.testing import FakeClock, InjectedFault, fail_step

Fn = Callable[[Context], Awaitable[Any]]


class Ledger:
    """Records what actions and compensations did, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.contexts: list[Context] = []

    def do(self, name: str, result: Any = None) -> Fn:
        async def action(ctx: Context) -> Any:
            self.contexts.append(ctx)
            self.events.append(("do", name))
            return result

        return action

    def undo(self, name: str) -> Fn:
        async def compensate(ctx: Context) -> None:
            self.contexts.append(ctx)
            self.events.append(("undo", name))

        return compensate

    def fail(self, name: str, error: BaseException | None = None) -> Fn:
        async def action(ctx: Context) -> None:
            self.contexts.append(ctx)
            self.events.append(("fail", name))
            raise error or RuntimeError(f"{name} failed")

        return action

    def hang(self, name: str) -> Fn:
        async def action(ctx: Context) -> None:
            self.events.append(("do", name))
            await asyncio.Event().wait()

        return action

    def of(self, kind: str) -> list[str]:
        return [name for k, name in self.events if k == kind]


def saga(*steps: Step, name: str = "TestSaga") -> type[Saga]:
    return type(name, (Saga,), {"steps": steps})


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


async def test_success_runs_steps_in_written_order(ledger: Ledger) -> None:
    """A chain runs its steps in the order written and completes."""
    S = saga(*(Step(n, ledger.do(n), compensate=ledger.undo(n)) for n in "abcd"))
    result = await S(x=1).execute()
    assert result.status is SagaStatus.COMPLETED
    assert result.status == "completed"
    assert result.completed_steps == ("a", "b", "c", "d")
    assert result.compensated_steps == ()
    assert result.failed_step is None
    assert result.error is None
    assert ledger.of("do") == ["a", "b", "c", "d"]
    assert ledger.of("undo") == []
    assert isinstance(result.saga_id, str)
    assert result.saga_id
    assert result.duration >= 0


async def test_results_are_passed_on_and_none_becomes_empty_mapping(ledger: Ledger) -> None:
    """Later steps see earlier results; a step returning None appears as {}."""
    seen: dict[str, Any] = {}

    async def last(ctx: Context) -> dict[str, int]:
        seen.update(ctx.results)
        return {"total": ctx.results["a"]["n"] + 1}

    S = saga(Step("a", ledger.do("a", {"n": 41})), Step("b", ledger.do("b")), Step("c", last))
    result = await S().execute()
    assert seen == {"a": {"n": 41}, "b": {}}
    assert result.results == {"a": {"n": 41}, "b": {}, "c": {"total": 42}}


async def test_context_carries_data_ids_step_and_attempt(ledger: Ledger) -> None:
    """ctx has the input, run id, step name, 1-based attempt and an idempotency key."""
    S = saga(Step("a", ledger.do("a")), Step("b", ledger.do("b")))
    result = await S(order_id="O-1").execute(saga_id="run-7")
    assert result.saga_id == "run-7"
    a, b = ledger.contexts
    assert a.data == {"order_id": "O-1"}
    assert (a.saga_id, a.step, a.attempt) == ("run-7", "a", 1)
    assert b.step == "b"
    assert a.idempotency_key != b.idempotency_key
    assert "run-7" in a.idempotency_key


async def test_failure_compensates_succeeded_steps_in_reverse(ledger: Ledger) -> None:
    """A failed step stops the saga and compensates the earlier steps last-first."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("b", ledger.do("b"), compensate=ledger.undo("b")),
        Step("c", ledger.fail("c"), compensate=ledger.undo("c")),
        Step("d", ledger.do("d"), compensate=ledger.undo("d")),
    )
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "c"
    assert isinstance(result.error, RuntimeError)
    assert result.completed_steps == ("a", "b")
    assert result.compensated_steps == ("b", "a")
    assert ledger.of("undo") == ["b", "a"]
    assert "d" not in ledger.of("do")


async def test_step_without_compensation_is_skipped_when_compensating(ledger: Ledger) -> None:
    """Steps that have no compensation are passed over; the others are still undone."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("b", ledger.do("b")),
        Step("c", ledger.fail("c")),
    )
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps == ("a",)


async def test_first_step_failure_compensates_nothing(ledger: Ledger) -> None:
    """When the first step raises, nothing took effect and the saga is compensated."""
    S = saga(Step("a", ledger.fail("a"), compensate=ledger.undo("a")), Step("b", ledger.do("b")))
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps == ()
    assert ledger.of("undo") == []


async def test_retries_keep_idempotency_key_and_back_off(ledger: Ledger, clock: FakeClock) -> None:
    """A retried step gets the same key, rising attempts and doubling delays."""
    S = saga(Step("a", ledger.do("a"), retry=Retry(attempts=4, jitter=0)))
    with fail_step("a", times=3):
        result = await S().execute(clock=clock)
    assert result.status is SagaStatus.COMPLETED
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])
    (ctx,) = ledger.contexts
    assert ctx.attempt == 4
    retried = [h for h in result.history if h.trigger == "a.retry"]
    assert [h.attempt for h in retried] == [2, 3, 4]


async def test_idempotency_key_is_stable_across_attempts(clock: FakeClock) -> None:
    """Every attempt of one step sees the same idempotency key."""
    keys: list[str] = []

    async def flaky(ctx: Context) -> None:
        keys.append(ctx.idempotency_key)
        if ctx.attempt < 3:
            raise ConnectionError("try again")

    result = await saga(Step("a", flaky, retry=Retry(attempts=3)))().execute(clock=clock)
    assert result.status is SagaStatus.COMPLETED
    assert len(keys) == 3
    assert len(set(keys)) == 1


async def test_exhausted_retries_fail_the_step(ledger: Ledger, clock: FakeClock) -> None:
    """After its last attempt a step fails and the saga compensates."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("b", ledger.fail("b"), retry=Retry(attempts=3)),
    )
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.COMPENSATED
    assert ledger.of("fail") == ["b", "b", "b"]
    assert len(clock.sleeps) == 2


async def test_non_retryable_error_stops_retrying_at_once(ledger: Ledger, clock: FakeClock) -> None:
    """NonRetryableError fails the step on its first attempt."""
    S = saga(Step("a", ledger.fail("a", NonRetryableError("card declined")), retry=Retry(5)))
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.COMPENSATED
    assert ledger.of("fail") == ["a"]
    assert clock.sleeps == []


async def test_retry_on_filters_which_errors_are_retried(ledger: Ledger, clock: FakeClock) -> None:
    """Errors outside retry_on are not retried."""
    retry = Retry(attempts=5, retry_on=(ConnectionError,))
    S = saga(Step("a", ledger.fail("a", ValueError("bad input")), retry=retry))
    await S().execute(clock=clock)
    assert ledger.of("fail") == ["a"]


async def test_no_retry_means_one_attempt(ledger: Ledger) -> None:
    """retry=None calls the action once."""
    await saga(Step("a", ledger.fail("a")))().execute()
    assert ledger.of("fail") == ["a"]


async def test_timed_out_step_is_compensated(ledger: Ledger) -> None:
    """A step that times out has an unknown outcome, so its compensation runs."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("b", ledger.hang("b"), compensate=ledger.undo("b"), timeout=0.01),
        Step("c", ledger.do("c")),
    )
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "b"
    assert isinstance(result.error, StepTimeoutError)
    assert result.error.step == "b"
    assert result.compensated_steps == ("b", "a")


async def test_timeouts_are_retried_like_errors(clock: FakeClock) -> None:
    """A timed-out attempt is retried when the step allows retries."""
    calls = []

    async def slow_then_fast(ctx: Context) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.Event().wait()

    S = saga(Step("a", slow_then_fast, timeout=0.01, retry=Retry(attempts=2)))
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.COMPLETED
    assert calls == [1, 2]


async def test_actions_own_timeout_error_is_an_ordinary_failure(ledger: Ledger) -> None:
    """A TimeoutError raised by the action itself means it failed, not that it timed out."""
    S = saga(
        Step(
            "a", ledger.fail("a", TimeoutError("upstream")), compensate=ledger.undo("a"), timeout=5
        )
    )
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert not isinstance(result.error, StepTimeoutError)
    assert result.compensated_steps == ()


async def test_non_mapping_result_fails_without_retry_and_is_compensated(
    ledger: Ledger, clock: FakeClock
) -> None:
    """An action returning a non-mapping fails at once, and since it ran, is compensated."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("b", ledger.do("b", 42), compensate=ledger.undo("b"), retry=Retry(attempts=3)),
    )
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.COMPENSATED
    assert ledger.of("do") == ["a", "b"]
    assert isinstance(result.error, InvalidResultError)
    assert "'b'" in str(result.error)
    assert "int" in str(result.error)
    assert result.compensated_steps == ("b", "a")


async def test_failed_compensation_is_retried_then_reported(
    ledger: Ledger, clock: FakeClock
) -> None:
    """A compensation gets three attempts by default, then the saga is FAILED."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("b", ledger.do("b"), compensate=ledger.fail("undo-b")),
        Step("c", ledger.fail("c")),
    )
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.FAILED
    assert ledger.of("fail") == ["c", "undo-b", "undo-b", "undo-b"]
    assert set(result.compensation_errors) == {"b"}
    assert result.compensated_steps == ("a",)  # the step b depends on is still compensated


async def test_compensate_retry_controls_compensation_attempts(
    ledger: Ledger, clock: FakeClock
) -> None:
    """compensate_retry sets how often a compensation is tried."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.fail("undo-a"), compensate_retry=Retry(5)),
        Step("b", ledger.fail("b")),
    )
    await S().execute(clock=clock)
    assert ledger.of("fail").count("undo-a") == 5


async def test_dag_independent_steps_run_concurrently() -> None:
    """Steps with no dependency between them run at the same time."""
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def meet(me: str, other: str) -> Fn:
        async def action(ctx: Context) -> None:
            started[me].set()
            await asyncio.wait_for(started[other].wait(), 1)

        return action

    async def root(ctx: Context) -> None:
        return None

    S = saga(
        Step("root", root),
        Step("a", meet("a", "b"), depends_on="root"),
        Step("b", meet("b", "a"), depends_on="root"),
    )
    result = await S().execute()
    assert result.status is SagaStatus.COMPLETED


async def test_dag_step_starts_as_soon_as_its_own_dependencies_succeed() -> None:
    """No level barrier: c (after fast b) starts while slow a is still running."""
    order: list[str] = []
    release = asyncio.Event()

    async def slow(ctx: Context) -> None:
        await release.wait()
        order.append("a-done")

    async def fast(ctx: Context) -> None:
        order.append("b-done")

    async def after_b(ctx: Context) -> None:
        order.append("c")
        release.set()

    S = saga(Step("a", slow), Step("b", fast, depends_on=()), Step("c", after_b, depends_on="b"))
    S2 = saga(Step("a", slow, depends_on=()), Step("b", fast), Step("c", after_b, depends_on=["b"]))
    for cls in (S, S2):
        order.clear()
        release.clear()
        result = await cls().execute()
        assert result.status is SagaStatus.COMPLETED
        assert order == ["b-done", "c", "a-done"]


async def test_dag_running_siblings_are_awaited_and_then_compensated(ledger: Ledger) -> None:
    """When a step fails, its running sibling finishes (not cancelled) and is compensated."""
    gate = asyncio.Event()

    async def slow(ctx: Context) -> None:
        await asyncio.sleep(0.01)
        ledger.events.append(("do", "slow"))

    async def boom(ctx: Context) -> None:
        raise RuntimeError("boom")

    S = saga(
        Step("root", ledger.do("root"), compensate=ledger.undo("root")),
        Step("slow", slow, compensate=ledger.undo("slow"), depends_on="root"),
        Step("boom", boom, depends_on="root"),
        Step("after", ledger.do("after"), depends_on=["slow", "boom"]),
    )
    result = await S().execute()
    assert not gate.is_set()
    assert result.status is SagaStatus.COMPENSATED
    assert ledger.of("do") == ["root", "slow"]
    assert ledger.of("undo") == ["slow", "root"]


async def test_dag_compensation_waits_for_dependants_and_runs_independent_ones_together() -> None:
    """A step is compensated after its dependants; independent compensations overlap."""
    log: list[str] = []
    both = {"b": asyncio.Event(), "c": asyncio.Event()}

    async def ok(ctx: Context) -> None:
        return None

    def undo(name: str, other: str | None = None) -> Fn:
        async def compensate(ctx: Context) -> None:
            log.append(f"start-{name}")
            if other:
                both[name].set()
                await asyncio.wait_for(both[other].wait(), 1)
            log.append(f"end-{name}")

        return compensate

    async def boom(ctx: Context) -> None:
        raise RuntimeError("boom")

    S = saga(
        Step("a", ok, compensate=undo("a")),
        Step("b", ok, compensate=undo("b", "c"), depends_on="a"),
        Step("c", ok, compensate=undo("c", "b"), depends_on="a"),
        Step("d", boom, depends_on=["b", "c"]),
    )
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert log[-2:] == ["start-a", "end-a"]
    assert set(result.compensated_steps) == {"a", "b", "c"}
    assert result.compensated_steps[-1] == "a"


async def test_failed_compensation_still_lets_its_dependencies_compensate(clock: FakeClock) -> None:
    """In a DAG, the compensations of the steps a failed compensation depends on still run."""
    undone: list[str] = []

    async def ok(ctx: Context) -> None:
        return None

    async def undo(ctx: Context) -> None:
        undone.append(ctx.step)

    async def broken(ctx: Context) -> None:
        raise RuntimeError("cannot undo")

    async def boom(ctx: Context) -> None:
        raise RuntimeError("boom")

    S = saga(
        Step("a", ok, compensate=undo),
        Step("b", ok, compensate=broken, depends_on="a"),
        Step("c", boom, depends_on="b"),
    )
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.FAILED
    assert undone == ["a"]
    assert list(result.compensation_errors) == ["b"]


async def test_pivot_failure_before_it_succeeds_compensates(ledger: Ledger) -> None:
    """A pivot that raises is like any failure before the point of no return."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("p", ledger.fail("p"), pivot=True),
        Step("c", ledger.do("c")),
    )
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps == ("a",)


async def test_failure_after_pivot_is_retried_forward_then_failed(
    ledger: Ledger, clock: FakeClock
) -> None:
    """After the pivot, steps retry forward; exhausting them leaves FAILED, nothing undone."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("p", ledger.do("p"), pivot=True),
        Step("c", ledger.fail("c"), retry=Retry(attempts=4)),
    )
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.FAILED
    assert result.failed_step == "c"
    assert ledger.of("fail") == ["c"] * 4
    assert ledger.of("undo") == []
    assert result.compensated_steps == ()
    assert result.history[-1].dest == "failed"


async def test_post_pivot_retry_can_succeed(ledger: Ledger, clock: FakeClock) -> None:
    """A post-pivot step that recovers within its retries completes the saga."""
    S = saga(Step("p", ledger.do("p"), pivot=True), Step("c", ledger.do("c"), retry=Retry(3)))
    with fail_step("c", times=2):
        result = await S().execute(clock=clock)
    assert result.status is SagaStatus.COMPLETED


async def test_pivot_with_unknown_outcome_leaves_failed(ledger: Ledger) -> None:
    """A pivot that times out is left for a person: FAILED, nothing compensated."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("p", ledger.hang("p"), pivot=True, timeout=0.01),
    )
    result = await S().execute()
    assert result.status is SagaStatus.FAILED
    assert isinstance(result.error, StepTimeoutError)
    assert ledger.of("undo") == []


async def test_dag_pivot_failure_after_it_leaves_failed(ledger: Ledger) -> None:
    """In a DAG, a descendant of the pivot that fails leaves the saga FAILED."""
    S = saga(
        Step("a", ledger.do("a"), compensate=ledger.undo("a")),
        Step("p", ledger.do("p"), pivot=True, depends_on="a"),
        Step("x", ledger.do("x"), depends_on="p"),
        Step("y", ledger.fail("y"), depends_on="p"),
    )
    result = await S().execute()
    assert result.status is SagaStatus.FAILED
    assert ledger.of("undo") == []
    assert "x" in result.completed_steps


async def test_concurrent_runs_share_nothing() -> None:
    """Many runs of one class at once each see only their own input and results."""

    async def echo(ctx: Context) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"id": ctx.data["n"], "prev": dict(ctx.results)}

    S = saga(Step("a", echo), Step("b", echo))
    results = await asyncio.gather(*(S(n=i).execute() for i in range(100)))
    for i, result in enumerate(results):
        assert result.results["a"]["id"] == i
        assert result.results["b"]["prev"] == {"a": {"id": i, "prev": {}}}
    assert len({r.saga_id for r in results}) == 100


async def test_history_records_every_transition_with_errors(ledger: Ledger) -> None:
    """The result's history walks the machine from pending to the final state."""
    S = saga(Step("a", ledger.do("a"), compensate=ledger.undo("a")), Step("b", ledger.fail("b")))
    result = await S().execute()
    triggers = [h.trigger for h in result.history]
    assert triggers == [
        "start",
        "a.start",
        "a.succeed",
        "b.start",
        "b.fail",
        "abort",
        "a.compensate",
        "a.compensation_done",
        "finish",
    ]
    assert result.history[0].source == "pending"
    assert result.history[-1].dest == "compensated"
    fail = result.history[4]
    assert fail.error == "RuntimeError: b failed"


async def test_injected_fault_error_class_and_instance(ledger: Ledger) -> None:
    """fail_step raises the given error class or instance."""
    S = saga(Step("a", ledger.do("a")))
    with fail_step("a", error=NonRetryableError):
        result = await S().execute()
    assert isinstance(result.error, NonRetryableError)
    boom = KeyError("x")
    with fail_step("a", error=boom):
        result = await S().execute()
    assert result.error is boom
    with fail_step("a"):
        result = await S().execute()
    assert isinstance(result.error, InjectedFault)
    assert ledger.of("do") == []


async def test_actions_may_use_asyncio_timeout_themselves() -> None:
    """An action's own asyncio.timeout still fires inside the run's task."""

    async def careful(ctx: Context) -> dict[str, bool]:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return {"gave_up_waiting": True}
        return {"gave_up_waiting": False}

    result = await saga(Step("a", careful))().execute()
    assert result.results["a"] == {"gave_up_waiting": True}


async def test_execute_works_under_asyncio_run_in_a_new_loop() -> None:
    """execute() is an ordinary coroutine: wait_for and create_task accept it."""
    S = saga(Step("a", Ledger().do("a")))
    result = await asyncio.wait_for(S().execute(), 5)
    assert result.status is SagaStatus.COMPLETED
    assert (await asyncio.create_task(S().execute())).status is SagaStatus.COMPLETED


async def test_earlier_timeout_keeps_step_in_doubt_after_later_errors(clock: FakeClock) -> None:
    """If one attempt timed out and the last one raised, the step is still compensated."""
    undone: list[str] = []

    async def charge(ctx: Context) -> None:
        if ctx.attempt == 1:
            await asyncio.Event().wait()  # times out: the charge may have gone through
        raise ConnectionError("gateway down")

    async def refund(ctx: Context) -> None:
        undone.append(ctx.step)

    S = saga(Step("charge", charge, compensate=refund, timeout=0.01, retry=Retry(attempts=2)))
    result = await S().execute(clock=clock)
    assert result.status is SagaStatus.COMPENSATED
    assert undone == ["charge"]
    retry = next(h for h in result.history if h.trigger == "charge.retry")
    assert retry.error is not None
    assert retry.error.startswith("StepTimeoutError")


async def test_action_raising_cancelled_error_itself_is_a_failure(ledger: Ledger) -> None:
    """A CancelledError an action raises on its own fails the step; the saga compensates."""

    async def confused(ctx: Context) -> None:
        raise asyncio.CancelledError

    S = saga(Step("a", ledger.do("a"), compensate=ledger.undo("a")), Step("b", confused))
    result = await S().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert isinstance(result.error, asyncio.CancelledError)
    assert ledger.of("undo") == ["a"]


def test_retry_on_accepts_a_single_exception_class() -> None:
    """Retry(retry_on=SomeError) means (SomeError,)."""
    assert Retry(retry_on=ConnectionError).retry_on == (ConnectionError,)


async def test_bare_chain_path_records_what_the_general_path_records() -> None:
    """The unobserved in-memory chain path takes exactly the transitions the general one does."""
    from statesaga.observe import Observer, observing

    ledger = Ledger()

    class Four(Saga):
        steps = (
            Step("a", ledger.do("a"), compensate=ledger.undo("a")),
            Step("b", ledger.do("b"), compensate=ledger.undo("b")),
            Step("c", ledger.do("c"), pivot=True),
            Step("d", ledger.do("d")),
        )

    def edges(result: Any) -> list[tuple[str, str, str, int]]:
        return [(h.trigger, h.source, h.dest, h.attempt) for h in result.history]

    bare = await Four().execute()
    with observing(Observer()):  # an observer sends every step through the general path
        general = await Four().execute()
    assert bare.status is general.status is SagaStatus.COMPLETED
    assert edges(bare) == edges(general)
    assert len(edges(bare)) == 10


async def test_outcome_unknown_is_retried_then_compensated() -> None:
    """An action raising OutcomeUnknownError is retried, and compensated if it finally fails."""
    from statesaga import OutcomeUnknownError

    ledger = Ledger()
    lost = OutcomeUnknownError("the gateway's reply was lost")

    class Pay(Saga):
        steps = (
            Step("reserve", ledger.do("reserve"), compensate=ledger.undo("reserve")),
            Step(
                "authorize",
                ledger.fail("authorize", lost),
                compensate=ledger.undo("authorize"),
                retry=Retry(attempts=2, delay=0),
            ),
        )

    result = await Pay().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is lost
    assert ledger.events == [
        ("do", "reserve"),
        ("fail", "authorize"),
        ("fail", "authorize"),
        ("undo", "authorize"),
        ("undo", "reserve"),
    ]
    assert [h.trigger for h in result.history if h.trigger.startswith("authorize.")][-3:] == [
        "authorize.time_out",
        "authorize.compensate",
        "authorize.compensation_done",
    ]


async def test_outcome_unknown_once_keeps_the_step_in_doubt() -> None:
    """An unknown outcome on an early attempt still puts the step in doubt if a later one fails."""
    from statesaga import OutcomeUnknownError

    ledger = Ledger()
    calls = 0

    async def flaky(ctx: Context) -> None:
        nonlocal calls
        calls += 1
        raise OutcomeUnknownError("lost") if calls == 1 else ValueError("declined")

    class Pay(Saga):
        steps = (
            Step("authorize", flaky, compensate=ledger.undo("authorize"), retry=Retry(2, delay=0)),
        )

    result = await Pay().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps == ("authorize",)
