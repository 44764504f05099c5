"""NATS JetStream through nats-py: stored, acknowledged publishing and durable pull consumers.

Layout: a message on topic ``T`` is published to subject ``T.<shard>``, its shard chosen from
its key (``_wire.shard``), with a ``Nats-Msg-Id`` header equal to its id, so JetStream drops a
republished copy within its duplicate window (two minutes by default). One stream per topic
prefix (the topic's first word ``P``), ``<stream_prefix>_P``, holds subjects ``P.>`` with file
storage, and keeps messages for ``max_age`` seconds whether or not they have been consumed; if
another stream already holds the subject, that one is used. A consumer group ``G`` owns one
durable pull consumer per shard, filtered on ``T.<shard>``, with ``max_ack_pending=1``: the
server hands out one message of a shard at a time across all of the group's processes, and a
nak'd one comes again before the next, so one key's messages are handled in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from ..broker import BrokerContext, BrokerError, Delivery, hide_credentials
from ..message import Message
from . import _wire

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

logger = logging.getLogger("statesaga.messaging")

DEFAULT_URL = "nats://127.0.0.1:4222"
_T = TypeVar("_T")
_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")  # stream and consumer names: no dots, wildcards...
_GROUPS_TTL = 10.0  # seconds a publisher trusts what it read of a topic's groups and shards
_FETCH_WAIT = 1.0  # seconds one pull request waits for a message before asking again


def _nats() -> Any:
    try:
        import nats
        import nats.js.api
    except ImportError as error:
        raise BrokerError(
            f"NATS needs nats-py ({error}): pip install 'statesaga[messaging]'"
        ) from None
    return nats


class NatsBroker(BrokerContext):
    """A NATS server with JetStream enabled (``nats-server -js``).

    Args:
        url: ``nats://host:port`` (several, comma-separated, for a cluster).
        shards: Durable consumers per group and topic; one key always maps to the same one.
            Publishers and consumers must agree on it.
        timeout: Seconds a connect, publish, declare or ack may take before ``BrokerError``.
        max_age: Seconds a stream keeps a message, consumed or not.
        ack_wait: Seconds the server waits for an ack before delivering a message again; while
            a delivery is held, the broker tells the server it is still in progress.
        stream_prefix: Prefix of the names of the streams this broker creates.
    """

    name = "nats"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        shards: int = 4,
        timeout: float = 5.0,
        max_age: float = 7 * 86400.0,
        ack_wait: float = 30.0,
        stream_prefix: str = "statesaga",
    ) -> None:
        self.url = url
        self.shards = _wire.check_shards(shards)
        self.timeout = timeout
        self.max_age = max_age
        self.ack_wait = ack_wait
        self.stream_prefix = stream_prefix
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams: dict[str, str] = {}  # topic prefix -> stream holding its subjects
        self._declared: set[tuple[str, str]] = set()
        # Per topic: when its groups were read, and the shard subjects each group reads.
        self._shards_seen: dict[str, tuple[float, dict[str, set[str]]]] = {}
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect; the client reconnects by itself after a drop.

        Raises:
            BrokerError: The server did not answer within ``timeout``.
        """
        async with self._lock:
            if self._client is not None and not self._client.is_closed:
                return
            nats = _nats()

            async def quiet(error: Exception) -> None:
                logger.debug("NATS at %s: %s", _hide(self.url), error)

            try:
                async with asyncio.timeout(self.timeout):
                    client = await nats.connect(
                        self.url.split(","),
                        connect_timeout=max(1, round(self.timeout)),
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.5,
                        # No buffering while reconnecting: a publish or ack then fails at once
                        # instead of being sent later, after it was reported as failed.
                        pending_size=0,
                        error_cb=quiet,
                    )
            except Exception as error:
                raise self._error("cannot connect to", error) from None
            self._client, self._js = client, client.jetstream(timeout=self.timeout)

    async def close(self) -> None:
        """Close the connection; unacked deliveries come again after ``ack_wait``."""
        async with self._lock:
            client, self._client, self._js = self._client, None, None
            self._streams.clear()
            self._declared.clear()
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.close()

    async def publish(self, message: Message) -> None:
        """Store ``message`` in its stream and wait for the server's acknowledgement.

        Raises:
            BrokerError: Not acknowledged within ``timeout`` (server down or slow) or refused.
        """
        _wire.check_topic(message.topic)
        body = _wire.body(message)
        # Headers named Nats-* steer JetStream (expected sequence, TTL, rollup...): a message's
        # own are not sent, as they would not be delivered either.
        headers = {
            name: value
            for name, value in _wire.headers(message).items()
            if not name.lower().startswith("nats-")
        }
        headers["Nats-Msg-Id"] = message.id
        subject = f"{message.topic}.{_wire.shard(message, self.shards)}"
        try:
            # One deadline for the whole call, waiting for another task's connect included:
            # concurrent publishes to an unresponsive server each fail after ``timeout``, not
            # one ``timeout`` after another.
            async with asyncio.timeout(self.timeout):
                js = await self._jetstream()
                stream = await self._stream(message.topic)
                await self._check_shard(js, stream, message, subject)
                await _guard(js.publish(subject, body, stream=stream, headers=headers))
        except BrokerError:
            raise
        except Exception as error:
            raise self._error(f"message {message.id!r} was not stored by", error) from None

    async def declare(self, topic: str, *, group: str) -> None:
        """Create ``topic``'s stream and ``group``'s durable consumers (idempotent).

        Raises:
            BrokerError: The server is unreachable, or a consumer exists with another
                configuration.
        """
        _wire.check_topic(topic)
        if (topic, group) in self._declared:
            return
        js = await self._jetstream()
        stream = await self._stream(topic)
        api = _nats().js.api
        try:
            for shard in range(self.shards):
                config = api.ConsumerConfig(
                    durable_name=self.consumer_name(topic, group, shard),
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.ALL,
                    max_ack_pending=1,
                    ack_wait=self.ack_wait,
                    max_deliver=-1,
                    filter_subject=f"{topic}.{shard}",
                )
                await _guard(js.add_consumer(stream, config, timeout=self.timeout))
        except Exception as error:
            raise self._error(f"cannot declare group {group!r} of {topic!r} on", error) from None
        self._declared.add((topic, group))

    async def consume(self, topic: str, *, group: str) -> AsyncGenerator[Delivery, None]:
        """Deliveries on ``topic`` for ``group``, pulled from each shard's durable consumer.

        Raises:
            BrokerError: The server is unreachable when consuming starts.
        """
        await self.declare(topic, group=group)
        js = await self._jetstream()
        stream = self._streams[_prefix(topic)]
        arrived: asyncio.Queue[tuple[Msg, asyncio.Event]] = asyncio.Queue()
        subs: list[Any] = []
        try:
            for shard in range(self.shards):
                durable = self.consumer_name(topic, group, shard)
                subs.append(await _guard(js.pull_subscribe_bind(durable=durable, stream=stream)))
        except Exception as error:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            raise self._error(f"cannot consume {topic!r} for {group!r} from", error) from None
        held: dict[int, Msg] = {}
        pullers = [asyncio.create_task(self._pull(sub, arrived)) for sub in subs]
        try:
            while True:
                msg, settled = await arrived.get()
                held[id(msg)] = msg
                yield self._delivery(msg, settled, topic, stream, held)
        finally:
            for puller in pullers:
                puller.cancel()
            await asyncio.wait(pullers)
            while not arrived.empty():  # pulled but never handed out
                msg, _ = arrived.get_nowait()
                held[id(msg)] = msg
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    for msg in held.values():  # never settled: let them come again now
                        await _guard(msg.nak())
                    for sub in subs:
                        await _guard(sub.unsubscribe())

    async def _check_shard(
        self, js: JetStreamContext, stream: str, message: Message, subject: str
    ) -> None:
        """Refuse a message that a declared group has no consumer for: its shard is one the
        group was not declared with (publishers and consumers disagree on ``shards``), so the
        stream would keep it and no consumer of the group would ever receive it."""
        topic = message.topic
        known = self._shards_seen.get(topic)
        fresh = known is not None and time.monotonic() - known[0] < _GROUPS_TTL
        if known is not None and fresh and all(subject in s for s in known[1].values()):
            return
        groups: dict[str, set[str]] = {}
        for info in await _guard(js.consumers_info(stream)):
            config = info.config
            found = config.filter_subject or ""
            if config.durable_name and found.rpartition(".")[0] == topic:
                groups.setdefault(config.durable_name.rpartition("_")[0], set()).add(found)
        self._shards_seen[topic] = (time.monotonic(), groups)
        missing = sorted(group for group, subjects in groups.items() if subject not in subjects)
        if missing:
            declared = max(len(subjects) for subjects in groups.values())
            shard = subject.rpartition(".")[2]
            raise BrokerError(
                f"NATS refused message {message.id!r}: it goes to shard {shard} "
                f"of {topic!r}, which no consumer of {len(missing)} declared group(s) reads "
                f"(declared with {declared} shard(s), this publisher uses {self.shards}); give "
                "every publisher and consumer of the topic the same ?shards="
            )

    def consumer_name(self, topic: str, group: str, shard: int) -> str:
        """The durable consumer of ``group`` for shard ``shard`` of ``topic``."""
        # Names cannot hold dots; the digest keeps "a.b" and "a_b" apart.
        digest = hashlib.sha256(f"{group}\0{topic}".encode()).hexdigest()[:8]
        clean = _FORBIDDEN.sub("_", f"{group}__{topic}")[:200]
        return f"{clean}__{digest}_{shard}"

    async def _pull(self, sub: Any, arrived: asyncio.Queue[tuple[Msg, asyncio.Event]]) -> None:
        """Hand this shard's messages over one at a time, each once the previous one is settled."""
        nats = _nats()
        while True:
            try:
                msgs = await _guard(sub.fetch(1, timeout=_FETCH_WAIT))
            except nats.errors.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # disconnected: the client reconnects by itself
                logger.debug("NATS pull on %s failed: %s", _hide(self.url), error)
                await asyncio.sleep(0.2)
                continue
            for msg in msgs:
                settled = asyncio.Event()
                await arrived.put((msg, settled))
                while not settled.is_set():
                    try:
                        async with asyncio.timeout(self.ack_wait / 3):
                            await settled.wait()
                    except TimeoutError:
                        # Still being handled: keep the server from giving it to someone else.
                        with contextlib.suppress(Exception):
                            await _guard(msg.in_progress())

    def _delivery(
        self, msg: Msg, settled: asyncio.Event, topic: str, stream: str, held: dict[int, Msg]
    ) -> Delivery:
        fields = dict(msg.headers or {})
        sequence = msg.metadata.sequence.stream
        fallback = fields.get("Nats-Msg-Id") or f"{stream}:{sequence}"
        # Headers NATS itself reads (Nats-Msg-Id, Nats-Expected-Stream...) are not the message's.
        fields = {name: value for name, value in fields.items() if not name.startswith("Nats-")}
        message = _wire.decode(msg.data, fields, topic=topic, fallback_id=fallback)

        async def ack() -> None:
            await self._settle(msg.ack_sync(timeout=self.timeout), message, "ack")

        async def nack() -> None:
            await self._settle(msg.nak(), message, "nack")

        async def settle_once(action: Any) -> None:
            if settled.is_set():
                return  # settled already: a second ack or nack changes nothing
            held.pop(id(msg), None)
            try:
                await action()
            finally:
                settled.set()

        return Delivery(
            message=message,
            ack=lambda: settle_once(ack),
            nack=lambda: settle_once(nack),
            redelivered=msg.metadata.num_delivered > 1,
        )

    async def _settle(self, settling: Any, message: Message, what: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await _guard(settling)
        except Exception as error:
            raise self._error(
                f"could not {what} message {message.id!r} (it will be delivered again) on", error
            ) from None

    async def _jetstream(self) -> JetStreamContext:
        await self.connect()
        assert self._js is not None
        return self._js

    async def _stream(self, topic: str) -> str:
        """The stream holding ``topic``'s subjects, created if there is none."""
        prefix = _prefix(topic)
        known = self._streams.get(prefix)
        if known is not None:
            return known
        js = await self._jetstream()
        api = _nats().js.api
        name = _FORBIDDEN.sub("_", f"{self.stream_prefix}_{prefix}")
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    await _guard(
                        js.add_stream(
                            name=name,
                            subjects=[f"{prefix}.>"],
                            storage=api.StorageType.FILE,
                            max_age=self.max_age,
                        )
                    )
                except _nats().js.errors.BadRequestError:
                    # Exists with other settings, or another stream owns these subjects.
                    name = await _guard(js.find_stream_name_by_subject(f"{topic}.0"))
        except Exception as error:
            raise self._error(f"cannot set up a stream for {topic!r} on", error) from None
        self._streams[prefix] = name
        return name

    def _error(self, doing: str, error: BaseException) -> BrokerError:
        text = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, TimeoutError):
            text = f"no answer within {self.timeout:g} s"
        return BrokerError(f"{doing} NATS at {_hide(self.url)}: {text}")


async def _guard(awaitable: Awaitable[_T]) -> _T:
    """Await a nats-py call, re-raising a cancellation it swallowed.

    Some nats-py calls that publish catch ``CancelledError`` and go on; a task cancelled
    during one (or an ``asyncio.timeout`` that expired) would then keep running.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await awaitable
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result


def _prefix(topic: str) -> str:
    return topic.split(".", 1)[0]


def _hide(url: str) -> str:
    # A user part alone is a NATS token: a secret too.
    return hide_credentials(url, tokens=True)
