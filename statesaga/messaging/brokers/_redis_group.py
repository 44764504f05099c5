"""One Redis consumer of a group: the scripts it runs and the deliveries it hands out.

Every shard of a topic is its own stream, and a group holds at most one pending entry per shard:
``POLL`` reads a shard's next entry only when the group has nothing pending there, so one key's
messages are handled one at a time, in order, across all of the group's processes. A pending
entry comes again once it has been idle for ``claim_after`` (its consumer died) or at once when
it was nacked (``SETTLE`` makes it look idle that long); while a delivery is held, its consumer
refreshes it so no one else claims it. Each script runs atomically, so two consumers never both
see a shard as free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..broker import BrokerError, Delivery
from . import _wire

logger = logging.getLogger("statesaga.messaging")

_T = TypeVar("_T")

#: KEYS: the shard streams to look at; ARGV: group, consumer, claim_after in ms. Per stream:
#: a pending entry is claimed once idle for claim_after (one that was trimmed away meanwhile is
#: acked: there is nothing left to deliver), else the next new entry is read. Returns
#: {index (from 0), entry id, fields, 1 if claimed} per stream that gave an entry.
POLL = """
local out = {}
for i, key in ipairs(KEYS) do
  local entry, claimed = nil, 0
  if redis.call('XPENDING', key, ARGV[1])[1] > 0 then
    local first = redis.call('XPENDING', key, ARGV[1], '-', '+', 1)[1]
    if #redis.call('XRANGE', key, first[1], first[1]) == 0 then
      redis.call('XACK', key, ARGV[1], first[1])
    else
      local got = redis.call('XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', 1)
      entry, claimed = got[2][1], 1
    end
  end
  if entry == nil and redis.call('XPENDING', key, ARGV[1])[1] == 0 then
    local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                           'STREAMS', key, '>')
    if got then entry = got[1][2][1] end
  end
  if entry and entry[2] then
    out[#out + 1] = {i - 1, entry[1], entry[2], claimed}
  end
end
return out
"""

#: KEYS[1]: a shard stream; ARGV: group, consumer, entry id, 'ack' | 'nack' | 'touch', the
#: idle time in ms a nack gives the entry (claim_after: claimable at once). Acts only on an
#: entry this consumer still holds; returns 0 when another one has claimed it meanwhile.
SETTLE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then
  return 0
end
if ARGV[4] == 'ack' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
elseif ARGV[4] == 'nack' then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID')
else
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
end
return 1
"""

#: KEYS: shard streams; ARGV: group, and the idle time in ms past which a consumer that holds
#: nothing is forgotten (the names of stopped consumers would otherwise pile up). A consumer
#: still running that is forgotten loses nothing: its next read names it again.
PRUNE = """
local gone = 0
for _, key in ipairs(KEYS) do
  for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', key, ARGV[1])) do
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    if fields['pending'] == 0 and fields['idle'] > tonumber(ARGV[2]) then
      gone = gone + redis.call('XGROUP', 'DELCONSUMER', key, ARGV[1], fields['name'])
    end
  end
end
return gone
"""


class Reader:
    """The deliveries of one ``consume`` call: a poller, a keeper, and what is held.

    Args:
        client: The connected ``redis.asyncio.Redis``.
        scripts: ``POLL``, ``SETTLE`` and ``PRUNE`` registered on ``client``, by name.
        streams: The topic's shard streams, by shard.
        topic: The topic, for messages published without statesaga's fields.
        group: The consumer group.
        consumer: This consumer's name in the group, unique to it.
        claim_after: Seconds a pending entry stays idle before another consumer claims it.
        poll_interval: Seconds between looks at shards that had nothing to deliver.
        timeout: Seconds one call to Redis may take.
        error: Makes a ``BrokerError`` from what was being done and what went wrong.
        redeclare: Creates the group again (after its streams were deleted).
    """

    def __init__(
        self,
        *,
        client: Any,
        scripts: dict[str, Any],
        streams: list[str],
        topic: str,
        group: str,
        consumer: str,
        claim_after: float,
        poll_interval: float,
        timeout: float,
        error: Callable[[str, BaseException], BrokerError],
        redeclare: Callable[[], Any],
    ) -> None:
        self.client, self.scripts, self.streams = client, scripts, streams
        self.topic, self.group, self.consumer = topic, group, consumer
        self.claim_ms = max(1, round(claim_after * 1000))
        self.claim_after, self.poll_interval, self.timeout = claim_after, poll_interval, timeout
        self._error, self._redeclare = error, redeclare
        self._arrived: asyncio.Queue[Delivery] = asyncio.Queue()
        self._held: dict[int, str] = {}  # shard -> entry id handed out (or queued), unsettled
        self._wake = asyncio.Event()  # a shard was settled: look at it again now
        self._tasks: list[asyncio.Task[None]] = []
        self._lost: set[str] = set()  # held entries another consumer claimed (said once)

    async def start(self) -> None:
        """Forget stopped consumers of the group, then start polling and keeping."""
        args = [self.group, self.claim_ms]
        async with asyncio.timeout(self.timeout):
            await guard(self.scripts["prune"](keys=self.streams, args=args, client=self.client))
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._keep())]

    async def next(self) -> Delivery:
        """The next delivery, waiting for one."""
        return await self._arrived.get()

    async def stop(self) -> None:
        """Stop polling; give back what is held (queued or unsettled) so it comes again now."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        held, self._held = dict(self._held), {}
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                for shard, entry in held.items():
                    await self._settle(shard, entry, "nack")

    async def _poll(self) -> None:
        while True:
            self._wake.clear()  # before looking: a settle during the call is not missed
            free = [shard for shard in range(len(self.streams)) if shard not in self._held]
            got: list[Any] = []
            if free:
                keys = [self.streams[shard] for shard in free]
                args = [self.group, self.consumer, self.claim_ms]
                try:
                    async with asyncio.timeout(self.timeout):
                        poll = self.scripts["poll"]
                        got = await guard(poll(keys=keys, args=args, client=self.client))
                except Exception as error:  # Redis away: redis-py connects again on next call
                    logger.debug("%s", self._error(f"polling {self.topic!r} failed on", error))
                    if "NOGROUP" in str(error):  # the streams were deleted: declare again
                        with contextlib.suppress(Exception):
                            await self._redeclare()
                    got = []
            for index, entry, fields, claimed in got:
                shard = free[int(index)]
                self._held[shard] = _text(entry)
                self._arrived.put_nowait(self._delivery(shard, _text(entry), fields, claimed))
            if not got:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()

    async def _keep(self) -> None:
        """Refresh held entries, so no other consumer claims one while it is being handled."""
        while True:
            await asyncio.sleep(self.claim_after / 3)
            for shard, entry in list(self._held.items()):
                try:
                    async with asyncio.timeout(self.timeout):
                        mine = await self._settle(shard, entry, "touch")
                    if not mine and entry not in self._lost:
                        self._lost.add(entry)
                        logger.warning(
                            "Redis entry %s of %r was claimed by another consumer of "
                            "%r; it is being delivered again",
                            entry,
                            self.streams[shard],
                            self.group,
                        )
                except Exception as error:
                    logger.debug("%s", self._error(f"keeping {entry} failed on", error))

    async def _settle(self, shard: int, entry: str, what: str) -> bool:
        args = [self.group, self.consumer, entry, what, self.claim_ms]
        keys = [self.streams[shard]]
        settle = self.scripts["settle"]
        return bool(await guard(settle(keys=keys, args=args, client=self.client)))

    def _delivery(self, shard: int, entry: str, fields: list[Any], claimed: Any) -> Delivery:
        pairs = {_text(fields[i]): fields[i + 1] for i in range(0, len(fields) - 1, 2)}
        body = pairs.pop("body", b"")
        data = body if isinstance(body, bytes) else str(body).encode()
        headers = {name: _text(value) for name, value in pairs.items()}
        fallback = f"{self.streams[shard]}:{entry}"
        message = _wire.decode(data, headers, topic=self.topic, fallback_id=fallback)
        settled = False

        async def settle(what: str) -> None:
            nonlocal settled
            if settled:
                return  # settled already: a second ack or nack changes nothing
            settled = True
            try:
                async with asyncio.timeout(self.timeout):
                    mine = await self._settle(shard, entry, what)
            except Exception as error:
                raise self._error(
                    f"could not {what} message {message.id!r} (it will be delivered again) on",
                    error,
                ) from None
            finally:
                if self._held.get(shard) == entry:
                    del self._held[shard]
                self._lost.discard(entry)
                self._wake.set()
            if not mine:
                raise BrokerError(
                    f"could not {what} message {message.id!r}: another consumer of group "
                    f"{self.group!r} claimed it after it was held for claim_after = "
                    f"{self.claim_after:g} s, and it is being delivered again"
                )

        return Delivery(
            message=message,
            ack=lambda: settle("ack"),
            nack=lambda: settle("nack"),
            redelivered=bool(int(claimed)),
        )


async def guard(awaitable: Awaitable[_T]) -> _T:
    """Await a redis-py call, re-raising a cancellation it swallowed.

    A task cancelled while redis-py hands its connection back to the pool may see the call
    return normally, or fail with an error of its own; the task (or an ``asyncio.timeout``
    that expired) would then go on.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        result = await awaitable
    except Exception:
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError from None
        raise
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
