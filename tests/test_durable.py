from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statesaga import Retry, Saga, SagaStatus, Step
from statesaga.context import Context
from statesaga.durable import resume
from statesaga.errors import DefinitionChangedError, RunExists
from statesaga.store import MemoryStore, StoreError, WriteConflict
from statesaga.store.base import StepRecord
from statesaga.store.sqlite import SQLiteStore
from statesaga.testing import FakeClock

calls: list[tuple[str, str]] = []
gate: dict[str, asyncio.Event] = {}


async def act(ctx: Context) -> dict[str, Any]:
    calls.append((ctx.step, ctx.idempotency_key))
    if ctx.step in gate:
        await gate[ctx.step].wait()
    return {"done": ctx.step}


async def undo(ctx: Context) -> None:
    calls.append((f"undo-{ctx.step}", ctx.idempotency_key))
    if f"undo-{ctx.step}" in gate:
        await gate[f"undo-{ctx.step}"].wait()


async def boom(ctx: Context) -> None:
    raise RuntimeError("boom")


class Three(Saga):
    steps = (
        Step("a", act, compensate=undo),
        Step("b", act, compensate=undo),
        Step("c", act, compensate=undo),
    )


class Failing(Saga):
    steps = (Step("a", act, compensate=undo), Step("b", act, compensate=undo), Step("c", boom))


