"""The engine tells a run's recorder before each call, after each outcome and at the end; an
in-memory run and a stored one take the same path and differ only in their recorder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statesaga import Saga, SagaStatus, Step
from statesaga.compiler import compile_saga
from statesaga.context import Context
from statesaga.durable.journal import Journal
from statesaga.engine import Driver, drive_to_result
from statesaga.engine.recorder import IN_MEMORY
from statesaga.engine.state import RunState
from statesaga.errors import StoreError
from statesaga.store import MemoryStore
from statesaga.store.base import RunRecord
from statesaga.testing import FakeClock


async def ok(ctx: Context) -> dict[str, int]:
    return {"n": ctx.attempt}


async def boom(ctx: Context) -> None:
    raise ValueError("no")


async def undo(ctx: Context) -> None:
    return None


class Chain(Saga):
    steps = (Step("a", ok, compensate=undo), Step("b", ok, compensate=undo), Step("c", boom))


class Fork(Saga):
    steps = (
        Step("a", ok, compensate=undo),
        Step("b", ok, depends_on="a"),
        Step("c", ok, depends_on="a"),
    )


class Listening:
    """A recorder that notes each point with the last transition it saw."""

    def __init__(self, refuse: str | None = None) -> None:
        self.points: list[tuple[str, str]] = []
        self.refuse = refuse

    def _note(self, point: str, run: RunState) -> None:
        self.points.append((point, run.history[-1][0]))

    def before_call(self, run: RunState) -> None:
        self._note("before", run)

    def after_outcome(self, run: RunState) -> None:
        self._note("after", run)

    def at_end(self, run: RunState) -> None:
        self._note("end", run)

    def result(self, value: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.refuse is not None and self.refuse in value:
            raise StoreError(f"cannot keep {self.refuse!r}")
        return {**value, "kept": True}


async def drive(saga: type[Saga], recorder: Any) -> Any:
    driver = Driver(RunState.new(compile_saga(saga), {}, "r1"), FakeClock(), recorder)
    return await drive_to_result(driver)


async def test_the_recorder_hears_before_each_call_after_each_outcome_and_at_the_end() -> None:
    """Forward and back alike: the start is recorded before the call, the outcome after it,
    and the end once."""
    listening = Listening()
    result = await drive(Chain, listening)
    assert result.status is SagaStatus.COMPENSATED
    assert listening.points == [
        ("before", "a.start"),
        ("after", "a.succeed"),
        ("before", "b.start"),
        ("after", "b.succeed"),
        ("before", "c.start"),
        ("after", "c.fail"),
        ("before", "b.compensate"),
        ("after", "b.compensation_done"),
        ("before", "a.compensate"),
        ("after", "a.compensation_done"),
        ("end", "finish"),
    ]


async def test_a_run_reads_results_as_its_recorder_keeps_them() -> None:
    """What the recorder gives back is what later steps and the result read."""
    seen: list[Any] = []

    async def read(ctx: Context) -> None:
        seen.append(dict(ctx.results["a"]))

    class Reads(Saga):
        steps = (Step("a", ok), Step("b", read))

    result = await drive(Reads, Listening())
    assert seen == [{"n": 1, "kept": True}]
    assert result.results["a"] == {"n": 1, "kept": True}


async def test_a_result_the_recorder_refuses_leaves_the_step_in_doubt() -> None:
    """A result that cannot be recorded makes the step's outcome unknown: compensated."""

    async def odd(ctx: Context) -> dict[str, int]:
        return {"odd": 1}

    class Odd(Saga):
        steps = (Step("a", ok, compensate=undo), Step("b", odd, compensate=undo))

    result = await drive(Odd, Listening(refuse="odd"))
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps == ("b", "a")
    assert "cannot keep 'odd'" in str(result.error)


async def test_in_memory_and_stored_runs_take_the_same_transitions() -> None:
    """The same saga, in memory and in a store: the same history, step for step."""
    for saga in (Chain, Fork):
        alone = await drive(saga, IN_MEMORY)
        stored = await saga().execute(store=MemoryStore(), clock=FakeClock())
        assert [e[:3] for e in alone.history] == [e[:3] for e in stored.history], saga


def journal_of(saga: type[Saga]) -> tuple[Journal, RunState, MemoryStore]:
    store = MemoryStore()
    state = RunState.new(compile_saga(saga), {}, "r1")
    record = RunRecord(
        run_id="r1",
        saga=state.compiled.name,
        saga_path="x:y",
        fingerprint=state.compiled.fingerprint,
        input={},
        status="pending",
        config=dict(state.config),
        version=0,
        lease_owner="me",
        lease_expires=1e12,
        created_at=0.0,
        updated_at=0.0,
    )
    return Journal(store, record, "me", FakeClock(), create=True), state, store


async def test_in_a_chain_an_outcome_is_committed_with_the_next_call() -> None:
    """In a chain the next call's commit follows an outcome at once: the outcome waits for
    it; with nothing new since the last commit there is nothing to await."""
    journal, state, store = journal_of(Chain)
    state.history.append(("start", "pending", "running", 0.0, 0, None))
    assert journal.after_outcome(state) is None
    pending = journal.before_call(state)
    assert pending is not None
    await pending
    assert [t.trigger for t in (await store.load("r1")).history] == ["start"]
    assert journal.before_call(state) is None


async def test_in_a_dag_an_outcome_is_committed_at_once() -> None:
    """In a DAG siblings may run on for long: each outcome is committed by itself."""
    journal, state, store = journal_of(Fork)
    state.history.append(("start", "pending", "running", 0.0, 0, None))
    pending = journal.after_outcome(state)
    assert pending is not None
    await pending
    assert [t.trigger for t in (await store.load("r1")).history] == ["start"]
