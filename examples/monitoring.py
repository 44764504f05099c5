"""Full observability for any example: Prometheus metrics, OpenTelemetry spans, logs.

Call ``setup_monitoring()`` once before running sagas: every run after it is counted, timed,
traced and logged. The metrics go to ``prometheus_client``'s default registry, the one that
``start_http_server`` and most frameworks' ``/metrics`` serve. The spans go to an OTLP
collector when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) variable is set, and are kept in memory otherwise.

Run this file (``python examples/monitoring.py`` or ``python -m examples.monitoring``) to see
it on the order example: the log events go to stderr, then the metrics and the spans the runs
produced are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import prometheus_client
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

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
    settings: Mapping[str, Any]  # what setup_monitoring() was called with

    def metrics_text(self, prefix: str = "statesaga_", *, buckets: bool = True) -> str:
        """The registry in Prometheus' text format, only the lines about ``prefix*`` metrics.

        Args:
            prefix: Keep the metrics whose names start with it.
            buckets: Keep histograms' ``_bucket`` series too.
        """
        lines = prometheus_client.generate_latest(self.registry).decode().splitlines()
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
        """Stop observing runs, take the metrics out of the registry, send the last spans."""
        global _active
        for observer in (self.metrics, self.tracing, self.logs):
            remove_observer(observer)
        self.metrics.unregister()
        self.tracer_provider.shutdown()
        if _active is self:
            _active = None


#: The monitoring set up and not closed yet: one per process (a registry takes metrics once).
_active: Monitoring | None = None


def setup_monitoring(
    *,
    service_name: str = "statesaga-examples",
    labels: Mapping[str, str] | None = None,
    log_format: Literal["json", "kv"] = "kv",
    registry: CollectorRegistry | None = None,
    span_exporter: SpanExporter | None = None,
) -> Monitoring:
    """Observe every run from now on: metrics, spans and logs.

    Set it up once per process. Called again with the same settings before ``close()``, it
    returns the monitoring already set up (a registry takes the metrics only once); with other
    settings it raises ``ValueError``: ``close()`` the first one before setting up another.

    Args:
        service_name: The ``service.name`` of the spans, and a ``service`` metric label.
        labels: More constant metric labels.
        log_format: ``"json"`` or ``"kv"`` log lines.
        registry: Where the metrics go; by default ``prometheus_client``'s default registry,
            the one ``start_http_server`` serves. Tests pass a ``CollectorRegistry()`` of
            their own.
        span_exporter: Where spans go. By default an OTLP exporter when
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set
            (configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables), else memory
            (``finished_spans()``). Spans kept in memory are there as each ends; the others
            are sent in batches, off the sagas' path, and the last ones by ``close()``.
    """
    global _active
    registry = prometheus_client.REGISTRY if registry is None else registry
    settings = {
        "service_name": service_name,
        "labels": dict(labels or {}),
        "log_format": log_format,
        "registry": registry,
        "span_exporter": span_exporter,
    }
    if _active is not None:
        if _active.settings == settings:
            return _active
        raise ValueError(
            "monitoring is already set up, with other settings: call close() on the "
            "Monitoring that setup_monitoring() returned first"
        )
    exporter = span_exporter if span_exporter is not None else _span_exporter()
    metrics = PrometheusObserver(registry, labels={"service": service_name, **(labels or {})})

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if isinstance(exporter, InMemorySpanExporter):
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(exporter))
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
    _active = Monitoring(registry, provider, exporter, metrics, tracing, logs, settings)
    return _active


def _otlp_endpoint() -> str | None:
    """The collector the standard variables name, if they name one."""
    env = os.environ
    return env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def _span_exporter() -> SpanExporter:
    """OTLP when the standard variables name a collector, else memory."""
    if _otlp_endpoint() is None:
        return InMemorySpanExporter()
    env = os.environ
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"  # the specification's default
    )
    # Both exporters read the endpoint, headers, timeout... from the same variables.
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as OTLPGrpcSpanExporter,
        )

        return OTLPGrpcSpanExporter()
    raise ValueError(
        f"OTLP protocol {protocol!r} (OTEL_EXPORTER_OTLP_PROTOCOL) is not supported here: "
        "use 'http/protobuf' or 'grpc'"
    )


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
        if isinstance(monitoring.span_exporter, InMemorySpanExporter):
            print("\n".join(span_tree(monitoring.finished_spans())))
        else:
            print(f"sent with OTLP to {_otlp_endpoint()}")
    finally:
        monitoring.close()


if __name__ == "__main__":
    main()