class Diamond(Saga):
    steps = (
        Step("a", act, compensate=undo),
        Step("b", act, compensate=undo, depends_on="a"),
        Step("c", act, compensate=undo, depends_on="a"),
        Step("d", boom, depends_on=["b", "c"]),
    )


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    gate.clear()
    flaky_until.clear()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds (fails the test after ``seconds``)."""
    for _ in range(int(seconds / 0.001)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def cancel_twice(task: asyncio.Task[Any]) -> None:
    """Abandon a run at once, as a dying process would: two cancellations."""
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def abandon(saga: Saga, store: MemoryStore, saga_id: str, *, at: str) -> None:
    """Start a durable run and abandon it (two cancellations) while ``at`` is blocked."""
    gate[at] = asyncio.Event()
    task = asyncio.create_task(saga.execute(store=store, saga_id=saga_id))
    await until(lambda: any(step == at and key.startswith(saga_id) for step, key in calls))
    await cancel_twice(task)
    del gate[at]


@pytest.mark.parametrize("url", ["memory", "sqlite"])
async def test_a_step_row_keeps_its_last_error_through_retries_and_compensation(
    url: str, tmp_path: Path
) -> None:
    """A retried step that then succeeds keeps the error of its failed attempt, as does its
    compensation's start; the failing step's row holds its own error."""
    attempts: dict[str, int] = {}

    async def flaky(ctx: Context) -> None:
        attempts[ctx.step] = ctx.attempt
        if ctx.attempt == 1:
            raise ValueError("not yet")

    class Flaky(Saga):
        steps = (
            Step("a", flaky, compensate=undo, retry=Retry(attempts=2, delay=0)),
            Step("b", boom),
        )

    store = MemoryStore() if url == "memory" else SQLiteStore(tmp_path / "runs.db")
    async with store:
        result = await Flaky().execute(store=store, saga_id="e1", clock=FakeClock())
        snap = await store.load("e1")
    assert result.status is SagaStatus.COMPENSATED
    assert snap.steps["a"] == StepRecord("a", "compensated", 1, {}, "ValueError: not yet")
    assert snap.steps["b"] == StepRecord("b", "failed", 1, None, "RuntimeError: boom")


async def test_a_resumed_run_keeps_a_steps_last_error_like_an_uninterrupted_one() -> None:
    """A compensation that failed once and then worked keeps its error, whether the retry came
    in the same process or from a resume (reopen)."""
    fails: dict[str, int] = {"one": 1, "two": 2}

    async def undo_failing(ctx: Context) -> None:
        if fails[ctx.saga_id] > 0:
            fails[ctx.saga_id] -= 1
            raise ValueError("undo failed")

    class Undo(Saga):
        steps = (
            Step("a", act, compensate=undo_failing, compensate_retry=Retry(attempts=2, delay=0)),
            Step("b", boom),
        )

    store = MemoryStore()
    await Undo().execute(store=store, saga_id="one", clock=FakeClock())
    first = await Undo().execute(store=store, saga_id="two", clock=FakeClock())
    assert first.status is SagaStatus.FAILED
    second = await resume(store, "two", saga=Undo, clock=FakeClock())
    assert second.status is SagaStatus.COMPENSATED
    one = (await store.load("one")).steps["a"]
    two = (await store.load("two")).steps["a"]
    assert one.phase == two.phase == "compensated"
    assert one.error == two.error == "ValueError: undo failed"


async def test_durable_run_records_everything() -> None:
    """A durable run stores its status, steps with results, and its whole history."""
    store = MemoryStore()
    result = await Three(x=1).execute(store=store, saga_id="r1")
    snap = await store.load("r1")
    assert snap.run.status == "completed"
    assert snap.run.input == {"x": 1}
    assert snap.run.saga == "Three"
    assert snap.run.saga_path.endswith(":Three")
    assert snap.steps["b"] == StepRecord("b", "succeeded", 1, {"done": "b"}, None)
    assert [t.trigger for t in snap.history] == [h.trigger for h in result.history]
    assert [t.seq for t in snap.history] == list(range(1, len(snap.history) + 1))


async def test_step_is_recorded_running_before_it_is_called() -> None:
    """Write-ahead: when an action runs, the store already shows it running."""
    store = MemoryStore()
    seen: dict[str, Any] = {}

    async def look(ctx: Context) -> None:
        snap = await store.load(ctx.saga_id)
        seen["phase"] = snap.steps[ctx.step].phase
        seen["a"] = snap.steps["a"].result

    S = type("Look", (Saga,), {"steps": (Step("a", act), Step("b", look))})
    await S().execute(store=store, saga_id="w1")
    assert seen == {"phase": "running", "a": {"done": "a"}}


async def test_resume_reruns_the_interrupted_step_only() -> None:
    """A run abandoned mid-step resumes: done steps are not re-run, the running one is."""
    store = MemoryStore()
    await abandon(Three(), store, "r2", at="b")
    assert (await store.load("r2")).steps["b"].phase == "running"
    first_key = dict(calls)["b"]
    calls.clear()
    result = await resume(store, "r2")
    assert result.status is SagaStatus.COMPLETED
    assert calls == [("b", first_key), ("c", "r2:c")]
    assert result.completed_steps == ("a", "b", "c")
    retry = [h for h in result.history if h.trigger == "b.retry"]
    assert [h.attempt for h in retry] == [2]


async def test_resume_finishes_owed_compensations() -> None:
    """A run abandoned while compensating resumes its compensation."""
    store = MemoryStore()
    await abandon(Failing(), store, "r3", at="undo-b")
    assert (await store.load("r3")).run.status == "compensating"
    calls.clear()
    result = await resume(store, "r3")
    assert result.status is SagaStatus.COMPENSATED
    assert [c for c, _ in calls] == ["undo-b", "undo-a"]
    assert result.compensated_steps == ("b", "a")


async def test_resume_dag_compensates_a_step_that_was_running_beside_a_failure() -> None:
    """A DAG step running when a sibling failed and the process died is compensated."""
    store = MemoryStore()
    gate["c"] = asyncio.Event()

    async def failing_b(ctx: Context) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("b failed")

    S = type(
        "Side",
        (Saga,),
        {
            "steps": (
                Step("a", act, compensate=undo),
                Step("b", failing_b, depends_on="a"),
                Step("c", act, compensate=undo, depends_on="a"),
            )
        },
    )
    task = asyncio.create_task(S().execute(store=store, saga_id="r4"))
    await until(
        lambda: (
            "r4" in store._runs
            and store._steps["r4"].get("b", StepRecord("b", "", 0)).phase == "failed"
        )
    )
    await cancel_twice(task)
    calls.clear()
    result = await resume(store, "r4", saga=S)
    assert result.status is SagaStatus.COMPENSATED
    assert sorted(c for c, _ in calls) == ["undo-a", "undo-c"]
    assert "c.interrupt" in [h.trigger for h in result.history]


async def test_resume_of_finished_run_returns_its_result() -> None:
    """Resuming a finished run runs nothing and reports how it ended."""
    store = MemoryStore()
    await Failing().execute(store=store, saga_id="r5")
    calls.clear()
    result = await resume(store, "r5")
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "c"
    assert result.error is not None
    assert "boom" in str(result.error)
    assert calls == []


async def test_changed_definition_is_refused_with_both_fingerprints() -> None:
    """A run whose saga changed is not resumed unless explicitly allowed."""
    store = MemoryStore()
    await abandon(Three(), store, "r6", at="b")
    changed = type("Three", (Saga,), {"steps": (*Three.steps, Step("d", act))})
    with pytest.raises(DefinitionChangedError) as info:
        await resume(store, "r6", saga=changed)
    stored = (await store.load("r6")).run.fingerprint
    assert stored in str(info.value)
    assert info.value.current in str(info.value)
    result = await resume(store, "r6", saga=changed, allow_changed_definition=True)
    assert result.status is SagaStatus.COMPLETED


async def test_corrupt_run_is_reported_and_others_still_resume() -> None:
    """An unknown step or impossible state gives a StoreError naming the run."""
    store = MemoryStore()
    await abandon(Three(), store, "bad", at="b")
    await abandon(Three(), store, "good", at="b")
    store._steps["bad"]["ghost"] = StepRecord("ghost", "running", 1)
    with pytest.raises(StoreError, match="run bad is corrupt: it records unknown step 'ghost'"):
        await resume(store, "bad")
    assert (await resume(store, "good")).status is SagaStatus.COMPLETED


async def test_impossible_state_is_corrupt() -> None:
    """A machine state that does not exist is reported as corruption."""
    store = MemoryStore()
    await abandon(Three(), store, "odd", at="b")
    run = store._runs["odd"]
    import attrs

    store._runs["odd"] = attrs.evolve(run, config={"saga": "b.exploded"})
    with pytest.raises(StoreError, match="run odd is corrupt"):
        await resume(store, "odd")


async def test_takeover_makes_the_old_driver_stop() -> None:
    """When another worker takes the run over, the first driver's next write conflicts."""
    store = MemoryStore()
    gate["b"] = asyncio.Event()
    task = asyncio.create_task(Three().execute(store=store, saga_id="t1"))
    await until(lambda: any(step == "b" for step, _ in calls))
    await store.acquire("t1", "someone-else", expires=1e12, now=1e12)  # lease long expired
    gate["b"].set()
    with pytest.raises(WriteConflict, match="t1"):
        await task
    assert "c" not in [step for step, _ in calls]


