"""RabbitMQ through aio-pika: publisher confirms, durable queues, persistent messages.

Layout: one durable topic exchange (``statesaga`` by default). A message on topic ``T`` is
published with routing key ``T.<shard>``, its shard chosen from its key (``_wire.shard``). A
consumer group ``G`` owns one durable queue per shard, ``<exchange>.G.T.<shard>``, bound to
``T.<shard>``. Each queue has a single active consumer (``x-single-active-consumer``) that holds
at most one unacked message (prefetch 1), so one key's messages are handled one at a time, in
order, even with many consumer processes in the group; a nacked message goes back to the head of
its queue and comes again before its key's later ones. Other consumer processes stand by for a
queue and take over when its active consumer goes away.

Publishing is ``mandatory``: a message no queue is bound to is returned by RabbitMQ and
``publish`` raises instead of letting it vanish, so declare the groups before publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ..broker import BrokerContext, BrokerError, Delivery, hide_credentials
from ..message import Message
from . import _wire

if TYPE_CHECKING:
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _aio_pika() -> Any:
    try:
        import aio_pika
    except ImportError as error:
        raise BrokerError(
            f"RabbitMQ needs aio-pika ({error}): pip install 'statesaga[messaging]'"
        ) from None
    return aio_pika


class RabbitMQBroker(BrokerContext):
    """A RabbitMQ broker (AMQP 0-9-1).

    Args:
        url: ``amqp://user:password@host:port/vhost``.
        exchange: The durable topic exchange messages are published to.
        shards: Queues per consumer group; one key always maps to the same one. Publishers and
            consumers must agree on it; changing it reorders messages still queued.
        timeout: Seconds a connect, publish, declare or ack may take before ``BrokerError``.
        reconnect_interval: Seconds between reconnection attempts after the connection drops.
    """

    name = "rabbitmq"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = "statesaga",
        shards: int = 4,
        timeout: float = 5.0,
        reconnect_interval: float = 1.0,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.shards = _wire.check_shards(shards)
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._declared: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect, open a confirming channel and declare the exchange.

        Raises:
            BrokerError: RabbitMQ did not answer within ``timeout``, or refused.
        """
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed:
                return
            pika = _aio_pika()
            # Every connection object made here, held so a failed connect can close it: one
            # left behind (even by a connect cut short, its handshake unanswered) reconnects
            # in the background for ever, and keeps the event loop from shutting down.
            made: list[AbstractRobustConnection] = []

            def tracked(*args: Any, **kwargs: Any) -> AbstractRobustConnection:
                made.append(pika.RobustConnection(*args, **kwargs))
                return made[-1]

            try:
                async with asyncio.timeout(self.timeout):
                    connection = await pika.connect_robust(
                        self.url,
                        timeout=self.timeout,
                        reconnect_interval=self.reconnect_interval,
                        connection_class=tracked,
                    )
                    channel = await connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    self._exchange = await channel.declare_exchange(
                        self.exchange_name, pika.ExchangeType.TOPIC, durable=True
                    )
            except BaseException as error:
                for leftover in made:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(self.timeout):
                            await leftover.close()
                if isinstance(error, Exception):
                    raise self._error("cannot connect to", error) from None
                raise
            self._connection = connection

    async def close(self) -> None:
        """Close the connection; unacked deliveries go back to their queues."""
        async with self._lock:
            connection, self._connection, self._exchange = self._connection, None, None
            self._declared.clear()
        if connection is not None and not connection.is_closed:
            await connection.close()

    async def publish(self, message: Message) -> None:
        """Publish ``message`` persistently and wait for RabbitMQ's confirm.

        Raises:
            BrokerError: Not confirmed within ``timeout`` (RabbitMQ down or slow), refused, or
                not routed to any queue (no consumer group declared for its topic).
        """
        _wire.check_topic(message.topic)
        body = _wire.body(message)
        pika = _aio_pika()
        created = message.created_at or None
        amqp = pika.Message(
            body,
            headers=_wire.headers(message),
            content_type=_wire.CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.PERSISTENT,
            message_id=message.id,
            timestamp=datetime.datetime.fromtimestamp(created, datetime.UTC) if created else None,
            app_id="statesaga",
        )
        key = f"{message.topic}.{_wire.shard(message, self.shards)}"
        try:
            # One deadline for the whole call, waiting for another task's connect included:
            # concurrent publishes to an unresponsive RabbitMQ each fail after ``timeout``,
            # not one ``timeout`` after another.
            async with asyncio.timeout(self.timeout):
                await self.connect()
                assert self._exchange is not None
                await self._exchange.publish(amqp, routing_key=key, mandatory=True)
        except pika.exceptions.PublishError:
            raise BrokerError(
                f"RabbitMQ returned message {message.id!r}: no queue is bound to topic "
                f"{message.topic!r} on exchange {self.exchange_name!r}; declare the consumer "
                "groups first (broker.declare(topic, group=...))"
            ) from None
        except BrokerError:
            raise
        except Exception as error:
            raise self._error(f"message {message.id!r} was not confirmed by", error) from None

    async def declare(self, topic: str, *, group: str) -> None:
        """Declare ``group``'s durable queues for ``topic`` and bind them (idempotent).

        Raises:
            BrokerError: RabbitMQ is unreachable, or a queue exists with other arguments.
        """
        _wire.check_topic(topic)
        if (topic, group) in self._declared:
            return
        await self.connect()
        assert self._connection is not None
        try:
            async with asyncio.timeout(self.timeout):
                channel = await self._connection.channel()
                try:
                    for shard in range(self.shards):
                        queue = await self._declare_queue(channel, topic, group, shard)
                        await queue.bind(self.exchange_name, routing_key=f"{topic}.{shard}")
                finally:
                    await channel.close()
        except Exception as error:
            raise self._error(f"cannot declare group {group!r} of {topic!r} on", error) from None
        self._declared.add((topic, group))

    async def consume(self, topic: str, *, group: str) -> AsyncGenerator[Delivery, None]:
        """Deliveries on ``topic`` for ``group``, from every shard queue this consumer is active on.

        Raises:
            BrokerError: RabbitMQ is unreachable when consuming starts.
        """
        await self.declare(topic, group=group)
        assert self._connection is not None
        arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            await arrived.put(incoming)

        # A robust channel: after a reconnection it declares its queues and consumers again,
        # and RabbitMQ redelivers what was unacked.
        channel: aio_pika.abc.AbstractRobustChannel | None = None
        try:
            async with asyncio.timeout(self.timeout):
                channel = await self._connection.channel()
                await channel.set_qos(prefetch_count=1)  # one unacked message per shard queue
                for shard in range(self.shards):
                    queue = await self._declare_queue(channel, topic, group, shard)
                    await queue.consume(on_message)
        except Exception as error:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()
            raise self._error(f"cannot consume {topic!r} for {group!r} from", error) from None
        try:
            while True:
                incoming = await arrived.get()
                if _stale(incoming):
                    continue  # its channel died: RabbitMQ has put it back and delivers it again
                yield self._delivery(incoming, topic)
        finally:
            # Unacked deliveries go back to their queues (also when the connection is gone).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await channel.close()

    def queue_name(self, topic: str, group: str, shard: int) -> str:
        """The durable queue holding shard ``shard`` of ``topic`` for ``group``."""
        name = f"{self.exchange_name}.{group}.{topic}.{shard}"
        if len(name.encode()) > 255:  # RabbitMQ's limit
            digest = hashlib.sha256(name.encode()).hexdigest()[:16]
            name = f"{self.exchange_name}.{digest}.{shard}"
        return name

    async def _declare_queue(
        self, channel: aio_pika.abc.AbstractChannel, topic: str, group: str, shard: int
    ) -> aio_pika.abc.AbstractQueue:
        return await channel.declare_queue(
            self.queue_name(topic, group, shard),
            durable=True,
            # Classic, whatever the vhost's default: a quorum queue's delivery limit would drop
            # a message whose handler keeps failing, where the inbox retries it until it works.
            arguments={"x-single-active-consumer": True, "x-queue-type": "classic"},
        )

    def _delivery(self, incoming: AbstractIncomingMessage, topic: str) -> Delivery:
        fields = {name: _text(value) for name, value in (incoming.headers or {}).items()}
        fallback = incoming.message_id or "sha256:" + hashlib.sha256(incoming.body).hexdigest()
        message = _wire.decode(incoming.body, fields, topic=topic, fallback_id=fallback)

        async def ack() -> None:
            if not incoming.processed:  # a second ack or nack changes nothing
                await self._settle(incoming.ack(), message, "ack")

        async def nack() -> None:
            if not incoming.processed:
                await self._settle(incoming.nack(requeue=True), message, "nack")

        return Delivery(message=message, ack=ack, nack=nack, redelivered=bool(incoming.redelivered))

    async def _settle(self, settling: Any, message: Message, what: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await settling
        except Exception as error:
            raise self._error(
                f"could not {what} message {message.id!r} (it will be delivered again) on", error
            ) from None

    def _error(self, doing: str, error: BaseException) -> BrokerError:
        text = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, TimeoutError):
            text = f"no answer within {self.timeout:g} s"
        return BrokerError(f"{doing} RabbitMQ at {_hide(self.url)}: {text}")


def _stale(incoming: AbstractIncomingMessage) -> bool:
    try:
        incoming.channel  # noqa: B018 (raises once the channel it came on is closed)
    except Exception:
        return True
    return False


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _hide(url: str) -> str:
    return hide_credentials(url)
