"""The Prometheus, OpenTelemetry and logging adapters, against the real libraries."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from statesaga import NonRetryableError, Retry, Saga, SagaStatus, Step, Wait
from statesaga.context import Context
from statesaga.observe import OBSERVER_ERRORS, Observer, RunEvent, observing
from statesaga.observe.logs import LoggingObserver, render_json, render_kv
from statesaga.observe.metrics import MissingExtraError, PrometheusObserver, WaitingRuns
from statesaga.observe.traces import TracingObserver
from statesaga.store import MemoryStore
from statesaga.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent

# -- sagas ------------------------------------------------------------------------------------

calls: dict[str, int] = {}


async def ok(ctx: Context) -> None:
    return None


async def boom(ctx: Context) -> None:
    raise RuntimeError("boom")


async def flaky(ctx: Context) -> None:
    """Fails twice, then succeeds."""
    calls[ctx.saga_id] = calls.get(ctx.saga_id, 0) + 1
    if calls[ctx.saga_id] < 3:
        raise ConnectionError(f"down, call {calls[ctx.saga_id]}")


async def stuck(ctx: Context) -> None:
    await asyncio.sleep(10)


async def refuse(ctx: Context) -> None:
    raise NonRetryableError("cannot undo")


class Pair(Saga):
    steps = (Step("a", ok, compensate=ok), Step("b", ok, compensate=ok))


class Flaky(Saga):
    steps = (Step("a", ok, compensate=ok), Step("b", flaky, retry=Retry(attempts=3)))


class Undone(Saga):
    steps = (Step("a", ok, compensate=ok), Step("b", boom, compensate=ok))


class BadUndo(Saga):
    steps = (
        Step("a", ok, compensate=flaky, compensate_retry=Retry(attempts=2)),
        Step("b", boom),
    )


class Slow(Saga):
    steps = (Step("a", ok, compensate=ok), Step("b", stuck, compensate=ok, timeout=0.01))


def never(ctx: Context) -> bool:
    return False


class Sleep(Saga):
    steps = (Wait("w", timeout=0.01, on_timeout="continue"), Step("s", ok, when=never))


class Parks(Saga):
    steps = (Wait("w"),)


# -- fixtures ---------------------------------------------------------------------------------


class Observed:
    """All three adapters on fresh sinks: a registry, an in-memory exporter, a log stream."""

    def __init__(self, *, labels: dict[str, str] | None = None, log_format: str = "json") -> None:
        self.registry = CollectorRegistry()
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.stream = io.StringIO()
        self.logger = logging.getLogger(f"test.observe.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.logger.addHandler(handler)
        self.observers: tuple[Observer, ...] = (
            PrometheusObserver(self.registry, labels=labels),
            TracingObserver(self.provider),
            LoggingObserver(self.logger, format=log_format),  # type: ignore[arg-type]
        )

    def value(self, name: str, **labels: str) -> float:
        """A sample's value (0 when it does not exist)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        (found,) = [s for s in self.spans() if s.name == name]
        return found

    def parent_of(self, span: ReadableSpan) -> str | None:
        """The name of ``span``'s parent among the finished spans."""
        if span.parent is None:
            return None
        by_id = {s.context.span_id: s.name for s in self.spans() if s.context is not None}
        return by_id.get(span.parent.span_id, "?")

    def lines(self) -> list[tuple[str, dict[str, Any]]]:
        """Each log line's level and JSON fields."""
        out = []
        for line in self.stream.getvalue().splitlines():
            level, _, body = line.partition(" ")
            out.append((level, json.loads(body)))
        return out

    def events(self) -> list[str]:
        return [fields["event"] for _, fields in self.lines()]


@pytest.fixture
def observed() -> Iterator[Observed]:
    watch = Observed()
    with observing(*watch.observers):
        yield watch