async def test_result_that_cannot_be_stored_fails_the_step_in_doubt() -> None:
    """A durable step returning non-JSON data is in doubt: compensated, not stored."""

    async def odd(ctx: Context) -> dict[str, object]:
        return {"when": object()}

    S = type(
        "Odd",
        (Saga,),
        {"steps": (Step("a", act, compensate=undo), Step("b", odd, compensate=undo))},
    )
    result = await S().execute(store=MemoryStore())
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps == ("b", "a")
    assert "JSON" in str(result.error)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_input_that_cannot_be_stored_is_refused_before_any_step(
    backend: str, tmp_path: Path
) -> None:
    """Non-JSON input to a durable run raises StoreError and runs nothing."""
    from statesaga.store.sqlite import SQLiteStore

    store = MemoryStore() if backend == "memory" else SQLiteStore(tmp_path / "runs.db")
    async with store:
        with pytest.raises(StoreError, match="JSON"):
            await Three(when=object()).execute(store=store)
    assert calls == []


async def test_durable_dag_with_fake_clock_compensates() -> None:
    """A durable DAG run compensates in reverse dependency order."""
    store = MemoryStore()
    result = await Diamond().execute(store=store, clock=FakeClock())
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps[-1] == "a"
    snap = await store.load(result.saga_id)
    assert snap.run.status == "compensated"


