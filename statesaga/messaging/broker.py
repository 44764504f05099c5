"""The small interface every message broker is used through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import attrs

from ..errors import StatesagaError
from .message import Message


class BrokerError(StatesagaError):
    """A broker could not be reached, or did not confirm a message."""


@attrs.define
class Delivery:
    """A message handed to a consumer; settle it with ``ack`` or ``nack``.

    Attributes:
        message: What arrived.
        redelivered: Whether the broker says it delivered this message before.
    """

    message: Message
    ack: Callable[[], Awaitable[None]]
    nack: Callable[[], Awaitable[None]]  # requeue: the broker delivers it again later
    redelivered: bool = False


class Broker(Protocol):
    """Publishes messages with confirmation and delivers them to consumers."""

    name: str

    async def connect(self) -> None:
        """Open the connection (idempotent)."""

    async def close(self) -> None:
        """Close the connection (idempotent)."""

    async def publish(self, message: Message) -> None:
        """Return once the broker has confirmed ``message``; raise ``BrokerError`` otherwise."""

    def consume(self, topic: str, *, group: str) -> AsyncIterator[Delivery]:
        """Deliveries on ``topic`` for consumer ``group``, at least once each."""
        ...
