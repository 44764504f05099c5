"""The small interface every message broker is used through."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol, Self

import attrs

from .._urls import hide_credentials
from ..errors import BrokerError as BrokerError
from .message import Message

__all__ = ["Broker", "BrokerContext", "BrokerError", "Delivery", "hide_credentials"]


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
    """Publishes messages with confirmation and delivers them to consumers.

    Messages with the same key reach a consumer group in the order they were published, one at
    a time: the next one of that key is delivered only once the previous one is acked (a nacked
    one is delivered again first).
    """

    name: str

    async def connect(self) -> None:
        """Open the connection (idempotent)."""

    async def close(self) -> None:
        """Close the connection (idempotent)."""

    async def publish(self, message: Message) -> None:
        """Return once the broker has confirmed ``message``; raise ``BrokerError`` otherwise."""

    async def declare(self, topic: str, *, group: str) -> None:
        """Create ``group``'s durable subscription to ``topic`` (idempotent).

        Messages published after it are kept for the group until it acks them, even while no
        consumer runs. ``consume`` declares too; call this first when producers may start
        before the consumers.
        """

    def consume(self, topic: str, *, group: str) -> AsyncGenerator[Delivery, None]:
        """Deliveries on ``topic`` for consumer ``group``, at least once each.

        Consumers sharing a ``group`` share its messages; each group gets every message.
        Close the generator (``aclose``, or ``contextlib.aclosing``) when done: deliveries
        still unsettled then go back to the group.
        """
        ...


class BrokerContext:
    """``async with broker:`` connects the broker and closes it at the end (for broker
    classes): whoever opens a broker closes it."""

    async def connect(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
