"""Observing runs: hooks on every transition, for logs, metrics and traces.

Register an ``Observer`` with ``add_observer``; every run started afterwards, in memory or
durable, calls its hooks. With no observer registered the engine skips all of it. The adapters
(``statesaga.observe.metrics``, ``.traces``, ``.logs``) import their libraries on first use.
"""

from __future__ import annotations

from .events import RunEvent, StepEvent
from .observer import Observer
from .registry import (
    OBSERVER_ERRORS,
    ObserverErrors,
    add_observer,
    observers,
    observing,
    remove_observer,
)

__all__ = [
    "OBSERVER_ERRORS",
    "Observer",
    "ObserverErrors",
    "RunEvent",
    "StepEvent",
    "add_observer",
    "observers",
    "observing",
    "remove_observer",
]
