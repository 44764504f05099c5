"""The observer protocol: which hooks a run calls, when, and that observers cannot break it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from pathlib import Path
from typing import Any

import pytest

from statesaga import Retry, Saga, SagaStatus, Step, resume
from statesaga.context import Context
from statesaga.observe import (
    OBSERVER_ERRORS,
    Observer,
    RunEvent,
    StepEvent,
    add_observer,
    observers,
    observing,
    remove_observer,
)
from statesaga.testing import FakeClock, fail_step

HOOKS = (
    "run_started",
    "run_finished",
    "run_suspended",
    "step_started",
    "step_succeeded",
    "step_retried",
    "step_failed",
    "step_timed_out",
    "compensation_started",
    "compensation_retried",
    "compensation_succeeded",
    "compensation_failed",
)


class Recorder(Observer):
    """Keeps every event with the hook it came through."""

    def __init__(self) -> None:
        self.events: list[tuple[str, RunEvent | StepEvent]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in HOOKS:
            return lambda event: self.events.append((name, event))
        return super().__getattribute__(name)

    def calls(self) -> list[str]:
        """Each event as ``hook`` or ``hook:step:attempt``."""
        out = []
        for hook, event in self.events:
            if isinstance(event, StepEvent):
                out.append(f"{hook}:{event.step}:{event.attempt}")
            else:
                out.append(hook)
        return out


async def ok(ctx: Context) -> None:
    return None


async def boom(ctx: Context) -> None:
    raise RuntimeError("boom")


class Chain(Saga):
    steps = (Step("a", ok, compensate=ok), Step("b", ok, compensate=ok))


class Failing(Saga):
    steps = (Step("a", ok, compensate=ok), Step("b", boom, compensate=ok))


class Flaky(Saga):
    steps = (Step("a", ok, compensate=ok, retry=Retry(attempts=3)),)


class BadUndo(Saga):
    steps = (
        Step("a", ok, compensate=boom, compensate_retry=Retry(attempts=2)),
        Step("b", boom),
    )


class Slow(Saga):
    steps = (Step("a", ok, compensate=ok), Step("b", ok, compensate=ok, timeout=0.01))


class Diamond(Saga):
    steps = (
        Step("a", ok, compensate=ok),
        Step("b", ok, compensate=ok, depends_on="a"),
        Step("c", ok, compensate=ok, depends_on="a"),
        Step("d", ok, depends_on=("b", "c")),
    )


@pytest.fixture
def recorder() -> Any:
    observer = Recorder()
    with observing(observer):
        yield observer


async def test_success_calls_run_and_step_hooks(recorder: Recorder) -> None:
    """A completed chain reports its start, each step's attempt and success, and its end."""
    result = await Chain().execute(saga_id="r1")
    assert result.status is SagaStatus.COMPLETED
    assert recorder.calls() == [
        "run_started",
        "step_started:a:1",
        "step_succeeded:a:1",
        "step_started:b:1",
        "step_succeeded:b:1",
        "run_finished",
    ]
    finished = recorder.events[-1][1]
    assert isinstance(finished, RunEvent)
    assert (finished.saga, finished.saga_id, finished.status) == ("Chain", "r1", "completed")
    assert finished.duration is not None
    assert finished.duration >= 0
    succeeded = recorder.events[2][1]
    assert isinstance(succeeded, StepEvent)
    assert succeeded.idempotency_key == "r1:a"
    assert succeeded.duration is not None


async def test_retry_reports_the_failed_attempt_then_the_next(recorder: Recorder) -> None:
    """A retried step reports the failed attempt with its error, then the new attempt."""
    with fail_step("a", times=1):
        result = await Flaky().execute(clock=FakeClock())
    assert result.status is SagaStatus.COMPLETED
    assert recorder.calls()[1:4] == ["step_started:a:1", "step_retried:a:1", "step_started:a:2"]
    retried = recorder.events[2][1]
    assert isinstance(retried, StepEvent)
    assert "injected failure" in str(retried.error)
    assert retried.duration is not None  # timed before the pause, not across it
    second = recorder.events[3][1]
    assert isinstance(second, StepEvent)
    assert second.error is None


async def test_compensation_hooks(recorder: Recorder) -> None:
    """A failed step is reported, then each compensation's start and success, in order."""
    result = await Failing().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert recorder.calls()[3:] == [
        "step_started:b:1",
        "step_failed:b:1",
        "compensation_started:a:1",
        "compensation_succeeded:a:1",
        "run_finished",
    ]
    done = recorder.events[-2][1]
    assert isinstance(done, StepEvent)
    assert done.compensating
    assert done.idempotency_key.endswith(":a:compensate")
    finished = recorder.events[-1][1]
    assert isinstance(finished, RunEvent)
    assert finished.status is SagaStatus.COMPENSATED
    assert finished.failed_step == "b"


async def test_failed_compensation_hooks(recorder: Recorder) -> None:
    """A compensation that gives up reports its retries and failure; the run ends FAILED."""
    result = await BadUndo().execute(clock=FakeClock())
    assert result.status is SagaStatus.FAILED
    assert recorder.calls()[-5:] == [
        "compensation_started:a:1",
        "compensation_retried:a:1",
        "compensation_started:a:2",
        "compensation_failed:a:2",
        "run_finished",
    ]


