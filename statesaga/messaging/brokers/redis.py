"""Redis Streams through redis-py (``redis.asyncio``): consumer groups over sharded streams.

Layout: a message on topic ``T`` is added (``XADD``) to the stream ``<stream_prefix>:T:<shard>``,
its shard chosen from its key (``_wire.shard``), as the fields ``body`` (the payload as JSON) and
one per header (``statesaga-id``, ...). Adding it also trims the stream of entries older than
``max_age`` (``MINID``, by the server's clock). A consumer group ``G`` is a Redis consumer group
of the same name on every shard stream, created from the start of the stream, so a group
declared later still reads what the streams hold. How a group's consumers share the shards, one
pending entry per shard at a time, is in ``_redis_group``.

Needs a single Redis server (or a primary with replicas) of version 6.2 or later; Redis Cluster
is not supported, as one script touches every shard stream of a topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import unquote, urlsplit

from ..broker import BrokerContext, BrokerError, Delivery, hide_credentials
from ..message import Message
from . import _redis_group, _wire

DEFAULT_URL = "redis://127.0.0.1:6379/0"

#: KEYS[1]: the shard stream, KEYS[2]: the topic's shard count key; ARGV[1]: max_age in ms (0:
#: keep everything), ARGV[2]: the shard; then field, value... A shard beyond what the topic's
#: groups read is refused: its messages would be kept where no consumer looks.
_PUBLISH = """
local read = redis.call('GET', KEYS[2])
if read and tonumber(ARGV[2]) >= tonumber(read) then
  return redis.error_reply('SHARDS the consumer groups of this topic read ' .. read ..
    ' shards, and this message is for shard ' .. ARGV[2] ..
    ': give its publishers and consumers the same shards (?shards=N)')