async def test_run_finished_by_another_worker_meanwhile_is_reported() -> None:
    """If a run finishes between load and acquire, resume reports it and runs nothing."""
    store = MemoryStore()
    await abandon(Three(), store, "race", at="b")
    stale = await store.load("race")
    assert (await resume(store, "race")).status is SagaStatus.COMPLETED
    calls.clear()
    original = store.load

    async def load_stale(run_id: str) -> Any:
        store.load = original  # type: ignore[method-assign]
        return stale

    store.load = load_stale  # type: ignore[method-assign]
    result = await resume(store, "race")
    assert result.status is SagaStatus.COMPLETED
    assert calls == []


async def test_resumed_halted_dag_finishes_the_step_that_was_running() -> None:
    """Past the pivot, a sibling running when the process died is re-run, then the run halts."""
    store = MemoryStore()
    gate["d"] = asyncio.Event()
    P = type(
        "PastPivot",
        (Saga,),
        {
            "steps": (
                Step("a", act, compensate=undo),
                Step("p", act, pivot=True, depends_on="a"),
                Step("c", boom, depends_on="p"),
                Step("d", act, depends_on="p"),
            )
        },
    )
    task = asyncio.create_task(P().execute(store=store, saga_id="h1"))
    await until(
        lambda: (
            "h1" in store._steps
            and store._steps["h1"].get("c", StepRecord("c", "", 0)).phase == "failed"
        )
    )
    await cancel_twice(task)
    del gate["d"]
    calls.clear()
    result = await resume(store, "h1", saga=P)
    assert result.status is SagaStatus.FAILED
    assert [step for step, _ in calls] == ["d"]
    assert (await store.load("h1")).steps["d"].phase == "succeeded"


async def test_a_run_driven_here_cannot_be_resumed_here_twice() -> None:
    """resume() refuses a run this process is already driving (no double calls)."""
    from statesaga.store import LeaseHeld

    store = MemoryStore()
    gate["b"] = asyncio.Event()
    task = asyncio.create_task(Three().execute(store=store, saga_id="d1"))
    await until(lambda: any(step == "b" for step, _ in calls))
    with pytest.raises(LeaseHeld):
        await resume(store, "d1")
    gate["b"].set()
    assert (await task).status is SagaStatus.COMPLETED
    assert [step for step, _ in calls].count("b") == 1


async def test_leases_use_wall_clock_time_even_with_a_fake_clock() -> None:
    """A run driven with FakeClock still holds a live lease in real time."""
    import time

    store = MemoryStore()
    gate["b"] = asyncio.Event()
    task = asyncio.create_task(Three().execute(store=store, saga_id="c1", clock=FakeClock()))
    await until(lambda: any(step == "b" for step, _ in calls))
    assert store._runs["c1"].lease_expires > time.time()
    assert await store.unfinished(time.time()) == []
    gate["b"].set()
    await task


def test_lease_keeper_renews_in_each_new_event_loop() -> None:
    """A keeper whose first loop was closed starts a renewer in the next loop."""
    from statesaga.durable.leases import LeaseKeeper

    keeper = LeaseKeeper(MemoryStore())
    first = asyncio.new_event_loop()

    async def hold(run_id: str) -> asyncio.Task[None] | None:
        keeper.hold(run_id)
        return keeper._task

    first_task = first.run_until_complete(hold("x"))
    first.close()
    second = asyncio.new_event_loop()
    second_task = second.run_until_complete(hold("y"))
    assert second_task is not first_task
    assert second_task is not None
    assert second_task.get_loop() is second
    second_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        second.run_until_complete(second_task)
    second.close()


