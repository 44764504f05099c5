"""The rules every store applies to a signal before storing it (``SagaStore.add_signal``).

Each backend reads what the rules look at (the run's status, a signal of the same id, one of
the same event, the phase of the step the signal's event names) inside the transaction that
stores the signal, and asks ``check`` whether to store it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..vocabulary import (
    CANCEL_EVENT,
    COMPENSATION_PHASES,
    FAILED,
    IN_DOUBT,
    SUCCEEDED,
    TERMINAL,
    WAITING_STATUS,
)
from ._codec import dumps
from .base import SignalRecord, SignalRefused

#: The phases of a step whose wait is over: a signal for it comes too late.
WAIT_OVER = frozenset({SUCCEEDED, FAILED, IN_DOUBT, *COMPENSATION_PHASES})

#: The status of a run parked in a wait.
WAITING = WAITING_STATUS


def as_stored(signal: SignalRecord) -> SignalRecord:
    """``signal`` with its payload as a store gives it back (through JSON); a payload JSON
    cannot hold is a ``StoreError``."""
    payload = json.loads(dumps(signal.payload, run_id=signal.run_id))
    if not isinstance(payload, dict):
        raise SignalRefused(signal.run_id, signal.event, "its payload is not a JSON object")
    return SignalRecord(signal.run_id, signal.signal_id, signal.event, payload, float(signal.at))


def found(
    signal: SignalRecord, stored: Iterable[SignalRecord]
) -> tuple[tuple[str, Mapping[str, Any]] | None, str | None, bool]:
    """What ``check`` needs to know of the run's stored signals that matter to ``signal``
    (those with its id, its event, or the cancellation): ``same_id``, ``same_event`` and
    ``cancelled``."""
    same_id = same_event = None
    cancelled = False
    for record in stored:
        if record.signal_id == signal.signal_id:
            same_id = (record.event, record.payload)
        elif record.event == signal.event:
            same_event = record.signal_id
        elif record.event == CANCEL_EVENT:
            cancelled = True
    return same_id, same_event, cancelled


def check(
    signal: SignalRecord,
    *,
    status: str,
    same_id: tuple[str, Mapping[str, Any]] | None,
    same_event: str | None,
    phase: str | None,
    cancelled: bool = False,
) -> bool:
    """Whether to store ``signal`` (``as_stored``): ``False`` for a duplicate.

    Args:
        signal: The signal, its payload as stored.
        status: The run's status.
        same_id: The event and payload of the run's signal with ``signal.signal_id``, if any.
        same_event: The id of the run's signal for ``signal.event``, if any.
        phase: The phase of the run's step named ``signal.event``, if that step has a row.
        cancelled: Whether the run was asked to stop before (a later signal loses to that).

    Raises:
        SignalRefused: Saying why the signal cannot be stored.
    """
    run_id, event = signal.run_id, signal.event
    if same_id is not None:
        if same_id == (event, signal.payload):
            return False  # sent again (a retry): already stored
        raise SignalRefused(
            run_id,
            event,
            f"signal id {signal.signal_id} was already used with another event/payload",
        )
    if status in TERMINAL:
        raise SignalRefused(run_id, event, f"the run has finished: it is {status}")
    if cancelled:
        raise SignalRefused(run_id, event, "the run was asked to stop (statesaga runs cancel)")
    if same_event is not None:
        raise SignalRefused(run_id, event, f"it was already signalled (signal id {same_event})")
    if phase in WAIT_OVER:
        raise SignalRefused(run_id, event, f"its wait is over: it is {phase}")
    return True


def wake_at(current: float | None, signal: SignalRecord, now: float) -> float:
    """A waiting run's ``wake_at`` once ``signal`` is stored: due at once."""
    return min(now if current is None else current, signal.at)
