"""The relay: publishes the outbox messages that optimistic sending did not.

It claims due messages (a key's messages in order, never two relays the same message), publishes
them with publisher confirms, marks them sent, and on failure retries each message with
exponential backoff until ``max_attempts``, when the message is dead-lettered. A key's later
messages wait behind a dead one until it is retried (``statesaga outbox retry``) or purged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Self

import attrs

from ..clock import SYSTEM_CLOCK, Clock
from ..definition import Retry
from ..durable.leases import owner_id
from ..durable.resources import StoreLike, open_store
from ..store.base import OutboxRecord, SagaStore
from .broker import Broker
from .brokers import broker_from_url
from .sender import PUBLISH_TIMEOUT, Link
from .stats import OUTBOX_STATS, OutboxStats

log = logging.getLogger("statesaga.messaging")

#: How a relay waits between attempts at one message: 1 s, doubling, at most 5 minutes.
BACKOFF = Retry(attempts=40, delay=1.0, backoff=2.0, max_delay=300.0, jitter=0.1)

#: Seconds of clock difference between machines a relay's claims allow for (at most half of
#: what a claim leaves after one publish): it starts no publish that late in its claim.
CLOCK_SKEW = 2.0


@attrs.frozen
class RelayRound:
    """What one ``run_once`` did.

    Attributes:
        claimed: Messages claimed.
        sent: Of those, published and marked sent.
        failed: Attempts that failed (the message is retried later, or is dead).
        dead: Messages given up on in this round.
        waiting: Messages left pending that failed before (``relay --once`` counts them).
    """

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    waiting: int = 0


class Relay:
    """Publishes pending outbox messages of one store to one broker.

    Several relays may share a store (on PostgreSQL: several processes and machines): each
    message is claimed by one of them at a time, for ``lease`` seconds.

    ``async with Relay(...) as relay:`` opens its store and closes, at the end, the broker it
    opened from a URL (``close``). A store or broker passed as an object is left open: its
    caller closes it; a store named by URL is the event loop's (see ``statesaga.shutdown``).

    Args:
        store: The store, or its URL.
        broker: The broker, or its URL.
        batch: Most messages claimed per round.
        lease: Seconds a claim lasts; a relay that dies holds its messages this long.
        backoff: Delays between attempts at one message; ``backoff.attempts`` attempts in all,
            then the message is dead. The default (40 attempts, 1 s doubling to 5 minutes)
            rides out about two and a half hours of broker outage.
        poll: Seconds between looks at the outbox when it had nothing due.
        publish_timeout: Seconds the broker has to confirm one message.
        concurrency: Keys published at once (a key's messages always go one by one).
        owner: This relay's name in claims (default: ``relay:<host>:<pid>:<tag>``).
        clock: Time and randomness (tests pass a ``FakeClock``).
        stats: Counters to update (default: the process-wide ``OUTBOX_STATS``).

    Attributes:
        stats: The counters it updates (an observability layer exports them).
    """

    def __init__(
        self,
        store: StoreLike,
        broker: Broker | str,
        *,
        batch: int = 100,
        lease: float = 60.0,
        backoff: Retry = BACKOFF,
        poll: float = 1.0,
        publish_timeout: float = PUBLISH_TIMEOUT,
        concurrency: int = 16,
        owner: str | None = None,
        clock: Clock | None = None,
        stats: OutboxStats | None = None,
    ) -> None:
        if batch < 1 or concurrency < 1:
            raise ValueError(f"batch ({batch}) and concurrency ({concurrency}) must be >= 1")
        if lease <= publish_timeout:
            raise ValueError(
                f"lease ({lease:g} s) must be longer than publish_timeout ({publish_timeout:g} s)"
                ", or a claim could run out while its message is being published"
            )
        self.store = store
        # A broker named by URL is this relay's own: ``close()`` closes it.
        self._own_broker = isinstance(broker, str)
        self.broker = broker_from_url(broker) if isinstance(broker, str) else broker
        self.batch = batch
        self.lease = lease
        self.backoff = backoff
        self.poll = poll
        self.publish_timeout = publish_timeout
        self.concurrency = concurrency
        self.owner = owner or f"relay:{owner_id()}"
        self.clock = clock or SYSTEM_CLOCK
        self.stats = stats or OUTBOX_STATS
        #: When ``run``'s loop last went round (``time.monotonic()``): its heartbeat.
        self.beaten_at = time.monotonic()
        self._link = Link(self.broker, publish_timeout)
        self._skew = min(CLOCK_SKEW, (lease - publish_timeout) / 2)
        self._opened: SagaStore | None = None

    async def __aenter__(self) -> Self:
        await self._store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _store(self) -> SagaStore:
        store = self._opened
        if store is None:
            store = self._opened = await open_store(self.store)
        return store

    async def run_once(self) -> RelayRound:
        """Claim one batch of due messages, publish them and record what happened."""
        store = await self._store()
        now = self.clock.time()
        until = now + self.lease
        claimed = await store.outbox_claim(self.owner, now, until, self.batch)
        if not claimed:
            return RelayRound()
        chains: dict[object, list[OutboxRecord]] = {}
        for record in claimed:  # in seq order: each chain is in its key's order
            key = record.message.key  # "" is a key like any other; only None means none
            chains.setdefault(("key", key) if key is not None else ("id", record.id), []).append(
                record
            )
        sent: list[str] = []
        failures = [0, 0]  # failed attempts, dead messages
        limit = asyncio.Semaphore(self.concurrency)

        async def publish(chain: list[OutboxRecord]) -> None:
            async with limit:
                await self._chain(store, chain, until, sent, failures)

        try:
            # Not a TaskGroup: a chain whose store write fails must not cancel the others
            # mid-publish, and what they published must still be marked sent below.
            outcomes = await asyncio.gather(
                *(publish(chain) for chain in chains.values()), return_exceptions=True
            )
        finally:
            # Even when a chain failed or the round was cancelled: a published message left
            # unmarked would be published again once its claim runs out.
            if sent:
                await store.outbox_mark_sent(sent, self.clock.time())
                self.stats.relay_sent += len(sent)
        errors = [error for error in outcomes if isinstance(error, BaseException)]
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise BaseExceptionGroup("relay chains failed", errors)
        return RelayRound(len(claimed), len(sent), *failures)

    async def _chain(
        self,
        store: SagaStore,
        chain: Sequence[OutboxRecord],
        until: float,
        sent: list[str],
        failures: list[int],
    ) -> None:
        """Publish one key's claimed messages in order, stopping at the first failure."""
        # Stop starting publishes a little before the claim could run out: another relay
        # whose clock runs slightly ahead sees it run out that much earlier.
        last_start = until - self.publish_timeout - self._skew
        for index, record in enumerate(chain):
            if self.clock.time() >= last_start:
                # The claim could run out mid-publish: the rest go back for the next round.
                await store.outbox_release([r.id for r in chain[index:]], self.owner)
                return
            failure = await self._link.publish(record.message)
            if failure is None:
                sent.append(record.id)
                continue
            attempts = record.attempts + 1
            dead = attempts >= self.backoff.attempts
            delay = self.backoff.delay_before(attempts + 1, self.clock.random())
            await store.outbox_mark_failed(
                record.id, self.owner, failure, self.clock.time() + delay, dead=dead
            )
            failures[0] += 1
            self.stats.relay_failed += 1
            if dead:
                failures[1] += 1
                self.stats.dead += 1
                log.error(
                    "message %s (topic %s, key %s) is dead after %d attempts: %s; its key's "
                    "later messages wait until it is retried (statesaga outbox retry %s) or "
                    "purged",
                    record.id,
                    record.message.topic,
                    record.message.key,
                    attempts,
                    failure,
                    record.id,
                )
            else:
                log.info("message %s: attempt %d failed: %s", record.id, attempts, failure)
            if index + 1 < len(chain):  # they must not overtake it
                await store.outbox_release([r.id for r in chain[index + 1 :]], self.owner)
            return

    async def close(self) -> None:
        """Close the broker if this relay opened it from a URL (a store named by URL closes
        with its event loop; see ``statesaga.shutdown``)."""
        if self._own_broker:
            await self.broker.close()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set (or forever); a failing store is retried after ``poll``."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            self.beaten_at = time.monotonic()
            try:
                done = await self.run_once()
            except Exception:
                log.exception("relay round failed; trying again in %g s", self.poll)
                done = RelayRound()
            if done.claimed < self.batch or done.failed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)
