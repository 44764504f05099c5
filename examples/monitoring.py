"""Full observability for any example: Prometheus metrics, OpenTelemetry spans, logs.

Call ``setup_monitoring()`` once before running sagas: every run after it is counted, timed,
traced and logged. Run this file (``python examples/monitoring.py`` or
``python -m examples.monitoring``) to see it on the order example: the log events go to
stderr, then the metrics and the spans the runs produced are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from statesaga.observe import add_observer, remove_observer
from statesaga.observe.logs import LoggingObserver
from statesaga.observe.metrics import PrometheusObserver
from statesaga.observe.traces import TracingObserver


@dataclass
class Monitoring:
    """What ``setup_monitoring`` wired, to inspect or to undo."""

    registry: CollectorRegistry
    tracer_provider: TracerProvider
    span_exporter: SpanExporter
    metrics: PrometheusObserver
    tracing: TracingObserver
    logs: LoggingObserver

    def metrics_text(self, prefix: str = "statesaga_", *, buckets: bool = True) -> str:
        """The registry in Prometheus' text format, only the lines about ``prefix*`` metrics.

        Args:
            prefix: Keep the metrics whose names start with it.
            buckets: Keep histograms' ``_bucket`` series too.
        """
        lines = generate_latest(self.registry).decode().splitlines()
        # "# HELP name ...", "# TYPE name ..." or "name{labels} value"; skip _created series
        names = [(line.split(" ", 3)[2] if line.startswith("# ") else line) for line in lines]
        return "\n".join(
            line
            for line, name in zip(lines, names, strict=True)
            if name.startswith(prefix)
            and not name.split("{")[0].endswith("_created")
            and (buckets or not name.split("{")[0].endswith("_bucket"))
        )

    def finished_spans(self) -> Sequence[ReadableSpan]:
        """The spans ended so far (when spans go to the default in-memory exporter)."""
        exporter = self.span_exporter
        return exporter.get_finished_spans() if isinstance(exporter, InMemorySpanExporter) else ()

    def close(self) -> None:
        """Stop observing runs and flush the spans."""
        for observer in (self.metrics, self.tracing, self.logs):
            remove_observer(observer)
        self.tracer_provider.shutdown()


def setup_monitoring(
    *,
    service_name: str = "statesaga-examples",
    labels: Mapping[str, str] | None = None,
    log_format: Literal["json", "kv"] = "kv",
    span_exporter: SpanExporter | None = None,
) -> Monitoring:
    """Observe every run from now on: metrics, spans and logs.

    Args:
        service_name: The ``service.name`` of the spans, and a ``service`` metric label.
        labels: More constant metric labels.
        log_format: ``"json"`` or ``"kv"`` log lines.
        span_exporter: Where spans go; by default kept in memory (``finished_spans()``).
            Spans are exported as each ends: with a network exporter, a service would use a
            ``BatchSpanProcessor`` instead.
    """
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry, labels={"service": service_name, **(labels or {})})

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = span_exporter if span_exporter is not None else InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Nobody set one: make it global, so spans actions start nest under their step.
        trace.set_tracer_provider(provider)
    tracing = TracingObserver(provider)

    logger = logging.getLogger("statesaga.events")
    if not logger.handlers:
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logs = LoggingObserver(logger, format=log_format)

    for observer in (metrics, tracing, logs):
        add_observer(observer)
    return Monitoring(registry, provider, exporter, metrics, tracing, logs)


def span_tree(spans: Sequence[ReadableSpan]) -> list[str]:
    """One line per span, children indented under their parent: name, parent, status, ms."""
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in by_id else None, []).append(span)
    rows: list[tuple[str, str, str, str]] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            rows.append(
                (
                    "  " * depth + span.name,
                    by_id[parent].name if parent is not None else "-",
                    span.status.status_code.name,
                    f"{ms:.3f} ms",
                )
            )
            if span.context is not None:
                walk(span.context.span_id, depth + 1)

    walk(None, 0)
    header = ("span", "parent", "status", "duration")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    return [
        f"{name:<{widths[0]}}  {parent:<{widths[1]}}  {status:<{widths[2]}}  {duration:>10}"
        for name, parent, status, duration in (header, *rows)
    ]


async def _run_orders() -> None:
    from examples.order_processing import OrderProcessingSaga

    order = {"user_id": "USER-456", "total_amount": 99.99}
    sagas = (
        OrderProcessingSaga(order_id="ORD-2001", items=[{"sku": "ITEM-1", "quantity": 2}], **order),
        # The carrier refuses hazardous goods: the payment is refunded, the stock released.
        OrderProcessingSaga(
            order_id="ORD-2002",
            items=[{"sku": "ITEM-1", "quantity": 1}, {"sku": "ITEM-HAZMAT", "quantity": 1}],
            **order,
        ),
    )
    for saga in sagas:
        result = await saga.execute()
        print(f"{saga.data['order_id']}: {result.status.value.upper()}")


def main() -> None:
    """Run the order example observed, then print its metrics and spans."""
    monitoring = setup_monitoring()
    try:
        asyncio.run(_run_orders())
        print("\nMetrics (statesaga_*, histogram buckets left out):")
        print(monitoring.metrics_text(buckets=False))
        print("\nSpans:")
        print("\n".join(span_tree(monitoring.finished_spans())))
    finally:
        monitoring.close()


if __name__ == "__main__":
    main()
