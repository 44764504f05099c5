"""Durable runs: written ahead to a store, leased to one driver, resumed after a crash.

``drive`` starts, restores and resumes runs; ``waiting`` delivers signals and follows runs
that wait until they end; ``journal`` is the recorder that commits ahead;
``leases`` keeps the leases of the runs this process drives alive; ``resources`` holds what
statesaga opens itself (stores and brokers named by URL, senders, lease keepers), one set per
event loop, and closes it.
"""

from __future__ import annotations

from ..errors import SagaNotImportable
from .drive import drive_stored, finished_result, resume, retriable, start
from .resources import StoreLike, open_store, shutdown
from .waiting import execute, follow, request_cancel, signal

__all__ = [
    "SagaNotImportable",
    "StoreLike",
    "drive_stored",
    "execute",
    "finished_result",
    "follow",
    "open_store",
    "request_cancel",
    "resume",
    "retriable",
    "shutdown",
    "signal",
    "start",
]
