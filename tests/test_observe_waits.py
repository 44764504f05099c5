"""Waits and skipped steps seen by the observers: hooks, log lines, metrics and spans, in
memory and for stored runs parked and resumed; the store's waiting runs in Prometheus."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_observe_adapters import ROOT, Observed, _free_port

from statesaga import Saga, SagaStatus, Step, Wait
from statesaga.context import Context
from statesaga.handle import RunHandle
from statesaga.observe import Observer, RunEvent, StepEvent, observing
from statesaga.observe.metrics import WaitingRuns
from statesaga.store import MemoryStore, SagaStore, StoreError
from statesaga.store.sqlite import SQLiteStore

# -- sagas ------------------------------------------------------------------------------------


async def ok(ctx: Context) -> None:
    return None


def never(ctx: Context) -> bool:
    return False


class Booking(Saga):
    steps = (
        Step("reserve", ok, compensate=ok),
        Wait("paid", timeout=30),
        Step("gift", ok, when=never),
        Step("ship", ok),
    )


class Impatient(Saga):
    steps = (Step("reserve", ok, compensate=ok), Wait("paid", timeout=0.02))


class Sleeper(Saga):
    steps = (Wait("cooling_off", timeout=0.02, on_timeout="continue"), Step("refund", ok))


HOOKS = tuple(name for name in vars(Observer) if not name.startswith("_"))


class Hooks(Observer):
    """Keeps every event with the hook it came through."""

    def __init__(self) -> None:
        self.events: list[tuple[str, RunEvent | StepEvent]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in HOOKS:
            return lambda event: self.events.append((name, event))
        return super().__getattribute__(name)

    def of(self, hook: str) -> list[Any]:
        return [event for name, event in self.events if name == hook]

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    observer = Hooks()
    with observing(observer):
        yield observer


@pytest.fixture
def observed() -> Iterator[Observed]:
    watch = Observed()
    with observing(*watch.observers):
        yield watch


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until ``check()`` holds (fails the test after ``seconds``)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- the hooks --------------------------------------------------------------------------------


async def test_a_signalled_wait_reports_its_start_its_end_and_the_skipped_step(
    hooks: Hooks,
) -> None:
    """wait_started, then wait_ended "signalled" with how long it waited; step_skipped."""
    run = await Booking().start(saga_id="b1")
    await until(lambda: "wait_started" in hooks.names())
    await asyncio.sleep(0.03)
    await run.signal("paid", {"amount": 42})
    assert (await run.result()).status is SagaStatus.COMPLETED
    names = hooks.names()
    assert names[names.index("wait_started") :] == [
        "wait_started",
        "wait_ended",
        "step_skipped",
        "step_started",
        "step_succeeded",
        "run_finished",
    ]
    (started,) = hooks.of("wait_started")
    (ended,) = hooks.of("wait_ended")
    assert (started.step, started.saga, started.saga_id) == ("paid", "Booking", "b1")
    assert started.outcome is None
    assert started.duration is None
    assert (ended.step, ended.outcome, ended.error) == ("paid", "signalled", None)
    assert 0.03 <= ended.duration < 5
    (skipped,) = hooks.of("step_skipped")
    assert (skipped.step, skipped.error) == ("gift", None)


async def test_a_wait_that_times_out_reports_timed_out_with_its_error(hooks: Hooks) -> None:
    """A wait that fails on its timeout ends "timed_out", the WaitTimeoutError with it."""
    result = await Impatient().execute()
    assert result.status is SagaStatus.COMPENSATED
    (ended,) = hooks.of("wait_ended")
    assert ended.outcome == "timed_out"
    assert type(ended.error).__name__ == "WaitTimeoutError"
    assert 0.02 <= ended.duration < 5


async def test_a_timeout_that_continues_reports_timed_out_without_an_error(
    hooks: Hooks,
) -> None:
    """on_timeout="continue": "timed_out", no error, and the run goes on."""
    assert (await Sleeper().execute()).status is SagaStatus.COMPLETED
    (ended,) = hooks.of("wait_ended")
    assert (ended.outcome, ended.error) == ("timed_out", None)


async def test_a_cancelled_wait_is_given_up(hooks: Hooks) -> None:
    """Cancelling a waiting run ends its wait "given_up"."""
    run = await Booking().start()
    await until(lambda: "wait_started" in hooks.names())
    assert (await run.cancel()).status is SagaStatus.COMPENSATED
    (ended,) = hooks.of("wait_ended")
    assert ended.outcome == "given_up"
    assert ended.error is not None


# -- the adapters, in memory ------------------------------------------------------------------


def lines_of(watch: Observed, *events: str) -> list[tuple[str, dict[str, Any]]]:
    return [(level, fields) for level, fields in watch.lines() if fields["event"] in events]


async def test_logs_tell_a_wait_and_a_skipped_step(observed: Observed) -> None:
    """INFO lines for wait_started, wait_ended (outcome, waited seconds) and step_skipped."""
    run = await Booking().start(saga_id="b2")
    await until(lambda: "wait_started" in observed.events())
    await asyncio.sleep(0.02)
    await run.signal("paid")
    await run.result()
    (started, ended, skipped) = lines_of(observed, "wait_started", "wait_ended", "step_skipped")
    common = {"saga": "Booking", "saga_id": "b2"}
    assert started[0] == "INFO"
    assert started[1].pop("timestamp").endswith("+00:00")
    assert started[1] == {"event": "wait_started", **common, "step": "paid"}
    level, fields = ended
    assert level == "INFO"
    assert {k: v for k, v in fields.items() if k not in ("timestamp", "waited")} == {
        "event": "wait_ended",
        **common,
        "step": "paid",
        "outcome": "signalled",
    }
    assert 0.02 <= fields["waited"] < 5
    assert skipped[0] == "INFO"
    assert (skipped[1]["event"], skipped[1]["step"]) == ("step_skipped", "gift")


async def test_logs_warn_of_a_wait_that_timed_out_or_was_given_up(observed: Observed) -> None:
    """A failing timeout and a given-up wait log WARNING with the error; a sleep INFO."""
    await Impatient().execute()
    await Sleeper().execute()
    run = await Booking().start()
    await until(lambda: observed.events().count("wait_started") == 3)
    await run.cancel()
    (failed, slept, given_up) = lines_of(observed, "wait_ended")
    assert (failed[0], failed[1]["outcome"]) == ("WARNING", "timed_out")
    assert failed[1]["error"].startswith("WaitTimeoutError: ")
    assert (slept[0], slept[1]["outcome"], "error" in slept[1]) == ("INFO", "timed_out", False)
    assert (given_up[0], given_up[1]["outcome"]) == ("WARNING", "given_up")
    assert given_up[1]["error"].startswith("CancelledError: ")


async def test_metrics_count_and_time_waits_by_outcome_and_count_skipped_steps(
    observed: Observed,
) -> None:
    """statesaga_waits_total and statesaga_wait_duration_seconds by saga, wait and outcome;
    statesaga_steps_skipped_total by saga and step."""
    run = await Booking().start()
    await until(lambda: "wait_started" in observed.events())
    await run.signal("paid")
    await run.result()
    await Impatient().execute()
    await Impatient().execute()
    await Sleeper().execute()
    run = await Booking().start()
    await until(lambda: observed.events().count("wait_started") == 5)
    await run.cancel()

    def waits(saga: str, wait: str, outcome: str, name: str = "statesaga_waits_total") -> float:
        return observed.value(name, saga=saga, wait=wait, outcome=outcome)

    assert waits("Booking", "paid", "signalled") == 1
    assert waits("Booking", "paid", "given_up") == 1
    assert waits("Impatient", "paid", "timed_out") == 2
    assert waits("Sleeper", "cooling_off", "timed_out") == 1
    count = "statesaga_wait_duration_seconds_count"
    assert waits("Impatient", "paid", "timed_out", count) == 2
    total = waits("Impatient", "paid", "timed_out", "statesaga_wait_duration_seconds_sum")
    assert 0.04 <= total < 10
    assert waits("Impatient", "paid", "timed_out", "statesaga_wait_duration_seconds_bucket") == 0
    bucket = {"saga": "Impatient", "wait": "paid", "outcome": "timed_out", "le": "1.0"}
    assert observed.value("statesaga_wait_duration_seconds_bucket", **bucket) == 2
    assert observed.value("statesaga_steps_skipped_total", saga="Booking", step="gift") == 1
    assert observed.value("statesaga_runs_parked_total", saga="Booking") == 0


async def test_a_span_per_wait_named_like_step_spans_under_the_run(observed: Observed) -> None:
    """`wait <wait>` under the run's span, with the outcome and how long it waited; a failing
    timeout is an ERROR, a signal or a given-up wait is not."""
    run = await Booking().start(saga_id="b3")
    await until(lambda: "wait_started" in observed.events())
    await asyncio.sleep(0.02)
    await run.signal("paid")
    await run.result()
    span = observed.span("wait paid")
    assert observed.parent_of(span) == "saga Booking"
    found = attributes(span)
    assert 0.02 <= found.pop("statesaga.waited") < 5
    assert found == {
        "statesaga.saga": "Booking",
        "statesaga.saga_id": "b3",
        "statesaga.step": "paid",
        "statesaga.outcome": "signalled",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time is not None
    assert span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.02
    assert [s.name for s in observed.spans() if s.name.startswith("step ")] == [
        "step reserve",
        "step ship",
    ]  # the skipped step has no span

    observed.exporter.clear()
    await Impatient().execute()
    span = observed.span("wait paid")
    assert attributes(span)["statesaga.outcome"] == "timed_out"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert span.status.description.startswith("timed_out: WaitTimeoutError: ")

    observed.exporter.clear()
    run = await Booking().start()
    await until(lambda: observed.events().count("wait_started") == 3)
    await run.cancel()
    span = observed.span("wait paid")
    assert attributes(span)["statesaga.outcome"] == "given_up"
    assert span.status.status_code is StatusCode.UNSET


# -- a stored run, parked and resumed ---------------------------------------------------------


class Reminder(Saga):
    steps = (Step("reserve", ok, compensate=ok), Wait("paid", timeout=0.1), Step("ship", ok))


async def test_a_parked_run_reads_as_waiting_and_its_resume_ends_the_wait(
    observed: Observed, tmp_path: Path
) -> None:
    """Parked: an INFO line "waiting_for", counted as parked, spans ended without error.
    Resumed by the signal: run_started(resumed), then wait_ended counted from the wait's
    stored start, and a span for the rest of the wait from the resume."""
    run = await Booking().start(store=f"sqlite:///{tmp_path}/runs.db", saga_id="d1")
    await until(lambda: "run_suspended" in observed.events())
    await asyncio.sleep(0.05)
    await run.signal("paid", {"amount": 42})
    assert (await run.result()).status is SagaStatus.COMPLETED

    assert observed.events() == [
        "run_started",
        "step_started",
        "step_succeeded",
        "wait_started",
        "run_suspended",
        "run_started",
        "wait_ended",
        "step_skipped",
        "step_started",
        "step_succeeded",
        "run_finished",
    ]
    ((level, parked),) = lines_of(observed, "run_suspended")
    assert level == "INFO"
    assert parked["waiting_for"] == "paid"
    assert "error" not in parked
    assert parked["wake_at"] > parked["timestamp"]  # ISO 8601 in UTC: in 30 s
    resumed = lines_of(observed, "run_started")[1][1]
    assert resumed["resumed"] is True
    ((level, ended),) = lines_of(observed, "wait_ended")
    assert (level, ended["outcome"]) == ("INFO", "signalled")
    assert 0.05 <= ended["waited"] < 5  # since the wait began, before the run parked

    assert observed.value("statesaga_runs_parked_total", saga="Booking") == 1
    assert observed.value("statesaga_runs_suspended_total", saga="Booking") == 0
    assert observed.value("statesaga_runs_started_total", saga="Booking") == 2
    assert observed.value("statesaga_runs_in_flight", saga="Booking") == 0
    labels = {"saga": "Booking", "wait": "paid", "outcome": "signalled"}
    assert observed.value("statesaga_waits_total", **labels) == 1
    assert observed.value("statesaga_wait_duration_seconds_sum", **labels) >= 0.05

    first, second = sorted(
        (s for s in observed.spans() if s.name == "saga Booking"), key=lambda s: s.start_time or 0
    )
    assert attributes(first)["statesaga.status"] == "waiting"
    assert first.status.status_code is StatusCode.UNSET
    (event,) = first.events
    assert event.name == "waiting"
    assert dict(event.attributes or {})["statesaga.waiting_for"] == ("paid",)
    assert dict(event.attributes or {})["statesaga.wake_at"] > 0
    assert attributes(second)["statesaga.resumed"] is True
    assert attributes(second)["statesaga.status"] == "completed"
    before, after = sorted(
        (s for s in observed.spans() if s.name == "wait paid"), key=lambda s: s.start_time or 0
    )
    assert observed.parent_of(before) == "saga Booking"
    assert before.parent is not None
    assert first.context is not None
    assert before.parent.span_id == first.context.span_id
    assert attributes(before)["statesaga.outcome"] == "abandoned"
    assert before.end_time is not None
    assert first.end_time is not None
    assert before.end_time <= first.end_time
    assert after.parent is not None
    assert second.context is not None
    assert after.parent.span_id == second.context.span_id
    assert after.start_time == second.start_time  # the rest of the wait, from the resume
    found = attributes(after)
    assert found["statesaga.resumed"] is True
    assert found["statesaga.outcome"] == "signalled"
    assert found["statesaga.waited"] >= 0.05


async def test_a_stored_wait_that_times_out_counts_from_its_stored_start(
    observed: Observed, tmp_path: Path
) -> None:
    """A parked run whose timeout falls due is resumed and its wait ends "timed_out" after
    the whole timeout, though the resumed process only began driving it then."""
    result = await Reminder().execute(store=f"sqlite:///{tmp_path}/runs.db")
    assert result.status is SagaStatus.COMPENSATED
    assert observed.events().count("run_suspended") == 1
    ((level, ended),) = lines_of(observed, "wait_ended")
    assert (level, ended["outcome"]) == ("WARNING", "timed_out")
    assert ended["waited"] >= 0.1
    labels = {"saga": "Reminder", "wait": "paid", "outcome": "timed_out"}
    assert observed.value("statesaga_waits_total", **labels) == 1
    spans = [s for s in observed.spans() if s.name == "wait paid"]
    assert [attributes(s)["statesaga.outcome"] for s in spans] == ["abandoned", "timed_out"]
    assert spans[1].status.status_code is StatusCode.ERROR


# -- the store's waiting runs -----------------------------------------------------------------


class Approval(Saga):
    steps = (Wait("approved"), Step("pay", ok))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SagaStore]:
    """An open, empty store of each backend."""
    backend: SagaStore
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "waiting.db")
    else:
        from test_store_postgres import postgres_store  # skips (fails under CI) with no server

        backend = postgres_store(request)
    async with backend:
        yield backend


async def parked(store: SagaStore, saga: type[Saga], saga_id: str) -> RunHandle:
    """A run of ``saga`` started on ``store`` and stored waiting."""
    run = await saga().start(store=store, saga_id=saga_id)
    for _ in range(1000):
        if (await store.load(saga_id)).run.status == "waiting":
            return run
        await asyncio.sleep(0.005)
    raise AssertionError(f"{saga_id} never parked")


def scrape(registry: CollectorRegistry, saga: str, **labels: str) -> float | None:
    return registry.get_sample_value("statesaga_runs_waiting", {**labels, "saga": saga})


async def test_waiting_runs_are_counted_per_saga_in_the_store(store: SagaStore) -> None:
    """Scraped from Prometheus' thread: the store's waiting runs per saga, 0 once none waits."""
    registry = CollectorRegistry()
    registry.register(WaitingRuns(store))
    assert await asyncio.to_thread(scrape, registry, "Booking") is None
    first = await parked(store, Booking, "w1")
    second = await parked(store, Booking, "w2")
    approval = await parked(store, Approval, "w3")
    assert await asyncio.to_thread(scrape, registry, "Booking") == 2
    assert await asyncio.to_thread(scrape, registry, "Approval") == 1
    await first.signal("paid")
    await first.result()
    assert await asyncio.to_thread(scrape, registry, "Booking") == 1
    for run, event in ((second, "paid"), (approval, "approved")):
        await run.signal(event)
        await run.result()
    assert await asyncio.to_thread(scrape, registry, "Booking") == 0
    assert await asyncio.to_thread(scrape, registry, "Approval") == 0


async def test_a_scrape_in_the_loop_thread_reports_the_last_count_and_refreshes_it() -> None:
    """In the store's own loop a scrape cannot wait: the last numbers, a new query started."""
    store = MemoryStore()
    registry = CollectorRegistry()
    collector = WaitingRuns(store)
    registry.register(collector)
    await parked(store, Approval, "w1")
    assert scrape(registry, "Approval") is None  # nothing counted yet
    await until(lambda: scrape(registry, "Approval") == 1)
    await parked(store, Approval, "w2")
    assert scrape(registry, "Approval") == 1  # the last count ...
    assert await collector.refresh() == {"Approval": 2}  # ... until the next query
    assert scrape(registry, "Approval") == 2


