"""Health endpoints of a long-running process (``statesaga worker``, ``statesaga relay``).

``/healthz`` says whether the process's loop still goes round: the loop records a heartbeat
each time (``Health.beat``), and the endpoint answers 503 once none came for ``stale_after``
seconds. ``/readyz`` says whether it can do its work: 200 when its checks pass (the store answers
a cheap query, the broker accepts a connection), 503 with the reason otherwise, and 503 while it
drains before it exits. With a Prometheus registry, the same server also serves ``/metrics``.

The server runs in a thread of its own (``http.server``), so a loop that is stuck is seen as
one: the heartbeat ages. The checks run on the loop, where the store and broker belong, and
must answer within ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from ._extras import needs

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..messaging.broker import Broker
    from ..store.base import SagaStore

log = logging.getLogger("statesaga.observe")

#: A readiness check: ``None`` when ready, else why not (one short line).
Check = Callable[[], Awaitable[str | None]]


class Health:
    """What the health endpoints report for one process.

    Args:
        heartbeat: When the process's loop last went round (``time.monotonic()``), as
            ``Worker.beaten_at`` and ``Relay.beaten_at`` record it.
        stale_after: Seconds without a heartbeat after which the process is not live.
        checks: Readiness checks, by name, run on ``loop`` in turn.
        loop: The event loop the checks run on (default: the running one).
        timeout: Seconds all checks together may take; longer is not ready.
    """

    def __init__(
        self,
        heartbeat: Callable[[], float],
        *,
        stale_after: float,
        checks: Mapping[str, Check] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.stale_after = stale_after
        self.checks = dict(checks or {})
        self.loop = loop or asyncio.get_running_loop()
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.draining = False

    def live(self) -> str | None:
        """``None`` while the heartbeat is fresh, else how old it is."""
        age = time.monotonic() - self.heartbeat()
        if age > self.stale_after:
            return f"no heartbeat for {age:.1f} s (at most {self.stale_after:g} s expected)"
        return None

    def ready(self) -> str | None:
        """``None`` when ready, else why not; called from another thread than the loop's."""
        if self.draining:
            return "draining: finishing the work in hand before exiting"
        if self.loop.is_closed():
            return "the event loop has stopped"
        future = asyncio.run_coroutine_threadsafe(self._run_checks(), self.loop)
        try:
            return future.result(self.timeout)
        except TimeoutError:
            future.cancel()
            return f"the checks did not answer within {self.timeout:g} s"
        except Exception as error:
            return f"the checks failed: {type(error).__name__}: {error}"

    async def _run_checks(self) -> str | None:
        for name, check in self.checks.items():
            try:
                why = await check()
            except Exception as error:
                why = f"{type(error).__name__}: {error}"
            if why is not None:
                return f"{name}: {why}"
        return None


def store_check(store: SagaStore) -> Check:
    """A readiness check: ``store`` answers a query for one unfinished run."""

    async def check() -> str | None:
        await store.unfinished(time.time(), limit=1)
        return None

    return check


def broker_check(url: str) -> Check:
    """A readiness check: the broker at ``url`` accepts a connection (opened and closed)."""

    async def check() -> str | None:
        from ..messaging.brokers import broker_from_url

        broker: Broker = broker_from_url(url)
        try:
            await broker.connect()
        finally:
            await broker.close()
        return None

    return check


class HealthServer:
    """The endpoints ``start_health_server`` started; ``close()`` stops them.

    Attributes:
        port: The port it listens on (the one chosen, if asked for port 0).
        health: What it reports.
    """

    def __init__(self, server: ThreadingHTTPServer, health: Health) -> None:
        self._server = server
        self.port: int = server.server_port
        self.health = health
        self._thread = threading.Thread(
            target=server.serve_forever, name="statesaga-health", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_health_server(
    port: int,
    health: Health,
    *,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
) -> HealthServer:
    """Serve ``/healthz`` and ``/readyz`` (and ``/metrics`` from ``registry``, if given) on
    ``port`` from a background thread.

    Raises:
        OSError: The port cannot be listened on.
        MissingExtraError: ``registry`` is given and ``prometheus-client`` is not installed.
    """
    metrics: Callable[[], bytes] | None = None
    content_type = ""
    if registry is not None:
        with needs("the metrics endpoint", "prometheus_client", "prometheus"):
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        content_type = CONTENT_TYPE_LATEST
        metrics = lambda: generate_latest(registry)  # noqa: E731

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(health.live())
            elif path == "/readyz":
                self._answer(health.ready())
            elif path == "/metrics" and metrics is not None:
                self._send(200, metrics(), content_type)
            else:
                where = "/healthz, /readyz or /metrics" if metrics else "/healthz or /readyz"
                self._send(404, f"not found: try {where}\n".encode(), "text/plain")

        def _answer(self, why: str | None) -> None:
            if why is None:
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._send(503, f"{why}\n".encode(), "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes come every few seconds: not worth a log line each

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    return HealthServer(server, health)
