"""What ``worker`` and ``relay`` serve besides their work: ``--metrics-port`` (Prometheus) and
``--health-port`` (``/healthz``, ``/readyz``), on one server when the two ports are equal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import click

from ..observe.health import Check, Health, HealthServer, start_health_server

if TYPE_CHECKING:
    from ..observe.metrics import MetricsServer, PrometheusObserver

_S = TypeVar("_S")

metrics_port_option = click.option(
    "--metrics-port",
    default=0,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve Prometheus metrics on http://0.0.0.0:PORT/metrics (0: off).",
)

health_port_option = click.option(
    "--health-port",
    default=0,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve http://0.0.0.0:PORT/healthz (200 while the loop goes round, 503 once it "
    "missed three polls, at least 5 s) and /readyz (200 when the store, and the broker if "
    "given, answer; 503 with the reason otherwise, and while draining). The same port as "
    "--metrics-port serves all three from one server (0: off).",
)


def stale_after(poll: float) -> float:
    """Seconds without a heartbeat after which a loop polling every ``poll`` s is not live."""
    return max(3 * poll, 5.0)


class Endpoints:
    """The servers a command started; ``close()`` stops them.

    Attributes:
        health: What ``/healthz`` and ``/readyz`` report (``None``: not served).
        observer: The Prometheus observer behind ``/metrics`` (``None``: not served).
    """

    def __init__(
        self,
        metrics_port: int,
        health_port: int,
        heartbeat: Callable[[], float],
        poll: float,
        checks: Mapping[str, Check],
    ) -> None:
        self.health: Health | None = None
        self.observer: PrometheusObserver | None = None
        self._metrics: MetricsServer | None = None
        self._health: HealthServer | None = None
        try:
            if metrics_port and metrics_port != health_port:
                from ..observe.metrics import start_metrics_server

                self._metrics = _listening(metrics_port, "metrics", start_metrics_server)
                self.observer = self._metrics.observer
                click.echo(f"metrics on http://0.0.0.0:{self._metrics.port}/metrics")
            if health_port:
                self.health = Health(heartbeat, stale_after=stale_after(poll), checks=checks)
                registry = None
                if metrics_port == health_port:
                    from ..observe.metrics import registered_observer

                    self.observer = registered_observer()
                    registry = self.observer.registry
                health = self.health
                self._health = _listening(
                    health_port,
                    "health",
                    lambda port: start_health_server(port, health, registry=registry),
                )
                served = "/healthz, /readyz" + (", /metrics" if registry is not None else "")
                click.echo(f"{served} on http://0.0.0.0:{self._health.port}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop serving (idempotent)."""
        for server in (self._metrics, self._health):
            if server is not None:
                server.close()
        self._metrics = self._health = None


def _listening(port: int, what: str, start: Callable[[int], _S]) -> _S:
    try:
        return start(port)
    except OSError as error:
        raise click.ClickException(f"cannot serve {what} on port {port}: {error}") from None