async def test_abandoned_resume_leaves_the_run_resumable_not_compensated() -> None:
    """resume(abandon_on_cancel=True) stops at once on cancel and releases the lease."""
    store = MemoryStore()
    await abandon(Three(), store, "k1", at="b")
    gate["b"] = asyncio.Event()
    calls.clear()
    task = asyncio.create_task(resume(store, "k1", abandon_on_cancel=True))
    await until(lambda: any(step == "b" for step, _ in calls))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = await store.load("k1")
    assert snap.run.status == "running"
    assert snap.run.lease_owner is None
    assert not any(step.startswith("undo") for step, _ in calls)


@pytest.mark.parametrize("shape", ["chain", "dag"])
async def test_failed_compensation_is_retried_when_the_run_is_resumed(shape: str) -> None:
    """A run FAILED by a compensation is reopened by resume: only that one is retried."""
    from statesaga.testing import fail_step

    store = MemoryStore()
    S = Failing if shape == "chain" else Diamond
    with fail_step("b", compensation=True):
        first = await S().execute(store=store, saga_id=f"f-{shape}", clock=FakeClock())
    assert first.status is SagaStatus.FAILED
    assert set(first.compensation_errors) == {"b"}
    calls.clear()
    again = await resume(store, f"f-{shape}", clock=FakeClock())
    assert again.status is SagaStatus.COMPENSATED
    assert [step for step, _ in calls] == ["undo-b"]
    assert again.compensation_errors == {}
    assert (await store.load(f"f-{shape}")).run.status == "compensated"
    triggers = [h.trigger for h in again.history]
    assert "reopen" in triggers


flaky_until: dict[str, int] = {}


async def settle(ctx: Context) -> dict[str, Any]:
    """Fails while ``flaky_until[step]`` is above the call count (a service that is down)."""
    calls.append((ctx.step, ctx.idempotency_key))
    if flaky_until.get(ctx.step, 0) > 0:
        flaky_until[ctx.step] -= 1
        raise ConnectionError(f"{ctx.step}: service down")
    return {"done": ctx.step}


class Halts(Saga):
    steps = (
        Step("a", act, compensate=undo),
        Step("p", act, pivot=True),
        Step("s", settle, retry=Retry(attempts=2, delay=0)),
    )


class HaltsDag(Saga):
    steps = (
        Step("a", act, compensate=undo),
        Step("p", act, pivot=True, depends_on="a"),
        Step("s", settle, depends_on="p", retry=Retry(attempts=2, delay=0)),
        Step("t", act, depends_on="s"),
    )


@pytest.mark.parametrize("saga", [Halts, HaltsDag])
async def test_a_run_failed_past_the_pivot_is_pushed_forward_by_resume(saga: type[Saga]) -> None:
    """Resume runs the halted step again (same key, attempts continued), then goes on."""
    store = MemoryStore()
    flaky_until["s"] = 2  # both attempts fail: the run halts
    first = await saga().execute(store=store, saga_id="halt-1")
    assert first.status is SagaStatus.FAILED
    assert first.failed_step == "s"
    assert first.compensated_steps == ()
    calls.clear()
    again = await resume(store, "halt-1", saga=saga)
    assert again.status is SagaStatus.COMPLETED
    assert again.failed_step is None
    assert again.error is None
    assert calls[0] == ("s", "halt-1:s")  # a and p are not run again
    assert "a" not in [step for step, _ in calls]
    triggers = [(h.trigger, h.attempt) for h in again.history]
    assert ("s.push_forward", 0) in triggers
    assert ("s.retry", 3) in triggers
    assert (await store.load("halt-1")).run.status == "completed"


async def test_a_pushed_run_that_fails_again_is_failed_again() -> None:
    """If the cause is not fixed, the run ends failed once more, with the new error."""
    store = MemoryStore()
    flaky_until["s"] = 5
    assert (await Halts().execute(store=store, saga_id="halt-2")).status is SagaStatus.FAILED
    again = await resume(store, "halt-2", saga=Halts)
    assert again.status is SagaStatus.FAILED
    assert again.failed_step == "s"
    assert "service down" in str(again.error)
    assert flaky_until["s"] == 1  # two more attempts were made
    flaky_until.clear()
    assert (await resume(store, "halt-2", saga=Halts)).status is SagaStatus.COMPLETED


