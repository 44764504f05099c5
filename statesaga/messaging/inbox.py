"""The consumer inbox: apply each incoming message exactly once.

A handler's writes and the record that its message was handled (its id, per consumer name)
commit in one database transaction. A redelivered message finds its id recorded and is acked
without calling the handler; a handler that raises rolls both back and the message is nacked, so
the broker delivers it again. Two backends share the logic here: ``PostgresInbox`` (the handler
gets the psycopg ``AsyncConnection`` inside the transaction) and ``SQLiteInbox`` (the handler is
a plain function given the ``sqlite3.Connection``, run in the inbox's thread).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from ..errors import InboxError as InboxError
from .broker import Broker, BrokerError, Delivery
from .message import Message

if TYPE_CHECKING:
    pass

logger = logging.getLogger("statesaga.messaging")

H = TypeVar("H")

#: Seconds in a day, for ``purge(older_than=...)``.
DAY = 86400.0


class Outcome(enum.Enum):
    """What ``Inbox.handle`` did with a delivery."""

    APPLIED = "applied"  #: the handler ran and its transaction committed; acked
    DUPLICATE = "duplicate"  #: handled before: acked without calling the handler
    FAILED = "failed"  #: the handler (or the database) raised: rolled back and nacked


class Inbox(abc.ABC, Generic[H]):
    """Runs a handler for a message at most once per consumer name, atomically with its writes.

    Use it as an async context manager (or call ``open`` and ``close``).

    Attributes:
        consumer: Whose inbox this is: ids are recorded per consumer name, so two services (or
            two handlers) reading the same topic each apply every message once.
    """

    consumer: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the inbox table if it is missing (idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connections (idempotent)."""

    @abc.abstractmethod
    async def process(self, message: Message, handler: H) -> bool:
        """Run ``handler`` for ``message`` unless its id is recorded; record it in the same commit.

        Returns:
            True if the handler ran and committed, False if the message was a duplicate.

        Raises:
            Exception: Whatever the handler or the database raised; nothing was committed.
        """

    @abc.abstractmethod
    async def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` is recorded as handled by this consumer."""

    @abc.abstractmethod
    async def purge(self, *, older_than: float) -> int:
        """Forget ids recorded more than ``older_than`` seconds ago; return how many.

        A duplicate of a forgotten message that arrives later is applied again: keep ids for
        longer than any broker may redeliver (its retention and any relay retries).
        """

    async def handle(self, delivery: Delivery, handler: H, *, retry_delay: float = 0.0) -> Outcome:
        """Process ``delivery``'s message through the inbox, then settle the delivery.

        Acked when applied or a duplicate. When processing raises, the transaction is rolled
        back, the error is logged, and after ``retry_delay`` seconds (holding the delivery, so
        later messages of its key wait) the delivery is nacked for redelivery. An ack or nack
        the broker cannot take is logged: the message comes again and is recognised.
        """
        return await self._handle(delivery, handler, retry_delay=retry_delay, stop=None)

    async def _handle(
        self, delivery: Delivery, handler: H, *, retry_delay: float, stop: asyncio.Event | None
    ) -> Outcome:
        message = delivery.message
        try:
            applied = await self.process(message, handler)
        except Exception:
            logger.exception(
                "inbox %r: handling message %r from %r failed; it will be delivered again",
                self.consumer,
                message.id,
                message.topic,
            )
            if retry_delay > 0:
                await _pause(retry_delay, stop)
            await _settle(delivery, ack=False)
            return Outcome.FAILED
        await _settle(delivery, ack=True)
        return Outcome.APPLIED if applied else Outcome.DUPLICATE

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile (shutting down: nack at once)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def _settle(delivery: Delivery, *, ack: bool) -> None:
    try:
        await (delivery.ack() if ack else delivery.nack())
    except BrokerError as error:
        logger.warning("%s", error)
    except Exception:  # a broker of someone else's making: the message comes again all the same
        logger.exception(
            "settling message %r failed; it will be delivered again", delivery.message.id
        )


async def consume(
    broker: Broker,
    topic: str,
    *,
    group: str,
    inbox: Inbox[H],
    handler: H,
    concurrency: int = 4,
    retry_delay: float = 0.5,
    max_retry_delay: float = 30.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Handle ``topic``'s messages for ``group`` through ``inbox`` until cancelled or ``stop``.

    Up to ``concurrency`` deliveries are handled at once. Brokers hand out the next message of
    a key only once the previous one is settled, so each key is still applied in order. A
    message whose handling fails is retried after ``retry_delay`` seconds, doubling each time
    up to ``max_retry_delay``; it holds its key (later messages of that key wait) meanwhile.

    Args:
        broker: Where the messages come from (connected on first use).
        topic: The topic to consume.
        group: The consumer group (processes sharing it share the messages).
        inbox: The inbox, opened.
        handler: Called once per message, with the inbox's connection.
        concurrency: Deliveries handled at the same time.
        retry_delay: Seconds before the first redelivery of a failed message.
        max_retry_delay: Longest wait before a redelivery.
        stop: When set, the loop takes no new delivery, finishes the ones in hand (one waiting
            to be retried is nacked at once) and returns. Cancelling instead abandons them: the
            broker delivers them again.
    """
    if concurrency < 1:
        raise InboxError(f"concurrency must be at least 1, not {concurrency!r}")
    failures: dict[str, int] = {}
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def one(delivery: Delivery) -> None:
        try:
            failed = failures.get(delivery.message.id, 0)
            # The exponent is capped: 2**1024 is too large for a float (a message failing for
            # hours would otherwise crash its task and be left unsettled, holding its key).
            backoff = retry_delay * 2.0 ** min(failed, 64)
            delay = min(max_retry_delay, backoff) if retry_delay > 0 else 0.0
            outcome = await inbox._handle(delivery, handler, retry_delay=delay, stop=stop)
            if outcome is Outcome.FAILED:
                if len(failures) > 10_000:  # ids that failed here, then went to other consumers
                    failures.clear()
                failures[delivery.message.id] = failed + 1
            else:
                failures.pop(delivery.message.id, None)
        finally:
            slots.release()

    stop = stop or asyncio.Event()
    getting: asyncio.Future[Delivery] | None = None
    async with contextlib.aclosing(broker.consume(topic, group=group)) as deliveries:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                await slots.acquire()
                getting = asyncio.ensure_future(anext(deliveries))
                await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    break  # a delivery that arrived at the same moment is given back below
                delivery = getting.result()  # raises if the broker failed
                getting = None
                task = asyncio.create_task(one(delivery))
                running.add(task)
                task.add_done_callback(running.discard)
            # Stopping: finish and settle the deliveries in hand before the subscription
            # closes (closing first would send them back to be delivered again). A handler
            # waiting to retry stops waiting: its delivery is nacked at once.
            if running:
                await asyncio.gather(*running)
        finally:
            stopping.cancel()
            # Cancelled, or the broker failed: what is still in hand is abandoned, and goes back
            # to the group when the subscription closes. The pending next() must end first: an
            # async generator cannot be closed while it runs.
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(list(running))
            await _give_back(getting)


async def _give_back(getting: asyncio.Future[Delivery] | None) -> None:
    """Stop waiting for a delivery; one that arrived meanwhile is nacked, not handled."""
    if getting is None:
        return
    getting.cancel()
    await asyncio.wait({getting})
    if not getting.cancelled() and getting.exception() is None:
        await _settle(getting.result(), ack=False)
