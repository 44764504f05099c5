"""Observability overhead: the in-memory 4-step chain with no observer and with adapters on.

N concurrent runs (``asyncio.gather``) of a 4-step chain of no-op steps, in rounds that
alternate between configurations: no observer; each adapter alone; all three together.
Every adapter does its full work: Prometheus metrics in a fresh registry, OpenTelemetry spans
through the SDK with a ``SimpleSpanProcessor`` into an exporter that drops them, and JSON log
lines rendered and written to ``os.devnull``. The overhead is reported per step: (observed
time - plain time) / 4, in microseconds.

Times are the process' CPU time, not wall-clock time: everything measured runs on this one
thread, and other load on a shared machine then does not count as observers' cost.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from statesaga import Saga, SagaStatus, Step, compile_saga
from statesaga.observe import Observer, add_observer, remove_observer

STEPS = 4


async def noop(ctx: Any) -> None:
    """A no-op step."""
    return None


class ObservedBench(Saga):
    """4-step chain, every step compensable, completes (the shape of ``Bench``)."""

    steps = tuple(Step(name, noop, compensate=noop) for name in "abcd")


@dataclass
class ObserveResult:
    """One configuration: microseconds per saga, and the overhead per step over none."""

    config: str
    us_per_saga: float
    overhead_us_per_step: float
    rounds_us: list[float] = field(default_factory=list)


def _metrics() -> list[Observer]:
    from prometheus_client import CollectorRegistry

    from statesaga.observe.metrics import PrometheusObserver

    return [PrometheusObserver(CollectorRegistry())]


def _traces() -> list[Observer]:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from statesaga.observe.traces import TracingObserver

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return [TracingObserver(provider)]


def _logs() -> list[Observer]:
    from statesaga.observe.logs import LoggingObserver

    logger = logging.getLogger("statesaga.bench.events")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115
    return [LoggingObserver(logger, format="json")]


CONFIGS: dict[str, Callable[[], list[Observer]]] = {
    "no observer": list,
    "Prometheus": _metrics,
    "OpenTelemetry": _traces,
    "logs (JSON)": _logs,
    "all three": lambda: [*_metrics(), *_traces(), *_logs()],
}


async def _round(n: int, observers: list[Observer]) -> float:
    for observer in observers:
        add_observer(observer)
    try:
        gc.collect()
        start = time.process_time()
        results = await asyncio.gather(*(ObservedBench(i=i).execute() for i in range(n)))
        elapsed = time.process_time() - start
    finally:
        for observer in observers:
            remove_observer(observer)
    if any(r.status is not SagaStatus.COMPLETED for r in results):
        raise SystemExit("observed benchmark: a run did not complete")
    return elapsed


async def bench_observe(n: int, rounds: int) -> list[ObserveResult]:
    """Median µs per saga of each configuration, rounds alternating (after one warm-up)."""
    compile_saga(ObservedBench)
    built = {name: make() for name, make in CONFIGS.items()}
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    names = list(CONFIGS)
    for name in names:  # warm-up: imports, caches, metric children
        await _round(n, built[name])
    for i in range(rounds):
        # Rotate the order so that drift within a round is spread over every configuration.
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(await _round(n, built[name]))
    per_saga = 1e6 / n
    plain = statistics.median(times["no observer"]) * per_saga
    results = []
    for name in names:
        us = statistics.median(times[name]) * per_saga
        results.append(
            ObserveResult(
                config=name,
                us_per_saga=us,
                overhead_us_per_step=(us - plain) / STEPS,
                rounds_us=[t * per_saga for t in times[name]],
            )
        )
    return results


if __name__ == "__main__":
    for r in asyncio.run(bench_observe(1000, 5)):
        print(
            f"{r.config:<14} {r.us_per_saga:8.2f} µs/saga  {r.overhead_us_per_step:+7.2f} µs/step"
        )
