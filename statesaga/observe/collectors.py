"""Prometheus collectors read at scrape time: observer errors, outbox messages, waiting runs.

The hot path never touches them: each reads its numbers when ``/metrics`` is scraped.
``WaitingRuns`` counts a store's waiting runs, which no process can count by itself (a run
parks in one process and is resumed by another). Needs ``prometheus-client``, imported when a
collector is created.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._extras import needs
from .registry import OBSERVER_ERRORS

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

    from ..store.base import SagaStore

__all__ = ["WaitingRuns"]

_log = logging.getLogger("statesaga.observe")


def observer_errors_collector(
    namespace: str, names: tuple[str, ...], values: tuple[str, ...]
) -> Any:
    """A collector reading ``OBSERVER_ERRORS`` at scrape time (the hot path never touches it)."""
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.registry import Collector

    name = f"{namespace}_observer_errors" if namespace else "observer_errors"

    class ObserverErrorsCollector(Collector):
        def collect(self) -> Iterator[CounterMetricFamily]:
            family = CounterMetricFamily(
                name, "Exceptions raised by observers' hooks (logged, never raised).", labels=names
            )
            family.add_metric(list(values), OBSERVER_ERRORS.count)
            yield family

    return ObserverErrorsCollector()


#: Outbox counters: (outcome label, ``OutboxStats`` attribute). ``optimistic`` and ``fallback``
#: together say how often the relay was needed.
_OUTBOX_OUTCOMES = (
    ("optimistic", "optimistic_sent"),
    ("fallback", "fallback"),
    ("relay_sent", "relay_sent"),
    ("relay_failed", "relay_failed"),
    ("dead", "dead"),
)


def outbox_collector(namespace: str, names: tuple[str, ...], values: tuple[str, ...]) -> Any:
    """A collector reading ``OUTBOX_STATS`` at scrape time, like the observer errors."""
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.registry import Collector

    from ..messaging.stats import OUTBOX_STATS

    name = f"{namespace}_outbox_messages" if namespace else "outbox_messages"

    class OutboxCollector(Collector):
        def collect(self) -> Iterator[CounterMetricFamily]:
            family = CounterMetricFamily(
                name,
                "Emitted messages by how they left this process: published right after their "
                "commit (optimistic), left to the relay (fallback), published, failed or "
                "dead-lettered by a relay.",
                labels=(*names, "outcome"),
            )
            for outcome, attribute in _OUTBOX_OUTCOMES:
                family.add_metric([*values, outcome], getattr(OUTBOX_STATS, attribute))
            yield family

    return OutboxCollector()


class WaitingRuns:
    """The gauge ``statesaga_runs_waiting{saga}``: runs a store holds waiting, per saga.

    Register it on a registry (``registry.register(WaitingRuns(store))``); each scrape asks
    the store (``SagaStore.count_waiting``). A store belongs to the event loop that opened it,
    and Prometheus scrapes from its own thread: a scrape from another thread runs the query on
    that loop (awaited there like any other query: the loop is not blocked) and waits for it
    up to ``timeout`` seconds. A scrape in the loop's own thread cannot wait: it reports the
    numbers the last query found and starts a new one for the next scrape. ``await
    refresh()`` counts at once.

    A saga once seen reports 0 when none of its runs waits any more. When the query fails or
    times out, or the loop has stopped, the scrape leaves the gauge out (no stale numbers)
    and the reason is logged (logger ``statesaga.observe``).

    Args:
        store: An open store.
        loop: The event loop ``store`` belongs to; by default the one running where the
            collector is created.
        namespace: Prefix of the metric name.
        labels: Constant labels (as ``PrometheusObserver``'s).
        timeout: Seconds a scrape from another thread waits for the query.

    Raises:
        MissingExtraError: ``prometheus-client`` is not installed.
        RuntimeError: No ``loop`` given and none is running.
    """

    def __init__(
        self,
        store: SagaStore,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        namespace: str = "statesaga",
        labels: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        with needs("WaitingRuns", "prometheus_client", "prometheus"):
            from prometheus_client.core import GaugeMetricFamily
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "WaitingRuns needs the event loop its store belongs to: create it in that "
                    "loop, or pass loop="
                ) from None
        self.store = store
        self.loop = loop
        self.timeout = timeout
        self.name = f"{namespace}_runs_waiting" if namespace else "runs_waiting"
        self._family = GaugeMetricFamily
        const = dict(labels or {})
        self._names, self._values = (*const, "saga"), tuple(const.values())
        self._last: dict[str, int] | None = None  # replaced whole, never changed in place
        self._refreshing: asyncio.Task[None] | None = None

    async def refresh(self) -> dict[str, int]:
        """Count the waiting runs now, in the store's loop: the numbers a scrape reports."""
        counts = await self.store.count_waiting()
        seen = dict.fromkeys(self._last or (), 0)  # sagas seen before and now without any
        seen.update(counts)
        self._last = seen
        return seen

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The gauge without samples: registering it queries nothing."""
        yield self._gauge()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauge with the number of waiting runs per saga (see the class)."""
        gauge = self._gauge()
        counts = self._counts()
        for saga, count in sorted((counts or {}).items()):
            gauge.add_metric([*self._values, saga], count)
        yield gauge

    def _gauge(self) -> GaugeMetricFamily:
        return self._family(
            self.name, "Runs the store holds waiting for a signal or a timer.", labels=self._names
        )

    def _counts(self) -> dict[str, int] | None:
        loop = self.loop
        if loop.is_closed() or not loop.is_running():
            _log.warning("waiting runs not counted: the store's event loop is not running")
            return None
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # blocking here would stop the loop that runs the query
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = loop.create_task(self._refresh_later())
            return self._last
        future = asyncio.run_coroutine_threadsafe(self.refresh(), loop)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            _log.warning("waiting runs not counted: the store took over %s s", self.timeout)
        except Exception as error:
            _log.warning("waiting runs not counted: %s", error)
        return None

    async def _refresh_later(self) -> None:
        try:
            await self.refresh()
        except Exception as error:
            self._last = None
            _log.warning("waiting runs not counted: %s", error)
