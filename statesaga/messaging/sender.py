"""Optimistic sending: publish a commit's messages right after the commit, in key order.

The commit that records a step's success writes its messages to the outbox and claims them for
this process until ``claim_until`` (see ``Commit``). The sender then publishes the claimed ones
while the run goes on, marks them sent once the broker confirms, and on any failure releases
them to the relay. Messages of one key are published one after another in commit order; when
one fails, the later ones of its key are released unpublished, so the relay sends them in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any, Self

from ..durable.resources import loop_resources
from ..store.base import SagaStore
from .broker import Broker
from .brokers import broker_from_url
from .message import Message
from .stats import OUTBOX_STATS, OutboxStats

log = logging.getLogger("statesaga.messaging")

#: Seconds the broker has to confirm one message before it is left to the relay.
PUBLISH_TIMEOUT = 5.0

#: Seconds past its claim that a message this process failed to release still holds back the
#: later messages of its key here (a commit that saw the claim live may still be on its way).
HOLD_MARGIN = 300.0


class Link:
    """Publishes through one broker, connecting on first use and again after a failure.

    Args:
        broker: The broker.
        timeout: Seconds it has to confirm a message (connecting included).
    """

    def __init__(self, broker: Broker, timeout: float) -> None:
        self.broker = broker
        self.timeout = timeout
        self._connected = False

    async def publish(self, message: Message, within: float | None = None) -> str | None:
        """Publish ``message`` and wait for the confirm; why it failed, or ``None``.

        ``within`` shortens ``self.timeout`` for this message.
        """
        timeout = self.timeout if within is None else min(within, self.timeout)
        try:
            async with asyncio.timeout(timeout):
                if not self._connected:
                    await self.broker.connect()
                    self._connected = True
                await self.broker.publish(message)
        except Exception as error:  # BrokerError, a timeout, or a broker's own bug
            self._connected = False
            if isinstance(error, TimeoutError):
                return f"no confirm from {self.broker.name} within {timeout:g} s"
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return None


class KeyOrder:
    """What the senders of one store in one event loop know about each key's messages.

    Every sender of a store claims with the same owner (this process), so a commit may claim a
    message behind one that another sender of the store (another broker) is publishing: they
    must chain on the same per-key state.

    Attributes:
        tails: The last message queued per key: done with whether it was sent.
        held: Keys with a message still claimed by this process that it neither sent nor
            released, and until when that claim holds (see ``Sender._hold``).
    """

    def __init__(self) -> None:
        self.tails: dict[str, asyncio.Future[bool]] = {}
        self.held: dict[str, float] = {}


class Sender:
    """Publishes the messages this process claimed at commit, for one store and one broker.

    Whoever makes it closes it (``aclose``, or ``async with``), before the store and broker
    it uses: closing waits until every message handed to it is marked sent or left to the
    relay. It closes neither the store nor the broker.

    Args:
        store: Where the messages are marked sent or released.
        broker: Where they are published.
        timeout: Seconds the broker has to confirm a message.
        stats: Counters to update (by default the process-wide ``OUTBOX_STATS``).
        keys: The per-key order it keeps, shared with the other senders of ``store`` in this
            event loop (their claims have the same owner); by default its own.
    """

    def __init__(
        self,
        store: SagaStore,
        broker: Broker,
        *,
        timeout: float = PUBLISH_TIMEOUT,
        stats: OutboxStats | None = None,
        keys: KeyOrder | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.timeout = timeout
        self.stats = stats or OUTBOX_STATS
        self.link = Link(broker, timeout)
        self.loop = asyncio.get_running_loop()
        keys = keys or KeyOrder()
        self._tails = keys.tails
        self._held = keys.held
        self._marks: list[str] = []
        self._round: asyncio.Future[None] | None = None
        self._marker: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Future[list[None]]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Wait until every message handed to it is marked sent or left to the relay."""
        while self._sending or (self._marker is not None and not self._marker.done()):
            waiting: list[asyncio.Future[Any]] = [*self._sending]
            if self._marker is not None:
                waiting.append(self._marker)
            await asyncio.gather(*waiting, return_exceptions=True)

    def send(
        self, messages: Sequence[Message], claimed: Collection[str], owner: str, until: float
    ) -> asyncio.Future[list[None]]:
        """Start publishing the ``claimed`` ones of a commit's ``messages``.

        Returns a future that is done once each of them is marked sent or released.
        """
        taken = set(claimed)
        self.stats.fallback += len(messages) - len(taken)
        tasks = []
        for message in messages:
            if message.id not in taken:
                continue
            previous = done = None
            if message.key is not None:
                previous = self._tails.get(message.key)
                done = self._tails[message.key] = self.loop.create_future()
            tasks.append(self.loop.create_task(self._one(message, owner, until, previous, done)))
        sending = asyncio.gather(*tasks)
        self._sending.add(sending)
        # Retrieved here too: a run that raised is not drained, and its publishes cancelled
        # at shutdown must not log "exception was never retrieved" (their claims run out).
        sending.add_done_callback(_retrieve)
        sending.add_done_callback(self._sending.discard)
        return sending

    async def _one(
        self,
        message: Message,
        owner: str,
        until: float,
        previous: asyncio.Future[bool] | None,
        done: asyncio.Future[bool] | None,
    ) -> None:
        sent = released = False
        try:
            if previous is not None and not await asyncio.shield(previous):
                released = await self._release(message, owner, None)  # behind a failed one
                return
            if self._behind_held(message):
                released = await self._release(message, owner, None)
                return
            # Half of what is left of the claim at most: it must not run out mid-publish, or
            # a relay could publish the message too.
            within = (until - time.time()) / 2
            if within < 0.01:
                released = await self._release(message, owner, "claim ran out before publishing")
                return
            failure = await self.link.publish(message, within)
            if failure is not None:
                released = await self._release(message, owner, failure)
                return
            sent = True
            self.stats.optimistic_sent += 1
            self._settle(message, done, sent)
            await self._mark(message.id)
        finally:
            if not sent and not released:
                self._hold(message, until)
            self._settle(message, done, sent)

    def _settle(self, message: Message, done: asyncio.Future[bool] | None, sent: bool) -> None:
        if done is None or done.done():
            return
        done.set_result(sent)
        if message.key is not None and self._tails.get(message.key) is done:
            del self._tails[message.key]

    def _hold(self, message: Message, until: float) -> None:
        """Remember that ``message`` stays claimed by this process, unsent, until ``until``.

        Its release failed (or never ran): the store still shows it as being sent by this
        process, so a commit made meanwhile claims the later messages of its key for this
        process too. Publishing those would overtake it; ``_behind_held`` leaves them to the
        relay, which sends them after it once its claim runs out.
        """
        if message.key is None:
            return
        now = time.time()
        for key in [k for k, end in self._held.items() if end + HOLD_MARGIN < now]:
            del self._held[key]
        self._held[message.key] = max(until, self._held.get(message.key, until))

    def _behind_held(self, message: Message) -> bool:
        """Whether ``message`` may have been claimed behind a message of its key still held."""
        if message.key is None:
            return False
        end = self._held.get(message.key)
        if end is None:
            return False
        if end + HOLD_MARGIN < time.time():
            del self._held[message.key]
            return False
        # Emitted after the held claim ran out, its commit saw that claim expired: it was
        # claimed only if the held message had been sent by then.
        return message.created_at <= end

    async def _release(self, message: Message, owner: str, error: str | None) -> bool:
        """Leave ``message`` to the relay; whether its claim was given up."""
        self.stats.fallback += 1
        if error is not None:
            log.info("message %s left to the relay: %s", message.id, error)
        try:
            await self.store.outbox_release([message.id], owner, error)
        except Exception:  # its claim runs out instead; the relay sends it then
            log.warning("could not release message %s", message.id, exc_info=True)
            return False
        return True

    def _mark(self, message_id: str) -> asyncio.Future[None]:
        """Mark a message sent; marks made meanwhile share one write."""
        self._marks.append(message_id)
        if self._round is None:
            self._round = self.loop.create_future()
        waiter = self._round
        if self._marker is None or self._marker.done():
            self._marker = self.loop.create_task(self._mark_all())
        return waiter

    async def _mark_all(self) -> None:
        while self._marks:
            ids, waiter = self._marks, self._round
            self._marks, self._round = [], None
            try:
                await self.store.outbox_mark_sent(ids, time.time())
            except Exception:
                # Their claims run out and a relay publishes them again: a duplicate, which
                # consumers recognise by id.
                log.warning("could not mark %d sent messages", len(ids), exc_info=True)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


