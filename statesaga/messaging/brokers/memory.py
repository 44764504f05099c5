"""An in-process broker: the embedded default, and the reference the real ones are tested against.

Nothing leaves the process and nothing survives it. It keeps every message published on a topic,
so a group declared late still gets them all, and it can pretend to be down (``down()`` and
``up()``) to test what happens while a real broker is unreachable.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable

import attrs

from ..broker import BrokerContext, BrokerError, Delivery
from ..message import Message


@attrs.define(eq=False)
class _Entry:
    seq: int
    message: Message
    deliveries: int = 0


@attrs.define(eq=False)
class _Group:
    """One consumer group's view of a topic: what waits, and which keys are being handled."""

    pending: list[_Entry] = attrs.field(factory=list)  # by publication order
    busy: set[str] = attrs.field(factory=set)  # keys with a delivery not yet settled
    inflight: dict[int, _Entry] = attrs.field(factory=dict)

    def take(self) -> _Entry | None:
        """The first message whose key has nothing in flight, removed from ``pending``."""
        for index, entry in enumerate(self.pending):
            key = entry.message.key
            if key is None or key not in self.busy:
                del self.pending[index]
                if key is not None:
                    self.busy.add(key)
                self.inflight[entry.seq] = entry
                entry.deliveries += 1
                return entry
        return None

    def settle(self, entry: _Entry, *, requeue: bool) -> None:
        self.inflight.pop(entry.seq, None)
        if entry.message.key is not None:
            self.busy.discard(entry.message.key)
        if requeue:
            self._put_back(entry)

    def drop_inflight(self) -> None:
        """Return every unsettled delivery to ``pending``, as a lost connection would."""
        for entry in self.inflight.values():
            self._put_back(entry)
        self.inflight.clear()
        self.busy.clear()

    def _put_back(self, entry: _Entry) -> None:
        # Back in its original place, so its key's later messages still wait behind it.
        index = next((i for i, e in enumerate(self.pending) if e.seq > entry.seq), None)
        self.pending.insert(len(self.pending) if index is None else index, entry)


class MemoryBroker(BrokerContext):
    """Topics and consumer groups in memory, with the delivery rules of the real brokers.

    Each group receives every message of its topic at least once; messages of one key are
    delivered in order, the next only after the previous one is acked; a nacked message is
    delivered again before its key's later ones. A group declared after messages were published
    receives those too (the broker keeps them all).
    """

    name = "memory"

    def __init__(self) -> None:
        self._topics: dict[str, list[_Entry]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._seq = itertools.count()
        self._down = False
        self._epoch = 0  # bumped when the broker goes down: older deliveries can't be settled
        self._wake = asyncio.Event()

    async def connect(self) -> None:
        """Nothing to open; fails while the broker is down."""
        self._check_up()

    async def close(self) -> None:
        """Nothing to close."""

    @property
    def is_down(self) -> bool:
        """Whether the broker pretends to be unreachable."""
        return self._down

    def down(self) -> None:
        """Pretend the broker is unreachable until ``up()``.

        Publishing raises ``BrokerError``, nothing is delivered, and deliveries not yet settled
        are returned to their groups (acking one raises ``BrokerError``), as when a real
        broker's connection drops.
        """
        self._down = True
        self._epoch += 1
        for group in self._groups.values():
            group.drop_inflight()
        self._notify()

    def up(self) -> None:
        """End ``down()``: publishing works again and deliveries resume."""
        self._down = False
        self._notify()

    async def publish(self, message: Message) -> None:
        """Keep ``message`` for every group of its topic (confirmed at once).

        Raises:
            BrokerError: The broker is down.
        """
        self._check_up()
        entry = _Entry(next(self._seq), message)
        self._topics.setdefault(message.topic, []).append(entry)
        for (topic, _), group in self._groups.items():
            if topic == message.topic:
                group.pending.append(_Entry(entry.seq, message))
        self._notify()

    async def declare(self, topic: str, *, group: str) -> None:
        """Create ``group`` on ``topic``; it starts with every message published there so far."""
        self._group(topic, group)

    async def consume(self, topic: str, *, group: str) -> AsyncGenerator[Delivery, None]:
        """Deliveries on ``topic`` for ``group``; unsettled ones return to the group on exit."""
        state = self._group(topic, group)
        mine: dict[int, tuple[_Entry, int]] = {}
        try:
            while True:
                wake = self._wake
                entry = None if self._down else state.take()
                if entry is None:
                    await wake.wait()
                    continue
                mine[entry.seq] = (entry, self._epoch)
                yield Delivery(
                    message=entry.message,
                    ack=self._settler(state, entry, mine, requeue=False),
                    nack=self._settler(state, entry, mine, requeue=True),
                    redelivered=entry.deliveries > 1,
                )
        finally:
            for entry, epoch in mine.values():
                if epoch == self._epoch and entry.seq in state.inflight:
                    state.settle(entry, requeue=True)
            self._notify()

    def messages(self, topic: str) -> list[Message]:
        """Every message published on ``topic``, in order (for tests)."""
        return [entry.message for entry in self._topics.get(topic, [])]

    def unacked(self, topic: str, *, group: str) -> int:
        """How many of ``topic``'s messages ``group`` has not acked yet (for tests)."""
        state = self._groups.get((topic, group))
        return 0 if state is None else len(state.pending) + len(state.inflight)

    def _group(self, topic: str, group: str) -> _Group:
        state = self._groups.get((topic, group))
        if state is None:
            entries = self._topics.get(topic, [])
            state = _Group(pending=[_Entry(e.seq, e.message) for e in entries])
            self._groups[topic, group] = state
        return state

    def _settler(
        self,
        state: _Group,
        entry: _Entry,
        mine: dict[int, tuple[_Entry, int]],
        *,
        requeue: bool,
    ) -> Callable[[], Awaitable[None]]:
        epoch = self._epoch

        async def settle() -> None:
            if self._down or epoch != self._epoch:
                raise BrokerError(
                    f"cannot settle message {entry.message.id!r}: the broker went down since it "
                    "was delivered; it will be delivered again"
                )
            if entry.seq not in state.inflight:
                return  # settled already: acking twice is harmless
            mine.pop(entry.seq, None)
            state.settle(entry, requeue=requeue)
            self._notify()

        return settle

    def _check_up(self) -> None:
        if self._down:
            raise BrokerError("the memory broker is down (simulated with down()); call up()")

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()
