"""The signal bridge: messages of a topic become signals to stored runs, each exactly once.

A message's id is its signal's id, so the store's signals are the bridge's inbox: a
redelivered message is recognised as a duplicate of the signal it gave, and acknowledged
without being applied again. The run is chosen from the message's key, or by a function of
the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import attrs

from .durable.resources import StoreLike, open_store
from .durable.waiting import signal
from .errors import InboxError, RunNotFound, SignalRefused
from .messaging.broker import Broker
from .messaging.inbox import Inbox, consume
from .messaging.message import Message

__all__ = ["Refused", "RouteFn", "SignalInbox", "bridge", "by_key"]

log = logging.getLogger("statesaga.bridge")

#: Picks the run a message is for (``None``: the message is for no run, and is dropped).
RouteFn = Callable[[Message], "str | None"]


def by_key(message: Message) -> str | None:
    """The default route: the message's key is the run id."""
    return message.key


@attrs.define
class Refused:
    """Messages the bridge acknowledged without a signal, and why (for logs and tests)."""

    count: int = 0
    last: str | None = None


class SignalInbox(Inbox[RouteFn]):
    """An inbox whose record of handled messages is the store's signals: handling a message
    delivers it as the signal ``event`` to the run its route names."""

    def __init__(self, store: StoreLike, event: str, *, consumer: str = "statesaga-bridge"):
        self.store = store
        self.event = event
        self.consumer = consumer
        self.refused = Refused()

    async def open(self) -> None:
        await open_store(self.store)

    async def close(self) -> None:
        """Nothing of its own to close: the store belongs to its owner (or its URL's loop)."""

    async def process(self, message: Message, handler: RouteFn) -> bool:
        run_id = handler(message)
        if run_id is None:
            self._refuse(message, "it names no run (it has no key)")
            return True
        payload = message.payload if message.payload is not None else {}
        if not isinstance(payload, Mapping):
            self._refuse(message, f"its payload is {type(payload).__name__}, not a JSON object")
            return True
        try:
            return await signal(self.store, run_id, self.event, payload, signal_id=message.id)
        except (SignalRefused, RunNotFound) as error:
            # For good: redelivering it would be refused again. Logged and acknowledged.
            self._refuse(message, str(error))
            return True

    def _refuse(self, message: Message, why: str) -> None:
        self.refused.count += 1
        self.refused.last = why
        log.warning("message %s on %r gives no signal: %s", message.id, message.topic, why)

    async def seen(self, message_id: str) -> bool:
        raise InboxError(
            "the signal bridge records messages as signals of their runs: look a message up "
            "with `statesaga runs show RUN_ID` (its id is the signal's id)"
        )

    async def purge(self, *, older_than: float) -> int:
        """Nothing to purge: a signal lives as long as its run."""
        return 0


async def bridge(
    store: StoreLike,
    broker: Broker,
    topic: str,
    event: str,
    *,
    group: str | None = None,
    route: RouteFn = by_key,
    concurrency: int = 4,
    stop: asyncio.Event | None = None,
    inbox: SignalInbox | None = None,
) -> None:
    """Deliver ``topic``'s messages as the signal ``event`` until cancelled or ``stop``.

    Each message is committed as a signal before it is acknowledged; one that fails (the
    store is unreachable) is delivered again after a pause. A message the run cannot take
    (no such run, no wait for ``event``, the wait is over, the run ended, no key) is logged
    and acknowledged.

    Args:
        store: The runs' store (or its URL).
        broker: Where the messages come from.
        topic: The topic to consume.
        event: The signal each message becomes (the wait's name).
        group: The consumer group (default ``statesaga-bridge-<event>``): bridges sharing it
            share the messages.
        route: Picks the run a message is for (default: its key).
        concurrency: Messages handled at once (each key still in order).
        stop: When set, finish the messages in hand and return.
        inbox: The inbox to use (to read ``inbox.refused`` afterwards).
    """
    inbox = inbox or SignalInbox(store, event)
    await inbox.open()
    await consume(
        broker,
        topic,
        group=group or f"statesaga-bridge-{event}",
        inbox=inbox,
        handler=route,
        concurrency=concurrency,
        stop=stop,
    )
