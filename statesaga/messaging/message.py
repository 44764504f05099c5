"""What a step emits and what a consumer receives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class Message:
    """One message, emitted by an action or compensation with ``ctx.emit``.

    Attributes:
        id: Unique and stable: ``<idempotency key>:<n>`` for the n-th message of the call, so
            a consumer can recognise a redelivery by it.
        topic: Where it goes (a RabbitMQ routing key, a NATS subject, a Redis stream).
        payload: The body, JSON-serialisable.
        key: Messages with the same key are delivered in the order they were emitted.
        headers: Extra text headers.
        saga_id: The run that emitted it.
        step: The step that emitted it.
        created_at: When it was emitted (epoch seconds).
    """

    id: str
    topic: str
    payload: Any
    key: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    saga_id: str = ""
    step: str = ""
    created_at: float = 0.0