def attempts(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted(
        (s for s in spans if s.name == name),
        key=lambda s: (s.attributes or {}).get("statesaga.attempt", 0),
    )


# -- the four stories -------------------------------------------------------------------------


async def test_success_counts_traces_and_logs_each_step(observed: Observed) -> None:
    """A completed run: counters per step, a run span over its step spans, an event each."""
    result = await Pair().execute(saga_id="ok-1")
    assert result.status is SagaStatus.COMPLETED
    assert observed.value("statesaga_runs_total", saga="Pair", status="completed") == 1
    assert observed.value("statesaga_runs_started_total", saga="Pair") == 1
    for step in ("a", "b"):
        labels = {"saga": "Pair", "step": step, "outcome": "succeeded"}
        assert observed.value("statesaga_step_attempts_total", **labels) == 1
        assert observed.value("statesaga_step_duration_seconds_count", **labels) == 1
    assert observed.value("statesaga_run_duration_seconds_count", saga="Pair", status="completed")

    run = observed.span("saga Pair")
    assert run.parent is None
    assert run.status.status_code is StatusCode.UNSET
    assert run.attributes is not None
    assert run.attributes["statesaga.saga_id"] == "ok-1"
    assert run.attributes["statesaga.status"] == "completed"
    for step in ("a", "b"):
        span = observed.span(f"step {step}")
        assert observed.parent_of(span) == "saga Pair"
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes == {
            "statesaga.saga": "Pair",
            "statesaga.saga_id": "ok-1",
            "statesaga.step": step,
            "statesaga.attempt": 1,
            "statesaga.idempotency_key": f"ok-1:{step}",
            "statesaga.compensating": False,
            "statesaga.outcome": "succeeded",
        }

    assert observed.events() == [
        "run_started",
        "step_started",
        "step_succeeded",
        "step_started",
        "step_succeeded",
        "run_finished",
    ]
    level, finished = observed.lines()[-1]
    assert level == "INFO"
    assert finished["status"] == "completed"
    assert finished["saga_id"] == "ok-1"
    _, succeeded = observed.lines()[2]
    assert succeeded["idempotency_key"] == "ok-1:a"
    assert succeeded["attempt"] == 1
    assert succeeded["duration"] >= 0


async def test_retry_shows_every_failed_attempt(observed: Observed, clock: FakeClock) -> None:
    """Two failed attempts then a success: retries counted, a span per attempt, warnings."""
    result = await Flaky().execute(saga_id="retry-1", clock=clock)
    assert result.status is SagaStatus.COMPLETED
    labels = {"saga": "Flaky", "step": "b"}
    assert observed.value("statesaga_step_attempts_total", outcome="retried", **labels) == 2
    assert observed.value("statesaga_step_attempts_total", outcome="succeeded", **labels) == 1
    assert observed.value("statesaga_retries_total", phase="action", **labels) == 2

    tries = attempts(observed.spans(), "step b")
    assert [(s.attributes or {})["statesaga.attempt"] for s in tries] == [1, 2, 3]
    assert [s.status.status_code for s in tries] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert all(observed.parent_of(s) == "saga Flaky" for s in tries)
    (exception,) = tries[0].events
    assert exception.name == "exception"
    assert (exception.attributes or {})["exception.type"] == "ConnectionError"
    assert "down, call 1" in (tries[0].status.description or "")

    retried = [(lvl, f) for lvl, f in observed.lines() if f["event"] == "step_retried"]
    assert [(lvl, f["attempt"], f["error"]) for lvl, f in retried] == [
        ("WARNING", 1, "ConnectionError: down, call 1"),
        ("WARNING", 2, "ConnectionError: down, call 2"),
    ]


async def test_compensation_is_traced_under_the_run(observed: Observed) -> None:
    """A failed step: its span errs, the undo gets a span, the run ends ERROR, compensated."""
    result = await Undone().execute(saga_id="undo-1")
    assert result.status is SagaStatus.COMPENSATED
    assert observed.value("statesaga_runs_total", saga="Undone", status="compensated") == 1
    assert (
        observed.value("statesaga_step_attempts_total", saga="Undone", step="b", outcome="failed")
        == 1
    )
    assert (
        observed.value(
            "statesaga_compensation_attempts_total", saga="Undone", step="a", outcome="succeeded"
        )
        == 1
    )

    failed = observed.span("step b")
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["statesaga.outcome"] == "failed"
    undo = observed.span("compensate a")
    assert observed.parent_of(undo) == "saga Undone"
    assert undo.attributes is not None
    assert undo.attributes["statesaga.compensating"] is True
    assert undo.attributes["statesaga.idempotency_key"] == "undo-1:a:compensate"
    run = observed.span("saga Undone")
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "compensated: step 'b' failed: RuntimeError: boom"
    assert (run.attributes or {})["statesaga.failed_step"] == "b"

    assert observed.events() == [
        "run_started",
        "step_started",
        "step_succeeded",
        "step_started",
        "step_failed",
        "compensation_started",
        "compensation_succeeded",
        "run_finished",
    ]
    level, finished = observed.lines()[-1]
    assert (level, finished["status"], finished["failed_step"]) == ("WARNING", "compensated", "b")
    assert finished["error"] == "RuntimeError: boom"


async def test_failed_compensation_needs_attention(observed: Observed, clock: FakeClock) -> None:
    """An undo that gives up: counted and retried, spans in error, the run FAILED, an ERROR log."""
    result = await BadUndo().execute(saga_id="bad-1", clock=clock)
    assert result.status is SagaStatus.FAILED
    labels = {"saga": "BadUndo", "step": "a"}
    assert observed.value("statesaga_compensation_attempts_total", outcome="retried", **labels)
    assert observed.value("statesaga_compensation_attempts_total", outcome="failed", **labels) == 1
    assert observed.value("statesaga_retries_total", phase="compensation", **labels) == 1
    assert observed.value("statesaga_runs_total", saga="BadUndo", status="failed") == 1
    assert observed.value("statesaga_runs_needing_attention", saga="BadUndo") == 1

    undos = attempts(observed.spans(), "compensate a")
    assert [s.status.status_code for s in undos] == [StatusCode.ERROR, StatusCode.ERROR]
    assert [(s.attributes or {})["statesaga.outcome"] for s in undos] == ["retried", "failed"]
    assert observed.span("saga BadUndo").status.status_code is StatusCode.ERROR

    levels = {f["event"]: lvl for lvl, f in observed.lines()}
    assert levels["compensation_retried"] == "WARNING"
    assert levels["compensation_failed"] == "ERROR"
    assert levels["run_finished"] == "ERROR"


async def test_needing_attention_clears_when_the_run_is_finished_later(
    observed: Observed,
) -> None:
    """A failed run counted as needing attention stops counting once a resume finishes it."""
    metrics = observed.observers[0]
    failed = RunEvent("S", "r1", 0.0, status=SagaStatus.FAILED)
    metrics.run_started(RunEvent("S", "r1", 0.0))
    metrics.run_finished(failed)
    assert observed.value("statesaga_runs_needing_attention", saga="S") == 1
    metrics.run_started(RunEvent("S", "r1", 0.0, resumed=True))
    metrics.run_finished(RunEvent("S", "r1", 0.0, status=SagaStatus.COMPENSATED))
    assert observed.value("statesaga_runs_needing_attention", saga="S") == 0


async def test_timeout_is_its_own_outcome(observed: Observed) -> None:
    """A step that times out: outcome timed_out in metrics, spans and logs; it is undone."""
    result = await Slow().execute()
    assert result.status is SagaStatus.COMPENSATED
    labels = {"saga": "Slow", "step": "b", "outcome": "timed_out"}
    assert observed.value("statesaga_step_attempts_total", **labels) == 1
    assert observed.value("statesaga_step_duration_seconds_count", **labels) == 1
    span = observed.span("step b")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["statesaga.outcome"] == "timed_out"
    assert "StepTimeoutError" in (span.status.description or "")
    assert "compensate b" in {s.name for s in observed.spans()}  # its outcome is unknown
    assert "step_timed_out" in observed.events()


# -- spans and context ------------------------------------------------------------------------


async def test_dag_steps_running_at_once_keep_their_own_parents(observed: Observed) -> None:
    """Concurrent steps of a DAG: each attempt span under the run, each user span under its step."""
    tracer = observed.provider.get_tracer("user-code")
    both = asyncio.Barrier(2)

    async def call(ctx: Context) -> None:
        with tracer.start_as_current_span(f"call {ctx.step}"):
            await both.wait()  # b and c are provably running at the same time

    class Diamond(Saga):
        steps = (
            Step("a", ok),
            Step("b", call, depends_on="a"),
            Step("c", call, depends_on="a"),
            Step("d", ok, depends_on=("b", "c")),
        )

    result = await Diamond().execute()
    assert result.status is SagaStatus.COMPLETED
    for step in "abcd":
        assert observed.parent_of(observed.span(f"step {step}")) == "saga Diamond"
    assert observed.parent_of(observed.span("call b")) == "step b"
    assert observed.parent_of(observed.span("call c")) == "step c"
    trace_ids = {s.context.trace_id for s in observed.spans() if s.context is not None}
    assert len(trace_ids) == 1


async def test_user_span_in_an_action_nests_under_its_step(observed: Observed) -> None:
    """A span started inside an action is a child of that step's span, and nothing leaks out."""
    tracer = observed.provider.get_tracer("user-code")

    async def charge(ctx: Context) -> None:
        with tracer.start_as_current_span("gateway.charge"):
            pass

    class Pay(Saga):
        steps = (Step("reserve", ok), Step("charge", charge))

    with tracer.start_as_current_span("request") as request:
        await Pay().execute()
        assert trace.get_current_span() is request  # the run restored the caller's span
    assert observed.parent_of(observed.span("gateway.charge")) == "step charge"
    assert observed.parent_of(observed.span("saga Pay")) == "request"
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_abandoned_run_ends_its_open_spans(observed: Observed) -> None:
    """A run cancelled twice mid-step is abandoned: its step and run spans end anyway."""
    started = asyncio.Event()

    async def hang(ctx: Context) -> None:
        started.set()
        await asyncio.sleep(10)

    class Hang(Saga):
        steps = (Step("a", ok, compensate=ok), Step("b", hang, compensate=ok))

    task = asyncio.create_task(Hang().execute())
    await started.wait()
    task.cancel()  # a request: the running step is awaited...
    await asyncio.sleep(0)
    task.cancel()  # ...unless asked again: abandon it now
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if any(s.name == "saga Hang" for s in observed.spans()):
            break
        await asyncio.sleep(0.001)
    assert (observed.span("step b").attributes or {})["statesaga.outcome"] == "abandoned"
    assert (observed.span("saga Hang").attributes or {})["statesaga.status"] == "suspended"
    assert observed.value("statesaga_runs_suspended_total", saga="Hang") == 1
    assert observed.value("statesaga_runs_in_flight", saga="Hang") == 0
    assert observed.events()[-1] == "run_suspended"


async def test_a_run_stopped_by_a_store_error_ends_its_spans_with_the_error(
    observed: Observed,
) -> None:
    """A store failure mid-run: the run span ends with status ERROR and the error recorded."""
    from helpers import FailingStore
    from opentelemetry.trace import StatusCode

    from statesaga.store.base import StoreError

    store = FailingStore(fail_at=2)
    with pytest.raises(StoreError):
        await Pair().execute(store=store)
    run = observed.span("saga Pair")
    assert run.status.status_code is StatusCode.ERROR
    assert "disk full" in (run.status.description or "")
    assert any(e.name == "exception" for e in run.events)
    assert observed.value("statesaga_runs_in_flight", saga="Pair") == 0


# -- metrics ----------------------------------------------------------------------------------


async def test_constant_labels_are_on_every_metric() -> None:
    """Custom constant labels appear on run, step and observer-error metrics alike."""
    watch = Observed(labels={"service": "orders", "region": "eu"})
    with observing(*watch.observers):
        await Pair().execute()
    const = {"service": "orders", "region": "eu"}
    assert watch.value("statesaga_runs_total", saga="Pair", status="completed", **const) == 1
    assert (
        watch.value(
            "statesaga_step_attempts_total", saga="Pair", step="a", outcome="succeeded", **const
        )
        == 1
    )
    assert watch.registry.get_sample_value("statesaga_observer_errors_total", const) is not None
    with pytest.raises(ValueError, match="clash"):
        PrometheusObserver(CollectorRegistry(), labels={"step": "x"})


async def test_metric_reference_matches_what_is_exported(clock: FakeClock) -> None:
    """Every metric of the page's reference exists with its type, labels and outcome values."""
    page = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    documented = {}
    for row in re.findall(r"^\| `(statesaga_\w+)` \| (\w+) \| ([^|]*) \| ([^|]*) \|$", page, re.M):
        name, kind, labels, meaning = row
        # "`outcome` is `a`, `b` or `c`", or the values listed in the meaning
        listed = re.search(r"`outcome` is ([^;]*)", meaning)
        outcomes = set(re.findall(r"`(\w+)`", listed.group(1) if listed else meaning))
        documented[name] = (kind, set(re.findall(r"`(\w+)`", labels)), outcomes)
    watch = Observed()
    with observing(*watch.observers):
        for saga in (Flaky, BadUndo, Slow, Undone, Sleep):
            await saga().execute(clock=clock)
        store = MemoryStore()
        await Parks().start(store=store)
        waiting = WaitingRuns(store)
        watch.registry.register(waiting)
        await until_parked(store)
        await waiting.refresh()  # a scrape in the store's loop reports the last count

    exported = {}
    for family in watch.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        labels = {k for s in samples for k in s.labels if k != "le"}
        outcomes = {s.labels["outcome"] for s in samples if "outcome" in s.labels}
        exported[name] = (family.type, labels, outcomes)
    assert set(exported) == set(documented)
    for name, (kind, labels, outcomes) in exported.items():
        doc_kind, doc_labels, doc_outcomes = documented[name]
        assert kind == doc_kind, name
        assert not labels or labels == doc_labels, name
        if outcomes:
            assert outcomes <= doc_outcomes, f"{name}: {outcomes - doc_outcomes} undocumented"


async def until_parked(store: MemoryStore) -> None:
    for _ in range(1000):
        if await store.count_waiting():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the run never parked")


def test_metrics_can_be_registered_again_after_unregister() -> None:
    """A registry holds one observer's metrics; ``unregister`` frees the names."""
    registry = CollectorRegistry()
    first = PrometheusObserver(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusObserver(registry)
    first.unregister()
    PrometheusObserver(registry)


async def test_runs_in_flight_rise_and_return_to_zero(observed: Observed) -> None:
    """Three runs at once show as three in flight, then none."""
    gate = asyncio.Event()

    async def wait(ctx: Context) -> None:
        await gate.wait()

    class Waits(Saga):
        steps = (Step("w", wait),)

    runs = [asyncio.create_task(Waits().execute()) for _ in range(3)]
    for _ in range(100):
        if observed.value("statesaga_runs_in_flight", saga="Waits") == 3:
            break
        await asyncio.sleep(0.001)
    assert observed.value("statesaga_runs_in_flight", saga="Waits") == 3
    gate.set()
    await asyncio.gather(*runs)
    assert observed.value("statesaga_runs_in_flight", saga="Waits") == 0


async def test_observer_errors_are_exported_at_scrape_time(observed: Observed) -> None:
    """A hook that raises is counted by statesaga_observer_errors_total, read when scraped."""

    class Broken(Observer):
        def step_started(self, event: object) -> None:
            raise RuntimeError("broken observer")

    before = observed.value("statesaga_observer_errors_total")
    with observing(Broken()):
        result = await Pair().execute()
    assert result.status is SagaStatus.COMPLETED
    assert observed.value("statesaga_observer_errors_total") == before + 2
    assert OBSERVER_ERRORS.count >= 2


async def test_outbox_fallbacks_are_exported_at_scrape_time(observed: Observed) -> None:
    """Optimistic sends and fallbacks to the relay show in statesaga_outbox_messages_total."""
    from statesaga.messaging.brokers.memory import MemoryBroker

    async def emits(ctx: Context) -> None:
        ctx.emit("orders", {"step": ctx.step}, key="order-1")

    class Emits(Saga):
        steps = (Step("a", emits), Step("b", emits))

    def count(outcome: str) -> float:
        return observed.value("statesaga_outbox_messages_total", outcome=outcome)

    sent, fallback = count("optimistic"), count("fallback")
    broker = MemoryBroker()
    await Emits().execute(store="memory://", broker=broker)
    assert count("optimistic") == sent + 2
    broker.down()
    await Emits().execute(store="memory://", broker=broker)
    assert count("fallback") == fallback + 2


async def test_durable_runs_are_observed_too(observed: Observed, tmp_path: Path) -> None:
    """A run on SQLite reports the same metrics, spans and events as one in memory."""
    result = await Undone().execute(store=f"sqlite:///{tmp_path}/x.db", saga_id="durable-1")
    assert result.status is SagaStatus.COMPENSATED
    assert observed.value("statesaga_runs_total", saga="Undone", status="compensated") == 1
    assert observed.parent_of(observed.span("compensate a")) == "saga Undone"
    assert observed.events()[0] == "run_started"
    assert observed.events()[-1] == "run_finished"


# -- logs -------------------------------------------------------------------------------------


TRICKY: dict[str, Any] = {
    "event": "step_failed",
    "plain": "a:b",
    "spaced": "two words",
    "equals": "a=b",
    "quoted": 'say "hi"',
    "slashed": "C:\\dir x",
    "newline": "one\ntwo",
    "none": None,
    "yes": True,
    "no": False,
    "number": 1.5e-05,
    "count": 3,
}


def test_lines_match_structlogs_renderers() -> None:
    """The JSON and key=value lines are exactly what structlog's renderers print."""
    from structlog.processors import JSONRenderer, LogfmtRenderer

    assert render_kv(TRICKY) == LogfmtRenderer(bool_as_flag=False)(None, "", dict(TRICKY))
    assert render_json(TRICKY) == JSONRenderer()(None, "", dict(TRICKY))


async def test_kv_lines_read_as_documented() -> None:
    """A failed step in key=value form: every field, the error quoted."""
    watch = Observed(log_format="kv")
    with observing(watch.observers[2]):
        await Undone().execute(saga_id="kv-1")
    failed = re.sub(r"(timestamp|duration)=\S+", r"\1=_", watch.stream.getvalue().splitlines()[4])
    assert failed == (
        "WARNING event=step_failed timestamp=_ saga=Undone saga_id=kv-1 step=b attempt=1 "
        'idempotency_key=kv-1:b compensating=false duration=_ error="RuntimeError: boom"'
    )


async def test_configured_structlog_gets_the_events_by_default() -> None:
    """With structlog configured by the app, the default logger is structlog's."""
    import structlog

    seen: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event: Any) -> str:
        seen.append({"level": method, **event})
        return ""

    structlog.configure(processors=[keep], logger_factory=structlog.ReturnLoggerFactory())
    try:
        with observing(LoggingObserver()):
            await Pair().execute(saga_id="sl-0")
    finally:
        structlog.reset_defaults()
    assert [e["event"] for e in seen] == [
        "run_started",
        "step_started",
        "step_succeeded",
        "step_started",
        "step_succeeded",
        "run_finished",
    ]
    assert seen[2]["idempotency_key"] == "sl-0:a"
    assert seen[-1]["level"] == "info"


async def test_log_records_carry_the_fields() -> None:
    """Every field is also an attribute of the standard LogRecord, for structured handlers."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.observe.records")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    with observing(LoggingObserver(logger)):
        await Pair().execute(saga_id="rec-1")
    step = records[1]
    assert (step.saga, step.saga_id, step.step, step.attempt) == ("Pair", "rec-1", "a", 1)  # type: ignore[attr-defined]
    assert step.idempotency_key == "rec-1:a"  # type: ignore[attr-defined]


async def test_a_structlog_logger_gets_key_value_pairs() -> None:
    """Given a structlog-style logger, events go to it as an event name and keyword fields."""
    seen: list[tuple[str, str, dict[str, Any]]] = []

    class Structured:
        def __getattr__(self, level: str) -> Any:
            return lambda event, **fields: seen.append((level, event, fields))

    with observing(LoggingObserver(Structured())):
        await Undone().execute(saga_id="sl-1")
    assert [(level, event) for level, event, _ in seen][-3:] == [
        ("info", "compensation_started"),
        ("info", "compensation_succeeded"),
        ("warning", "run_finished"),
    ]
    assert seen[-1][2]["failed_step"] == "b"


def test_muted_logger_renders_nothing() -> None:
    """Below the logger's level no line is rendered at all."""
    logger = logging.getLogger("test.observe.muted")
    logger.setLevel(logging.ERROR)
    observer = LoggingObserver(logger)
    rendered: list[object] = []
    observer._emit = lambda level, fields: rendered.append(fields)  # type: ignore[method-assign]
    observer.run_started(RunEvent("S", "r", 0.0))
    assert rendered == []


# -- packaging --------------------------------------------------------------------------------


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its library an adapter says which extra to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'statesaga\[prometheus\]'"):
        PrometheusObserver(CollectorRegistry())
    with pytest.raises(MissingExtraError, match=r"pip install 'statesaga\[otel\]'"):
        TracingObserver()


def test_importing_the_adapters_needs_none_of_their_libraries() -> None:
    """``statesaga.observe`` and the adapter modules import with the libraries missing."""
    code = textwrap.dedent(
        """
        import sys
        for name in ("prometheus_client", "opentelemetry", "structlog"):
            sys.modules[name] = None
        import statesaga.observe, statesaga.observe.metrics, statesaga.observe.traces
        import statesaga.observe.logs
        statesaga.observe.logs.LoggingObserver()
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "ok"


# -- the worker's endpoint and the example ----------------------------------------------------


STRANDED = """
import os
from statesaga import Saga, Step


async def a(ctx):
    return None


async def b(ctx):
    if os.environ.get("DIE"):
        os._exit(3)  # the process dies mid-step: the run is left for a worker


class Stranded(Saga):
    steps = (Step("a", a), Step("b", b))

"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_worker_serves_metrics(tmp_path: Path) -> None:
    """`statesaga worker --metrics-port` serves /metrics with the runs it recovered."""
    (tmp_path / "stranded.py").write_text(STRANDED, encoding="utf-8")
    url = f"sqlite:///{tmp_path}/w.db"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    start = (
        "import asyncio, sys, stranded; asyncio.run(stranded.Stranded().execute(store=sys.argv[1]))"
    )
    died = subprocess.run(
        [sys.executable, "-c", start, url],
        env={**env, "DIE": "1", "STATESAGA_LEASE_SECONDS": "0.2"},
        timeout=30,
    )
    assert died.returncode == 3
    port = _free_port()
    command = [str(Path(sys.executable).parent / "statesaga"), "worker", "--store", url]
    worker = subprocess.Popen(
        [*command, "--poll", "0.05", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 15
        want = 'statesaga_runs_total{saga="Stranded",status="completed"} 1.0'
        while want not in body and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                continue
        assert want in body, worker.stdout.read() if worker.poll() is not None else body
        assert "# TYPE statesaga_step_duration_seconds histogram" in body
        assert "statesaga_observer_errors_total 0.0" in body
        assert "process_cpu_seconds_total" in body  # the global registry, process metrics too
    finally:
        worker.terminate()
        worker.wait(timeout=10)


@pytest.mark.parametrize("how", [["examples/monitoring.py"], ["-m", "examples.monitoring"]])
def test_monitoring_example_prints_metrics_and_spans(how: list[str]) -> None:
    """`python examples/monitoring.py` runs observed sagas and prints metrics and spans."""
    done = subprocess.run(
        [sys.executable, *how],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    out = done.stdout
    assert "statesaga_runs_total{" in out
    assert 'status="compensated"' in out
    assert "statesaga_step_attempts_total{" in out
    spans = out.split("Spans:")[1]
    assert "saga " in spans
    assert "  step " in spans
    assert "  compensate " in spans
    assert "ERROR" in spans
    assert "event=run_finished" in done.stderr


def test_observability_page_snippets_run() -> None:
    """The Python blocks of docs/observability.md run, and a saga runs observed after them."""
    page = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    runnable = [b for b in blocks if "import" in b]  # the others show signatures
    code = "\n".join(
        [
            *runnable,
            "import asyncio",
            "from statesaga import Saga, Step",
            "async def ok(ctx): return None",
            "class S(Saga): steps = (Step('a', ok),)",
            "print(asyncio.run(S().execute()).status)",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "completed"
    assert '"event": "run_finished"' in done.stderr