class Broken:
    """A store whose count fails, or never ends; ``calls`` says how often it was asked."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.calls = 0

    async def count_waiting(self) -> dict[str, int]:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(30)
        raise StoreError("the database is down")


async def test_a_failing_count_leaves_the_gauge_out_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No stale numbers: a failed query leaves the gauge's samples out; the reason is logged."""
    broken = Broken()
    registry = CollectorRegistry()
    collector = WaitingRuns(broken, labels={"service": "orders"})  # type: ignore[arg-type]
    registry.register(collector)
    assert broken.calls == 0  # registering describes the gauge, queries nothing
    collector._last = {"Booking": 3}  # what an earlier scrape found
    with caplog.at_level(logging.WARNING, logger="statesaga.observe"):
        value = await asyncio.to_thread(scrape, registry, "Booking", service="orders")
    assert value is None
    assert broken.calls == 1
    assert "waiting runs not counted: the database is down" in caplog.text


async def test_a_slow_count_gives_up_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A query past ``timeout`` does not hold the scrape: the gauge is left out."""
    registry = CollectorRegistry()
    registry.register(WaitingRuns(Broken(hang=True), timeout=0.05))  # type: ignore[arg-type]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="statesaga.observe"):
        assert await asyncio.to_thread(scrape, registry, "Booking") is None
    assert time.monotonic() - started < 2
    assert "took over 0.05 s" in caplog.text


def test_waiting_runs_need_the_loop_of_their_store() -> None:
    """Created outside a running loop without ``loop=``: refused, saying what to do."""
    with pytest.raises(RuntimeError, match="create it in that loop, or pass loop="):
        WaitingRuns(MemoryStore())


# -- the worker's /metrics --------------------------------------------------------------------

PARKED = """
from statesaga import Saga, Step, Wait


