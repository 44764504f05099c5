"""Drive one run through its compiled machine: retries, timeouts, compensation, cancellation.

One path for every run. Steps go forward and compensations go back through the same walk
(``Driver.walk``: each step once the steps it waits for are done, in dependency order one
way and in reverse the other), each call through the same attempt loop
(``calls.attempts``). What a stored run does beyond an in-memory one is its recorder's
business (``Recorder``).
"""

from __future__ import annotations

from .calls import Outcome
from .driver import Driver
from .tasks import drive_to_result, run_in_memory, start_task

__all__ = ["Driver", "Outcome", "drive_to_result", "run_in_memory", "start_task"]
