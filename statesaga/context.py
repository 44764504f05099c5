"""What an action or compensation receives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Context:
    """The view one action or compensation call has of its run.

    Attributes:
        data: The saga's input.
        results: What earlier steps returned, by step name (a step that returned ``None``
            appears as an empty mapping). In a DAG only a step's dependencies are certain to
            be there.
        saga_id: The run's id.
        step: The step being run.
        attempt: 1 for the first call, 2 for the first retry, and so on.
        idempotency_key: Stable for this step (and, separately, for its compensation) across
            attempts and resumes: pass it to the services you call so a retry never acts twice.
        compensating: Whether this call is the step's compensation.
    """

    __slots__ = ("attempt", "compensating", "data", "idempotency_key", "results", "saga_id", "step")

    def __init__(
        self,
        data: Mapping[str, Any],
        results: Mapping[str, Mapping[str, Any]],
        saga_id: str,
        step: str,
        attempt: int,
        idempotency_key: str,
        compensating: bool = False,
    ) -> None:
        self.data = data
        self.results = results
        self.saga_id = saga_id
        self.step = step
        self.attempt = attempt
        self.idempotency_key = idempotency_key
        self.compensating = compensating

    def __repr__(self) -> str:
        kind = "compensation" if self.compensating else "action"
        return f"<Context {kind} of {self.step!r} attempt {self.attempt} in {self.saga_id}>"
