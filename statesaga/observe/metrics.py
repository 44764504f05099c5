"""Prometheus metrics for every run: counters, duration histograms and gauges.

Needs ``prometheus-client`` (``pip install 'statesaga[prometheus]'``), imported when the
observer is created. ``docs/observability.md`` lists every metric.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RunWaiting
from ..result import SagaStatus
from ..vocabulary import Outcome
from ._buckets import DEFAULT_BUCKETS, DEFAULT_RUN_BUCKETS, DEFAULT_WAIT_BUCKETS
from ._extras import MissingExtraError, needs
from .collectors import WaitingRuns, observer_errors_collector, outbox_collector
from .events import RunEvent, StepEvent
from .observer import Observer
from .registry import add_observer, observers

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_RUN_BUCKETS",
    "DEFAULT_WAIT_BUCKETS",
    "MetricsServer",
    "MissingExtraError",
    "PrometheusObserver",
    "WaitingRuns",
    "start_metrics_server",
]

#: Label names the metrics use themselves; constant labels may not reuse them.
_OWN_LABELS = frozenset(("saga", "step", "status", "outcome", "phase", "wait"))


class _Family:
    """One labelled metric with its children cached: ``labels()`` takes a lock each call."""

    __slots__ = ("_children", "_const", "_metric")

    def __init__(self, metric: Any, const: tuple[str, ...]) -> None:
        self._metric = metric
        self._const = const
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*self._const, *values)
        return child


class PrometheusObserver(Observer):
    """Counts runs, step attempts, retries, compensations, waits and skipped steps; times
    steps, runs and waits. (A store's waiting runs are counted by ``WaitingRuns``.)

    Args:
        registry: The ``prometheus_client`` registry to register the metrics in (by default
            the global one, which ``start_http_server`` serves).
        namespace: Prefix of every metric name.
        labels: Constant labels added to every metric (such as ``{"service": "orders"}``).
        buckets: Histogram buckets (seconds) for step and compensation durations.
        run_buckets: Histogram buckets (seconds) for whole-run durations.
        wait_buckets: Histogram buckets (seconds) for how long waits waited.

    Raises:
        MissingExtraError: ``prometheus-client`` is not installed.
        ValueError: A constant label reuses a label the metrics set themselves, or the
            metrics are already registered in ``registry``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "statesaga",
        labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        run_buckets: Sequence[float] = DEFAULT_RUN_BUCKETS,
        wait_buckets: Sequence[float] = DEFAULT_WAIT_BUCKETS,
    ) -> None:
        with needs("PrometheusObserver", "prometheus_client", "prometheus"):
            import prometheus_client as prom
        const = dict(labels or {})
        clash = sorted(_OWN_LABELS & const.keys())
        if clash:
            raise ValueError(
                f"constant labels {clash} clash with labels the statesaga metrics set; "
                f"rename them (the metrics use {sorted(_OWN_LABELS)})"
            )
        self.registry = prom.REGISTRY if registry is None else registry
        self.namespace = namespace
        self.labels: Mapping[str, str] = const
        names, values = tuple(const), tuple(const.values())
        reg = self.registry
        self._collectors: list[Any] = []

        def family(kind: Any, name: str, doc: str, own: Iterable[str], **extra: Any) -> _Family:
            metric = kind(name, doc, (*names, *own), namespace=namespace, registry=reg, **extra)
            self._collectors.append(metric)
            return _Family(metric, values)

        hist = {"buckets": tuple(buckets)}
        self._runs_started = family(
            prom.Counter, "runs_started_total", "Runs started or taken over.", ("saga",)
        )
        self._runs = family(
            prom.Counter, "runs_total", "Runs that reached a final state.", ("saga", "status")
        )
        self._run_duration = family(
            prom.Histogram,
            "run_duration_seconds",
            "Seconds from a run's start (or takeover) to its final state.",
            ("saga", "status"),
            buckets=tuple(run_buckets),
        )
        self._runs_suspended = family(
            prom.Counter,
            "runs_suspended_total",
            "Runs that stopped unfinished (cancelled past the pivot, abandoned, or stopped by "
            "an error).",
            ("saga",),
        )
        self._runs_parked = family(
            prom.Counter,
            "runs_parked_total",
            "Runs stored waiting at their waits, left by this process until they are due.",
            ("saga",),
        )
        self._in_flight = family(
            prom.Gauge, "runs_in_flight", "Runs being driven by this process now.", ("saga",)
        )
        self._attention = family(
            prom.Gauge,
            "runs_needing_attention",
            "Runs this process left failed (needing attention) and has not finished since.",
            ("saga",),
        )
        self._step_attempts = family(
            prom.Counter,
            "step_attempts_total",
            "Attempts of steps' actions, by how they ended.",
            ("saga", "step", "outcome"),
        )
        self._step_duration = family(
            prom.Histogram,
            "step_duration_seconds",
            "Seconds an attempt of a step's action took.",
            ("saga", "step", "outcome"),
            **hist,
        )
        self._compensation_attempts = family(
            prom.Counter,
            "compensation_attempts_total",
            "Attempts of steps' compensations, by how they ended.",
            ("saga", "step", "outcome"),
        )
        self._compensation_duration = family(
            prom.Histogram,
            "compensation_duration_seconds",
            "Seconds an attempt of a step's compensation took.",
            ("saga", "step", "outcome"),
            **hist,
        )
        self._retries = family(
            prom.Counter,
            "retries_total",
            "Failed attempts followed by another, of actions or compensations.",
            ("saga", "step", "phase"),
        )
        self._waits = family(
            prom.Counter,
            "waits_total",
            "Waits that ended, by how: signalled, timed_out or given_up.",
            ("saga", "wait", "outcome"),
        )
        self._wait_duration = family(
            prom.Histogram,
            "wait_duration_seconds",
            "Seconds from a wait's start to its end (across processes for a stored run).",
            ("saga", "wait", "outcome"),
            buckets=tuple(wait_buckets),
        )
        self._skipped = family(
            prom.Counter,
            "steps_skipped_total",
            "Conditional steps skipped: their condition was false.",
            ("saga", "step"),
        )
        for collector in (
            observer_errors_collector(namespace, names, values),
            outbox_collector(namespace, names, values),
        ):
            reg.register(collector)
            self._collectors.append(collector)
        self._lock = threading.Lock()
        self._needing_attention: dict[str, str] = {}  # run id -> saga

    def unregister(self) -> None:
        """Remove this observer's metrics from its registry (after ``remove_observer``)."""
        for collector in self._collectors:
            self.registry.unregister(collector)
        self._collectors.clear()

    # -- runs ---------------------------------------------------------------------------------

    def run_started(self, event: RunEvent) -> None:
        self._runs_started(event.saga).inc()
        self._in_flight(event.saga).inc()

    def run_finished(self, event: RunEvent) -> None:
        status = event.status.value if event.status is not None else "unknown"
        self._in_flight(event.saga).dec()
        self._runs(event.saga, status).inc()
        if event.duration is not None:
            self._run_duration(event.saga, status).observe(event.duration)
        # A failed run needs a person until a resume finishes it; one process can only see
        # the runs it drove itself.
        with self._lock:
            if event.status is SagaStatus.FAILED:
                if event.saga_id in self._needing_attention:
                    return
                self._needing_attention[event.saga_id] = event.saga
                delta = 1
            elif self._needing_attention.pop(event.saga_id, None) is not None:
                delta = -1
            else:
                return
        self._attention(event.saga).inc(delta)

    def run_suspended(self, event: RunEvent) -> None:
        self._in_flight(event.saga).dec()
        if isinstance(event.error, RunWaiting):  # parked: the normal way to wait, not trouble
            self._runs_parked(event.saga).inc()
        else:
            self._runs_suspended(event.saga).inc()

    # -- actions ------------------------------------------------------------------------------

    def step_succeeded(self, event: StepEvent) -> None:
        self._step_ended(event, Outcome.SUCCEEDED)

    def step_failed(self, event: StepEvent) -> None:
        self._step_ended(event, Outcome.FAILED)

    def step_timed_out(self, event: StepEvent) -> None:
        self._step_ended(event, Outcome.TIMED_OUT)

    def step_retried(self, event: StepEvent) -> None:
        self._step_ended(event, Outcome.RETRIED)
        self._retries(event.saga, event.step, "action").inc()

    def _step_ended(self, event: StepEvent, outcome: Outcome) -> None:
        self._step_attempts(event.saga, event.step, outcome).inc()
        if event.duration is not None:
            self._step_duration(event.saga, event.step, outcome).observe(event.duration)

    def step_skipped(self, event: StepEvent) -> None:
        self._skipped(event.saga, event.step).inc()

    # -- waits --------------------------------------------------------------------------------

    def wait_ended(self, event: StepEvent) -> None:
        outcome = event.outcome or "unknown"
        self._waits(event.saga, event.step, outcome).inc()
        if event.duration is not None:
            self._wait_duration(event.saga, event.step, outcome).observe(event.duration)

    # -- compensations ------------------------------------------------------------------------

    def compensation_succeeded(self, event: StepEvent) -> None:
        self._compensation_ended(event, Outcome.SUCCEEDED)

    def compensation_failed(self, event: StepEvent) -> None:
        self._compensation_ended(event, Outcome.FAILED)

    def compensation_retried(self, event: StepEvent) -> None:
        self._compensation_ended(event, Outcome.RETRIED)
        self._retries(event.saga, event.step, "compensation").inc()

    def _compensation_ended(self, event: StepEvent, outcome: Outcome) -> None:
        self._compensation_attempts(event.saga, event.step, outcome).inc()
        if event.duration is not None:
            self._compensation_duration(event.saga, event.step, outcome).observe(event.duration)