async def test_timeout_is_reported_as_timed_out(recorder: Recorder) -> None:
    """A step whose last attempt timed out goes through step_timed_out, not step_failed."""

    async def sleepy(ctx: Context) -> None:
        await asyncio.sleep(1)

    class Sleepy(Saga):
        steps = (Step("a", ok, compensate=ok), Step("b", sleepy, compensate=ok, timeout=0.01))

    result = await Sleepy().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert "step_timed_out:b:1" in recorder.calls()
    assert "step_failed:b:1" not in recorder.calls()


async def test_dag_reports_every_step(recorder: Recorder) -> None:
    """Concurrent steps of a DAG each report their start and success."""
    result = await Diamond().execute()
    assert result.status is SagaStatus.COMPLETED
    succeeded = sorted(c for c in recorder.calls() if c.startswith("step_succeeded"))
    assert succeeded == [f"step_succeeded:{s}:1" for s in "abcd"]


async def test_hooks_run_in_the_step_task() -> None:
    """Context set by step_started is visible inside the action (spans nest this way)."""
    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="")
    seen: list[str] = []

    class Tagger(Observer):
        def step_started(self, event: StepEvent) -> None:
            current.set(f"span:{event.step}")

    async def look(ctx: Context) -> None:
        seen.append(current.get())

    class Looks(Saga):
        steps = (
            Step("a", look),
            Step("b", look, depends_on="a"),
            Step("c", look, depends_on="a"),
        )

    with observing(Tagger()):
        await Looks().execute()
    assert sorted(seen) == ["span:a", "span:b", "span:c"]


async def test_a_raising_observer_never_breaks_the_saga(caplog: pytest.LogCaptureFixture) -> None:
    """Every hook raising: the run still completes; each failure is logged and counted."""

    class Broken(Observer):
        def __getattribute__(self, name: str) -> Any:
            if name in HOOKS:

                def hook(event: object) -> None:
                    raise ValueError("observer bug")

                return hook
            return super().__getattribute__(name)

    before = OBSERVER_ERRORS.count
    recorder = Recorder()
    with caplog.at_level(logging.ERROR, "statesaga.observe"), observing(Broken(), recorder):
        result = await Failing().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert OBSERVER_ERRORS.count - before == len(recorder.events) == 8
    assert "observer bug" in caplog.text
    assert "the saga goes on" in caplog.text


async def test_cancellation_past_the_pivot_reports_suspended(recorder: Recorder) -> None:
    """A run cancelled past its pivot stops unfinished: run_suspended, not run_finished."""
    gate = asyncio.Event()

    async def wait(ctx: Context) -> None:
        await gate.wait()

    class Pivoted(Saga):
        steps = (Step("a", ok, pivot=True), Step("b", wait), Step("c", ok))

    task = asyncio.create_task(Pivoted().execute())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.calls()[-1] == "run_suspended"
    assert "run_finished" not in recorder.calls()


async def test_resumed_run_reports_resumed(tmp_path: Path) -> None:
    """A run taken over from a store is reported with resumed=True."""
    from statesaga.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "runs.db")
    await store.open()
    try:
        with fail_step("a", compensation=True):
            first = await BadUndo().execute(store=store, saga_id="r9", clock=FakeClock())
        assert first.status is SagaStatus.FAILED
        recorder = Recorder()
        with observing(recorder):
            again = await resume(store, "r9", saga=BadUndo, clock=FakeClock())
    finally:
        await store.close()
    assert again.status is SagaStatus.FAILED
    started = recorder.events[0][1]
    assert isinstance(started, RunEvent)
    assert started.resumed


def test_registry_add_remove_and_no_duplicates() -> None:
    """add_observer ignores a second add; remove_observer ignores an unknown observer."""
    observer = Recorder()
    add_observer(observer)
    add_observer(observer)
    try:
        assert observers().count(observer) == 1
    finally:
        remove_observer(observer)
    remove_observer(observer)
    assert observer not in observers()


async def test_no_observer_means_no_observation() -> None:
    """With nobody listening the engine never builds an observation (the hot path stays bare)."""
    from statesaga.compiler import compile_saga
    from statesaga.engine import Driver
    from statesaga.engine.recorder import IN_MEMORY
    from statesaga.engine.state import RunState

    assert observers() == ()
    driver = Driver(RunState.new(compile_saga(Chain), {}, "r"), FakeClock(), IN_MEMORY)
    task = asyncio.ensure_future(_drive(driver))
    await task
    assert driver.observation is None


async def _drive(run: Any) -> None:
    from statesaga.engine import drive_to_result

    await drive_to_result(run)


async def test_a_run_stopped_by_a_store_error_reports_suspended(
    recorder: Recorder,
) -> None:
    """A run that dies on an unexpected error still ends its observation, with the error."""
    from helpers import FailingStore

    from statesaga.store.base import StoreError

    store = FailingStore(fail_at=2)
    with pytest.raises(StoreError, match="disk full"):
        await Chain().execute(store=store)
    hook, event = recorder.events[-1]
    assert hook == "run_suspended"
    assert isinstance(event, RunEvent)
    assert isinstance(event.error, StoreError)