async def test_a_pivot_with_an_unknown_outcome_is_run_again_by_resume() -> None:
    """A pivot that timed out halts the run; resume calls it again with the same key."""
    tries = 0

    async def slow_pivot(ctx: Context) -> None:
        nonlocal tries
        tries += 1
        calls.append((ctx.step, ctx.idempotency_key))
        if tries == 1:
            await asyncio.sleep(1)

    class Doubt(Saga):
        steps = (Step("a", act, compensate=undo), Step("p", slow_pivot, pivot=True, timeout=0.01))

    store = MemoryStore()
    first = await Doubt().execute(store=store, saga_id="doubt")
    assert first.status is SagaStatus.FAILED
    again = await resume(store, "doubt", saga=Doubt)
    assert again.status is SagaStatus.COMPLETED
    assert [c for c in calls if c[0] == "p"] == [("p", "doubt:p"), ("p", "doubt:p")]


async def test_a_pushed_pivot_still_in_doubt_never_compensates() -> None:
    """A pivot whose first outcome is unknown halts again if the pushed try raises."""
    tries = 0

    async def pivot(ctx: Context) -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            await asyncio.sleep(1)  # times out: its effect may exist
        raise ConnectionError("gateway still down")

    class Doubt(Saga):
        steps = (Step("a", act, compensate=undo), Step("p", pivot, pivot=True, timeout=0.01))

    store = MemoryStore()
    assert (await Doubt().execute(store=store, saga_id="d2")).status is SagaStatus.FAILED
    again = await resume(store, "d2", saga=Doubt)
    assert again.status is SagaStatus.FAILED
    assert again.compensated_steps == ()
    assert ("undo-a", "d2:a:compensate") not in calls
    assert "p.time_out" in [h.trigger for h in again.history][-3:]


async def test_push_forward_on_sqlite_through_the_cli(tmp_path: Any) -> None:
    """`statesaga runs resume RUN_ID` pushes a halted run forward on SQLite."""
    from helpers import run_cli

    from statesaga.store.sqlite import SQLiteStore

    path = tmp_path / "runs.db"
    flaky_until["s"] = 2
    async with SQLiteStore(path) as store:
        first = await Halts().execute(store=store, saga_id="cli-halt")
    assert first.status is SagaStatus.FAILED
    tests = str(Path(__file__).parent)  # where the CLI imports this module's saga from
    done = run_cli(
        "runs", "resume", "cli-halt", "--store", f"sqlite:///{path}", env={"PYTHONPATH": tests}
    )
    assert done.returncode == 0, done.stderr
    assert "cli-halt: completed" in done.stdout


async def test_workers_never_push_a_failed_run_forward() -> None:
    """A worker leaves a run that failed past its pivot alone: a person decides."""
    from statesaga.durable import drive_stored
    from statesaga.worker import Worker

    store = MemoryStore()
    flaky_until["s"] = 2
    assert (await Halts().execute(store=store, saga_id="halt-3")).status is SagaStatus.FAILED
    assert await Worker(store).run_once() == []
    left = await drive_stored(
        store,
        "halt-3",
        saga=Halts,
        allow_changed_definition=False,
        clock=None,
        abandon_on_cancel=True,
    )
    assert left is None
    assert (await store.load("halt-3")).run.status == "failed"


async def test_reopen_works_on_sqlite(tmp_path: Any) -> None:
    """Reopening a failed run leases and commits it on SQLite too."""
    from statesaga.store.sqlite import SQLiteStore
    from statesaga.testing import fail_step

    async with SQLiteStore(tmp_path / "runs.db") as store:
        with fail_step("b", compensation=True):
            first = await Failing().execute(store=store, saga_id="sq", clock=FakeClock())
        assert first.status is SagaStatus.FAILED
        again = await resume(store, "sq", clock=FakeClock())
        assert again.status is SagaStatus.COMPENSATED
        assert (await store.load("sq")).run.status == "compensated"