async def a(ctx):
    return None


class Parked(Saga):
    steps = (Step("a", a), Wait("paid"), Step("b", a))
"""

START = """
import asyncio, sys, parked

async def main():
    run = await parked.Parked().start(store=sys.argv[1], saga_id="p1")
    try:
        await asyncio.wait_for(run.result(), 0.5)  # parks at once; the process then leaves it
    except TimeoutError:
        pass

asyncio.run(main())
"""


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The endpoint's samples by name and labels (none when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            body = response.read().decode()
    except OSError:
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_the_worker_serves_the_waiting_runs_of_its_store(tmp_path: Path) -> None:
    """`statesaga worker --metrics-port` shows the run another process parked as waiting,
    then, once signalled and driven on by the worker, 0 waiting and one signalled wait."""
    (tmp_path / "parked.py").write_text(PARKED, encoding="utf-8")
    url = f"sqlite:///{tmp_path}/w.db"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    subprocess.run([sys.executable, "-c", START, url], env=env, timeout=30, check=True)
    statesaga = str(Path(sys.executable).parent / "statesaga")
    port = _free_port()
    worker = subprocess.Popen(
        [statesaga, "worker", "--store", url, "--poll", "0.05", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    waiting = ("statesaga_runs_waiting", frozenset({("saga", "Parked")}))
    signalled = (
        "statesaga_waits_total",
        frozenset({("saga", "Parked"), ("wait", "paid"), ("outcome", "signalled")}),
    )

    def until_seen(want: dict[Any, float]) -> None:
        found: dict[Any, float] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and worker.poll() is None:
            found = samples(port)
            if all(found.get(key) == value for key, value in want.items()):
                return
            time.sleep(0.05)
        output = worker.stdout.read() if worker.poll() is not None and worker.stdout else ""
        raise AssertionError(f"not seen: {want}; found {found}; {output}")

    try:
        until_seen({waiting: 1.0})
        assert signalled not in samples(port)
        subprocess.run(
            [statesaga, "runs", "signal", "p1", "paid", "--store", url],
            env=env,
            timeout=30,
            check=True,
        )
        until_seen({waiting: 0.0, signalled: 1.0})
    finally:
        worker.terminate()
        worker.wait(timeout=10)
