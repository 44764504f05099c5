"""Durable runs: written ahead to a store, leased to one driver, resumed after a crash.

``drive`` starts, restores and resumes runs; ``journal`` is the recorder that commits ahead;
``leases`` keeps the leases of the runs this process drives alive; ``resources`` opens stores
and brokers named by URL, one per URL and event loop.
"""

from __future__ import annotations

from ..errors import SagaNotImportable
from .drive import StoreLike, drive_stored, finished_result, open_store, resume, retriable, start
from .resources import shutdown

__all__ = [
    "SagaNotImportable",
    "StoreLike",
    "drive_stored",
    "finished_result",
    "open_store",
    "resume",
    "retriable",
    "shutdown",
    "start",
]
