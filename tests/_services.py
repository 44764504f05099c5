"""Reaching the message brokers the tests run against: skip when absent, fail under CI.

RabbitMQ is ``$STATESAGA_TEST_AMQP`` (default ``amqp://guest:guest@127.0.0.1:5672/``), NATS
``$STATESAGA_TEST_NATS`` (default ``nats://127.0.0.1:4222``, JetStream enabled) and Redis
``$STATESAGA_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``, version 6.2 or later).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

AMQP_URL = os.environ.get("STATESAGA_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("STATESAGA_TEST_NATS", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("STATESAGA_TEST_REDIS", "redis://127.0.0.1:6379/0")


@functools.cache
def _unreachable(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 3):
            return None
    except OSError as error:
        return str(error)


def require(url: str, what: str, variable: str) -> None:
    """Skip the calling test if ``url`` does not answer, or fail it when ``$CI`` is ``true``."""
    reason = _unreachable(url)
    if reason is None:
        return
    message = f"{what} at {url} is unreachable ({reason}); set {variable} to a reachable one"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proxy:
    """A TCP relay to a broker that can be cut and restored, to make the broker 'go down'."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Accept connections and relay them to the broker."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and cut every relayed connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


async def remove_rabbitmq(probe: Any, exchange: str, topic: str, group: str) -> None:
    """Delete the queues ``probe`` (a RabbitMQBroker) made for ``topic`` and ``group``, and
    ``exchange``: what a test declared on the shared server."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for shard in range(probe.shards):
            await channel.queue_delete(probe.queue_name(topic, group, shard))
        await channel.exchange_delete(exchange)


async def remove_redis(prefix: str) -> None:
    """Delete every key named ``<prefix>:...`` on the test Redis: the streams a test made."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
