"""Tools for testing sagas: fault injection, an instant clock, an in-memory store, and the
failure space generated from a saga's compiled machine (``explore``, ``scenarios``)."""

from __future__ import annotations

from ..store.memory import MemoryStore
from .kit import FakeClock, InjectedFault, fail_step
from .runner import Outcome, Report, Scenario, explore, scenarios

# Shown (and matched by tests) as the test kit's own, wherever it is defined.
InjectedFault.__module__ = __name__

__all__ = [
    "FakeClock",
    "InjectedFault",
    "MemoryStore",
    "Outcome",
    "Report",
    "Scenario",
    "explore",
    "fail_step",
    "scenarios",
]
