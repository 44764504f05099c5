"""Message brokers behind one interface, chosen by URL.

``memory://`` is in-process; ``amqp://`` is RabbitMQ and ``nats://`` NATS JetStream, both
needing ``pip install 'statesaga[messaging]'`` (imported only when first connected).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..broker import Broker, BrokerError, hide_credentials
from .memory import MemoryBroker

__all__ = ["SCHEMES", "MemoryBroker", "broker_from_url", "check_broker_url"]

#: URL schemes ``broker_from_url`` understands.
SCHEMES = ("memory", "amqp", "amqps", "nats", "tls")


def broker_from_url(url: str) -> Broker:
    """A (not yet connected) broker for ``url``.

    ``memory://``, ``amqp://user:password@host:5672/vhost`` (RabbitMQ; ``amqps://`` for TLS)
    and ``nats://host:4222`` (NATS JetStream; ``tls://`` for TLS) are understood. A
    ``?shards=N`` query sets how many ordered shards a topic is split into (default 4; every
    publisher and consumer of a topic must use the same number).

    Raises:
        BrokerError: ``url`` is not usable (see ``check_broker_url``).
    """
    scheme, plain, shards = _parse(url)
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("amqp", "amqps"):
        from .rabbitmq import RabbitMQBroker

        return RabbitMQBroker(plain, shards=shards)
    from .nats import NatsBroker

    return NatsBroker(plain, shards=shards)


def check_broker_url(url: str) -> None:
    """Refuse a broker URL that ``broker_from_url`` could not use, without connecting or
    importing a broker's client: a process taking one checks it when it starts.

    Raises:
        BrokerError: ``url`` is empty, its scheme is unknown (the message lists the known
            ones), or its ``shards`` is not a positive integer.
    """
    _parse(url)


def _parse(url: str) -> tuple[str, str, int]:
    """``url``'s scheme (lower case), the URL its client is given, and its shard count."""
    known = ", ".join(f"{s}://" for s in SCHEMES)
    if not url.strip():
        raise BrokerError(f"an empty broker URL names no broker: use {known}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BrokerError(f"unknown broker URL scheme {scheme!r} in {_hide(url)!r}: use {known}")
    query = parse_qs(parts.query, keep_blank_values=True)
    shards = _shards(query.pop("shards", ["4"])[-1], url)
    # Re-encoded, so a value holding '&', '=' or '%' reaches the client as it was written.
    rest = urlencode({name: values[-1] for name, values in query.items()})
    return (
        scheme,
        urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)),
        shards,
    )


def _shards(text: str, url: str) -> int:
    shards = int(text) if text.isascii() and text.isdigit() else 0
    if shards < 1:
        raise BrokerError(f"shards={text!r} in {_hide(url)!r} is not a positive integer")
    return shards


def _hide(url: str) -> str:
    return hide_credentials(url, tokens=True)  # a user part alone is a NATS token