async def test_reusing_a_run_id_is_refused_before_any_step_runs() -> None:
    """A second run with an existing id fails at its first commit, before any action, with
    an error that says what to do, raised from ``execute`` rather than deep in the store."""
    store = MemoryStore()
    await Three().execute(store=store, saga_id="dup")
    calls.clear()
    with pytest.raises(RunExists, match=r"'dup' already exists.*new id.*resume") as raised:
        await Three().execute(store=store, saga_id="dup")
    assert calls == []
    assert isinstance(raised.value, StoreError)
    assert raised.value.run_id == "dup"
    frames = [f.name for f in traceback.extract_tb(raised.value.__traceback__)]
    assert frames[-1] == "start", frames  # not the store's insert


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_start_refuses_a_taken_id_before_returning_a_handle(
    backend: str, tmp_path: Path
) -> None:
    """``start()`` under an id the store holds raises ``RunExists`` itself: no handle comes
    back through which the other run could be signalled or cancelled."""
    store = MemoryStore() if backend == "memory" else SQLiteStore(tmp_path / "runs.db")
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(store, SQLiteStore):
            await stack.enter_async_context(store)
        await Three().execute(store=store, saga_id="taken")
        before = await store.load("taken")
        calls.clear()
        with pytest.raises(RunExists, match="'taken' already exists"):
            await Three().start(store=store, saga_id="taken")
        assert calls == []
        assert await store.load("taken") == before


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_reusing_the_id_of_a_running_run_leaves_that_run_alone(
    backend: str, tmp_path: Path
) -> None:
    """Starting a run under the id of one this process is driving is refused, and the run
    already there keeps its lease: it goes on and completes."""
    store = MemoryStore() if backend == "memory" else SQLiteStore(tmp_path / "runs.db")
    gate, entered = asyncio.Event(), asyncio.Event()

    async def held(ctx: Context) -> None:
        entered.set()
        await gate.wait()

    class Gated(Saga):
        steps = (Step("held", held), Step("after", held))

    async with contextlib.AsyncExitStack() as stack:
        if isinstance(store, SQLiteStore):
            await stack.enter_async_context(store)
        first = asyncio.create_task(Gated().execute(store=store, saga_id="busy"))
        await entered.wait()
        with pytest.raises(RunExists):
            await Gated().execute(store=store, saga_id="busy")
        assert (await store.load("busy")).run.lease_owner is not None
        gate.set()
        assert (await first).status is SagaStatus.COMPLETED


async def test_a_pivot_pushed_after_the_deadline_is_run_again() -> None:
    """The saga's deadline stops nothing a person pushes forward: the pivot runs again."""
    tries = 0

    async def slow_pivot(ctx: Context) -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            await asyncio.sleep(1)  # times out: in doubt, the run halts

    class Late(Saga):
        deadline = 0.05
        steps = (Step("a", act, compensate=undo), Step("p", slow_pivot, pivot=True, timeout=0.01))

    store = MemoryStore()
    assert (await Late().execute(store=store, saga_id="late")).status is SagaStatus.FAILED
    await asyncio.sleep(0.06)  # the deadline has passed
    again = await resume(store, "late", saga=Late)
    assert again.status is SagaStatus.COMPLETED
    assert tries == 2


@pytest.mark.parametrize("bad", ["", "   ", 42])
async def test_a_saga_id_must_be_a_non_empty_string(bad: Any) -> None:
    """An empty (or non-string) ``saga_id`` is refused when ``execute``/``start`` is called,
    rather than silently replaced by a generated one."""
    calls.clear()
    with pytest.raises(ValueError, match=r"saga_id=.*non-empty string"):
        Three().execute(saga_id=bad, store=MemoryStore())
    with pytest.raises(ValueError, match=r"saga_id=.*non-empty string"):
        await Three().start(saga_id=bad)
    assert calls == []
