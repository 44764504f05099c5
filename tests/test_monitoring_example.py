"""examples/monitoring.py: metrics in the default registry, spans to OTLP when configured."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import prometheus_client
import pytest
from helpers import ROOT
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as OTLPGrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from examples import monitoring as example
from examples.order_processing import OrderProcessingSaga
from examples.order_processing.services import world

OTLP_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)
COMPLETED_RUNS = (
    'statesaga_runs_total{saga="OrderProcessingSaga",service="statesaga-examples",'
    'status="completed"}'
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTLP variables from outside; whatever a test set up is closed after it."""
    for name in OTLP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    world.reset()
    yield
    if example._active is not None:
        example._active.close()


def order() -> OrderProcessingSaga:
    return OrderProcessingSaga(
        order_id="ORD-1",
        user_id="alice",
        items=[{"sku": "ITEM-1", "quantity": 1}],
        total_amount=9.99,
    )


def sample(name: str, registry: CollectorRegistry = prometheus_client.REGISTRY) -> float | None:
    labels = {"saga": "OrderProcessingSaga", "service": "statesaga-examples"}
    return registry.get_sample_value(name, {**labels, "status": "completed"})


# -- a real OTLP collector: spans posted over HTTP (protobuf) or sent over gRPC ---------------


class Collector:
    """What an OTLP receiver on 127.0.0.1 was sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.received = threading.Event()
        self.endpoint = ""

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        self.requests.append(request)
        self.received.set()

    def span_names(self) -> set[str]:
        return {
            span.name
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        }

    def service_names(self) -> set[str]:
        return {
            attribute.value.string_value
            for request in self.requests
            for resource in request.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }


@pytest.fixture
def http_collector() -> Iterator[Collector]:
    """An OTLP/HTTP receiver: POST /v1/traces with an ExportTraceServiceRequest."""
    collector = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            collector.paths.append(self.path)
            collector.take(request)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    collector.endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def grpc_collector() -> Iterator[Collector]:
    """An OTLP/gRPC receiver: the TraceService's Export."""
    collector = Collector()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            collector.take(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    collector.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield collector
    finally:
        server.stop(grace=None).wait(timeout=5)


# -- metrics ---------------------------------------------------------------------------------


async def test_metrics_land_in_the_default_registry() -> None:
    """After a run, the default registry (what start_http_server serves) has its metrics."""
    example.setup_monitoring()
    await order().execute()
    assert f"{COMPLETED_RUNS} 1.0" in prometheus_client.generate_latest().decode()


async def test_a_registry_passed_gets_the_metrics_instead_of_the_default_one() -> None:
    """setup_monitoring(registry=...) keeps the default registry free of statesaga metrics."""
    registry = CollectorRegistry()
    example.setup_monitoring(registry=registry)
    await order().execute()
    assert sample("statesaga_runs_total", registry) == 1.0
    assert sample("statesaga_runs_total") is None


async def test_setting_up_twice_gives_the_same_monitoring_and_counts_runs_once() -> None:
    """A second setup_monitoring() with the same settings returns the first, no duplicates."""
    first = example.setup_monitoring()
    assert example.setup_monitoring() is first
    await order().execute()
    assert sample("statesaga_runs_total") == 1.0


def test_setting_up_again_with_other_settings_asks_to_close_first() -> None:
    """setup_monitoring() with other settings while one is set up raises, saying close()."""
    example.setup_monitoring()
    with pytest.raises(ValueError, match=r"call close\(\)"):
        example.setup_monitoring(labels={"team": "checkout"})


async def test_close_takes_the_metrics_out_so_monitoring_can_be_set_up_again() -> None:
    """After close(), the default registry has no statesaga metrics and setup works again."""
    example.setup_monitoring().close()
    assert "statesaga_" not in prometheus_client.generate_latest().decode()
    example.setup_monitoring(labels={"team": "checkout"})
    await order().execute()
    assert "statesaga_runs_total{" in prometheus_client.generate_latest().decode()


# -- spans -----------------------------------------------------------------------------------


async def test_without_otlp_variables_spans_are_kept_in_memory() -> None:
    """With no OTEL_EXPORTER_OTLP_* endpoint, the spans are in finished_spans()."""
    monitoring = example.setup_monitoring(registry=CollectorRegistry())
    await order().execute()
    assert isinstance(monitoring.span_exporter, InMemorySpanExporter)
    assert "saga OrderProcessingSaga" in {span.name for span in monitoring.finished_spans()}


async def test_spans_go_to_the_otlp_http_collector_the_endpoint_variable_names(
    http_collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: the spans are posted to its /v1/traces (protobuf)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_collector.endpoint)
    monitoring = example.setup_monitoring(registry=CollectorRegistry())
    assert isinstance(monitoring.span_exporter, OTLPSpanExporter)
    await order().execute()
    monitoring.close()  # sends the last batch
    assert http_collector.received.wait(timeout=10)
    assert set(http_collector.paths) == {"/v1/traces"}
    assert {"saga OrderProcessingSaga", "step reserve_inventory"} <= http_collector.span_names()
    assert http_collector.service_names() == {"statesaga-examples"}


async def test_spans_go_over_grpc_when_the_protocol_variable_says_grpc(
    grpc_collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the spans are exported to the gRPC collector."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_collector.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monitoring = example.setup_monitoring(registry=CollectorRegistry())
    assert isinstance(monitoring.span_exporter, OTLPGrpcSpanExporter)
    await order().execute()
    monitoring.close()
    assert grpc_collector.received.wait(timeout=10)
    assert "saga OrderProcessingSaga" in grpc_collector.span_names()


def test_an_otlp_protocol_it_cannot_speak_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/json raises ValueError naming the variable."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        example.setup_monitoring(registry=CollectorRegistry())


def test_a_refused_setup_leaves_the_registry_free_for_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a refused OTLP protocol, setup_monitoring() works on the same registry."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        example.setup_monitoring(registry=registry)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert example.setup_monitoring(registry=registry).registry is registry


def test_the_script_sends_its_spans_to_the_collector_the_environment_names(
    http_collector: Collector,
) -> None:
    """`OTEL_EXPORTER_OTLP_ENDPOINT=... python -m examples.monitoring` exports every span."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.monitoring"],
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": http_collector.endpoint},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"sent with OTLP to {http_collector.endpoint}" in done.stdout
    assert "  step " not in done.stdout.split("Spans:")[1]  # not printed: sent
    assert {"saga OrderProcessingSaga", "compensate reserve_inventory"} <= (
        http_collector.span_names()
    )