end
local add = {'XADD', KEYS[1]}
local max_age = tonumber(ARGV[1])
if max_age > 0 then
  local now = redis.call('TIME')
  local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age
  add[#add + 1] = 'MINID'
  add[#add + 1] = string.format('%.0f', math.max(oldest, 0))
end
add[#add + 1] = '*'
for i = 3, #ARGV do add[#add + 1] = ARGV[i] end
return redis.call(unpack(add))
"""

#: KEYS: shard streams, then the topic's shard count key; ARGV[1]: group. Creates the group
#: from the streams' start if missing, and keeps the fewest shards any group reads.
_DECLARE = """
for i = 1, #KEYS - 1 do
  local made = redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
  if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
    return redis.error_reply(made.err)
  end
end
local read = tonumber(redis.call('GET', KEYS[#KEYS]) or #KEYS - 1)
redis.call('SET', KEYS[#KEYS], math.min(read, #KEYS - 1))
return #KEYS - 1
"""


def _redis() -> Any:
    try:
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
    except ImportError as error:
        raise BrokerError(
            f"Redis needs the redis package ({error}): pip install 'statesaga[messaging]'"
        ) from None
    return redis


class RedisBroker(BrokerContext):
    """A Redis server (6.2 or later) used through streams and consumer groups.

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
        shards: Streams per topic; one key always maps to the same one. Publishers and
            consumers must agree on it.
        timeout: Seconds a connect, publish, declare or ack may take before ``BrokerError``.
        max_age: Seconds a stream keeps an entry, consumed or not (None: for ever); older
            entries go when the next message is added to their stream.
        claim_after: Seconds a delivered, unacked entry may stay idle before another consumer
            of its group claims it (its consumer is presumed dead). While a delivery is held,
            its consumer refreshes it every ``claim_after / 3`` seconds.
        poll_interval: Seconds an idle consumer waits between looks for new entries.
        stream_prefix: Prefix of the names of the streams (``<prefix>:<topic>:<shard>``).

    Raises:
        BrokerError: The URL is not a Redis URL, its database is not a number, or an option
            is out of range.
    """

    name = "redis"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        shards: int = 4,
        timeout: float = 5.0,
        max_age: float | None = 7 * 86400.0,
        claim_after: float = 30.0,
        poll_interval: float = 0.1,
        stream_prefix: str = "statesaga",
    ) -> None:
        self.url = url
        self.db = database_number(url)
        self.shards = _wire.check_shards(shards)
        self.timeout = _positive("timeout", timeout)
        self.max_age = None if max_age is None else _positive("max_age", max_age)
        self.claim_after = _positive("claim_after", claim_after)
        self.poll_interval = _positive("poll_interval", poll_interval)
        self.stream_prefix = stream_prefix
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._declared: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect and check that the server answers (and takes the password and database).

        Raises:
            BrokerError: Redis did not answer within ``timeout``, or refused.
        """
        async with self._lock:
            if self._client is not None:
                return
            redis = _redis()
            client = redis.asyncio.Redis.from_url(
                self.url,
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
                # One immediate retry on a fresh connection: a pooled one may have died with a
                # restarted server. No backoff: ``timeout`` bounds every call.
                retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1),
                client_name="statesaga",
            )
            try:
                async with asyncio.timeout(self.timeout):
                    await _redis_group.guard(client.ping())
            except BaseException as error:
                with contextlib.suppress(Exception):
                    await _close(client)
                if isinstance(error, Exception):
                    raise self._error("cannot connect to", error) from None
                raise
            self._scripts = {
                "publish": client.register_script(_PUBLISH),
                "declare": client.register_script(_DECLARE),
                "poll": client.register_script(_redis_group.POLL),
                "settle": client.register_script(_redis_group.SETTLE),
                "prune": client.register_script(_redis_group.PRUNE),
            }
            self._client = client

    async def close(self) -> None:
        """Close the connections; unacked deliveries are claimed by others after ``claim_after``."""
        async with self._lock:
            client, self._client = self._client, None
            self._declared.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                await _close(client)

    async def publish(self, message: Message) -> None:
        """Add ``message`` to its shard stream; return once Redis has answered with its id.

        Raises:
            BrokerError: Not answered within ``timeout`` (Redis down or slow) or refused.
        """
        _wire.check_topic(message.topic)
        fields: list[Any] = ["body", _wire.body(message)]
        for name, value in _wire.headers(message).items():
            if name != "body":  # the payload's field: a header of that name is not sent
                fields += [name, value]
        max_age = 0 if self.max_age is None else max(1, round(self.max_age * 1000))
        shard = _wire.shard(message, self.shards)
        keys = [self.stream_name(message.topic, shard), self._shards_key(message.topic)]
        try:
            # One deadline for the whole call, waiting for another task's connect included.
            async with asyncio.timeout(self.timeout):
                client = await self._connected()
                script = self._scripts["publish"]
                await _redis_group.guard(
                    script(keys=keys, args=[max_age, shard, *fields], client=client)
                )
        except BrokerError:
            raise
        except Exception as error:
            raise self._error(f"message {message.id!r} was not stored by", error) from None

    async def declare(self, topic: str, *, group: str) -> None:
        """Create ``group`` on every shard stream of ``topic`` (idempotent).

        Raises:
            BrokerError: Redis is unreachable, or a key of that name is not a stream.
        """
        _wire.check_topic(topic)
        if (topic, group) in self._declared:
            return
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._connected()
                script = self._scripts["declare"]
                keys = [*self.stream_names(topic), self._shards_key(topic)]
                await _redis_group.guard(script(keys=keys, args=[group], client=client))
        except BrokerError:
            raise
        except Exception as error:
            raise self._error(f"cannot declare group {group!r} of {topic!r} on", error) from None
        self._declared.add((topic, group))

    async def consume(self, topic: str, *, group: str) -> AsyncGenerator[Delivery, None]:
        """Deliveries on ``topic`` for ``group``: each shard's next entry once it is free.

        Raises:
            BrokerError: Redis is unreachable when consuming starts.
        """
        await self.declare(topic, group=group)

        async def redeclare() -> None:
            self._declared.discard((topic, group))
            await self.declare(topic, group=group)

        reader = _redis_group.Reader(
            client=await self._connected(),
            scripts=self._scripts,
            streams=self.stream_names(topic),
            topic=topic,
            group=group,
            consumer=_consumer_name(),
            claim_after=self.claim_after,
            poll_interval=self.poll_interval,
            timeout=self.timeout,
            error=self._error,
            redeclare=redeclare,
        )
        try:
            await reader.start()
        except Exception as error:
            raise self._error(f"cannot consume {topic!r} for {group!r} from", error) from None
        try:
            while True:
                yield await reader.next()
        finally:
            await reader.stop()

    def stream_name(self, topic: str, shard: int) -> str:
        """The stream holding shard ``shard`` of ``topic``."""
        return f"{self.stream_prefix}:{topic}:{shard}"

    def _shards_key(self, topic: str) -> str:
        """The key holding how many shards the groups of ``topic`` read (the fewest)."""
        return f"{self.stream_prefix}:{topic}:shards"

    def stream_names(self, topic: str) -> list[str]:
        """Every shard stream of ``topic``, by shard."""
        return [self.stream_name(topic, shard) for shard in range(self.shards)]

    async def _connected(self) -> Any:
        await self.connect()
        return self._client

    def _error(self, doing: str, error: BaseException) -> BrokerError:
        text = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, TimeoutError) or type(error).__name__ == "TimeoutError":
            text = f"no answer within {self.timeout:g} s"
        elif _refused(error):
            text = "connection refused (is Redis running and listening there?)"
        # redis-py may repeat the password in its own messages (a failed AUTH): never show it.
        password = urlsplit(self.url).password
        if password:
            text = text.replace(unquote(password), "***").replace(password, "***")
        return BrokerError(f"{doing} Redis at {hide_credentials(self.url)}: {text}")


async def _close(client: Any) -> None:
    closing = getattr(client, "aclose", None) or client.close  # aclose from redis 5.0.1
    await closing()


def _refused(error: BaseException) -> bool:
    """Whether ``error`` (or what redis-py wrapped in it) is a refused TCP connection."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _consumer_name() -> str:
    """A name no other consumer of the group has: host, process, and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def database_number(url: str) -> int:
    """The database number in ``url``'s path (0 when there is none).

    Raises:
        BrokerError: ``url`` is not ``redis://`` or ``rediss://``, or the path is not a number.
    """
    parts = urlsplit(url)
    shown = hide_credentials(url)
    if parts.scheme.lower() not in ("redis", "rediss"):
        raise BrokerError(f"{shown!r} is not a Redis URL: use redis://host:6379/0 (rediss:// TLS)")
    path = unquote(parts.path).strip("/")
    if not path:
        return 0
    if not (path.isascii() and path.isdigit()):
        raise BrokerError(
            f"the database {path!r} in {shown!r} is not a number: name it by its number, "
            "e.g. redis://host:6379/0"
        )
    return int(path)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BrokerError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)