class MetricsServer:
    """The ``/metrics`` endpoint ``start_metrics_server`` started; ``close()`` stops it.

    Attributes:
        port: The port it listens on (the one chosen, if asked for port 0).
        observer: The ``PrometheusObserver`` feeding it.
    """

    def __init__(self, server: Any, thread: threading.Thread, observer: PrometheusObserver):
        self._server = server
        self._thread = thread
        self.port: int = server.server_port
        self.observer = observer

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int,
    *,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
    labels: Mapping[str, str] | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` on ``port`` from a background thread, with runs observed.

    Uses the ``PrometheusObserver`` already registered for ``registry`` if there is one, else
    creates and registers one.

    Args:
        port: The TCP port (0 picks a free one: see ``MetricsServer.port``).
        addr: The address to listen on.
        registry: The registry to serve (by default the global one, with process metrics).
        labels: Constant labels, for an observer created here.

    Raises:
        MissingExtraError: ``prometheus-client`` is not installed.
    """
    with needs("the metrics server", "prometheus_client", "prometheus"):
        import prometheus_client as prom
    observer = registered_observer(registry, labels)
    server, thread = prom.start_http_server(port, addr=addr, registry=observer.registry)
    return MetricsServer(server, thread, observer)


def registered_observer(
    registry: CollectorRegistry | None = None, labels: Mapping[str, str] | None = None
) -> PrometheusObserver:
    """The ``PrometheusObserver`` registered for ``registry`` (default: the global one), made
    and registered now if there is none (with ``labels``)."""
    with needs("PrometheusObserver", "prometheus_client", "prometheus"):
        import prometheus_client as prom
    registry = prom.REGISTRY if registry is None else registry
    observer = next(
        (o for o in observers() if isinstance(o, PrometheusObserver) and o.registry is registry),
        None,
    )
    if observer is None:
        observer = PrometheusObserver(registry, labels=labels)
        add_observer(observer)
    return observer