def _retrieve(future: asyncio.Future[list[None]]) -> None:
    if not future.cancelled():
        future.exception()


def sender_for(store: SagaStore, broker: Broker) -> Sender:
    """The sender of ``store`` and ``broker`` in the running event loop (closed with the
    loop's resources, before the stores and brokers)."""
    resources = loop_resources()
    senders = resources.senders
    key = (id(store), id(broker))
    sender = senders.get(key)
    if sender is None or sender.store is not store or sender.broker is not broker:
        # Every sender of a store in this loop shares its key order (see ``KeyOrder``).
        keys = resources.key_orders.get(id(store))
        if keys is None or keys[0] is not store:
            keys = resources.key_orders[id(store)] = (store, KeyOrder())
        sender = senders[key] = Sender(store, broker, keys=keys[1])
    return sender


def resolve_broker(broker: Broker | str) -> Broker:
    """``broker`` itself (its caller's, never closed here), or the broker its URL names in
    the running event loop (closed when the loop ends or by ``shutdown``).

    Not connected here: a broker that is down must not stop runs from starting; their
    messages wait for it in the outbox.
    """
    if not isinstance(broker, str):
        return broker
    brokers = loop_resources().brokers
    opened = brokers.get(broker)
    if opened is None:
        opened = brokers[broker] = broker_from_url(broker)
    return opened


__all__ = ["PUBLISH_TIMEOUT", "KeyOrder", "Link", "Sender", "resolve_broker", "sender_for"]
