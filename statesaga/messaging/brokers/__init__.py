"""Message brokers behind one interface, chosen by URL.

``memory://`` is in-process; ``amqp://`` is RabbitMQ and ``nats://`` NATS JetStream, both
needing ``pip install 'statesaga[messaging]'`` (imported only when first connected).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..broker import Broker, BrokerError
from .memory import MemoryBroker

__all__ = ["SCHEMES", "MemoryBroker", "broker_from_url"]

#: URL schemes ``broker_from_url`` understands.
SCHEMES = ("memory", "amqp", "amqps", "nats", "tls")


def broker_from_url(url: str) -> Broker:
    """A (not yet connected) broker for ``url``.

    ``memory://``, ``amqp://user:password@host:5672/vhost`` (RabbitMQ; ``amqps://`` for TLS)
    and ``nats://host:4222`` (NATS JetStream; ``tls://`` for TLS) are understood. A
    ``?shards=N`` query sets how many ordered shards a topic is split into (default 4; every
    publisher and consumer of a topic must use the same number).

    Raises:
        BrokerError: The scheme is unknown (the message lists the known ones), or ``shards`` is
            not a positive integer.
    """
    from ...store import hide_password

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryBroker()
    query = parse_qs(parts.query, keep_blank_values=True)
    shards = _shards(query.pop("shards", ["4"])[-1], url)
    rest = "&".join(f"{name}={values[-1]}" for name, values in query.items())
    plain = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
    if scheme in ("amqp", "amqps"):
        from .rabbitmq import RabbitMQBroker

        return RabbitMQBroker(plain, shards=shards)
    if scheme in ("nats", "tls"):
        from .nats import NatsBroker

        return NatsBroker(plain, shards=shards)
    known = ", ".join(f"{s}://" for s in SCHEMES)
    raise BrokerError(
        f"unknown broker URL scheme {scheme!r} in {hide_password(url)!r}: use {known}"
    )


def _shards(text: str, url: str) -> int:
    try:
        shards = int(text)
    except ValueError:
        shards = 0
    if shards < 1:
        from ...store import hide_password

        raise BrokerError(f"shards={text!r} in {hide_password(url)!r} is not a positive integer")
    return shards
