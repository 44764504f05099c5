"""Message brokers behind one interface, chosen by URL.

``memory://`` is in-process; ``amqp://`` is RabbitMQ, ``nats://`` NATS JetStream and
``redis://`` Redis Streams, each needing ``pip install 'statesaga[messaging]'`` (imported only
when first connected).
"""

from __future__ import annotations

from importlib.util import find_spec
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..broker import Broker, BrokerError, hide_credentials
from .memory import MemoryBroker

__all__ = ["SCHEMES", "MemoryBroker", "broker_from_url", "check_broker_url"]

#: URL schemes ``broker_from_url`` understands.
SCHEMES = ("memory", "amqp", "amqps", "nats", "tls", "redis", "rediss")

#: The client package each scheme's broker needs (the ``messaging`` extra), and what it is.
_CLIENTS = {
    "amqp": ("aio_pika", "RabbitMQ needs aio-pika"),
    "nats": ("nats", "NATS needs nats-py"),
    "redis": ("redis", "Redis needs the redis package"),
}
_CLIENTS.update(amqps=_CLIENTS["amqp"], tls=_CLIENTS["nats"], rediss=_CLIENTS["redis"])


def broker_from_url(url: str) -> Broker:
    """A (not yet connected) broker for ``url``.

    ``memory://``, ``amqp://user:password@host:5672/vhost`` (RabbitMQ; ``amqps://`` for TLS),
    ``nats://host:4222`` (NATS JetStream; ``tls://`` for TLS) and
    ``redis://[:password@]host:6379/0`` (Redis Streams; ``rediss://`` for TLS) are understood. A
    ``?shards=N`` query sets how many ordered shards a topic is split into (default 4; every
    publisher and consumer of a topic must use the same number). A Redis URL also takes
    ``?claim_after=SECONDS`` and ``?max_age=SECONDS``.

    Raises:
        BrokerError: ``url`` is not usable (see ``check_broker_url``).
    """
    scheme, plain, shards, seconds = _parse(url)
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("amqp", "amqps"):
        from .rabbitmq import RabbitMQBroker

        return RabbitMQBroker(plain, shards=shards)
    if scheme in ("redis", "rediss"):
        from .redis import RedisBroker

        broker = RedisBroker(plain, shards=shards)
        broker.claim_after = seconds.get("claim_after", broker.claim_after)
        broker.max_age = seconds.get("max_age", broker.max_age)
        return broker
    from .nats import NatsBroker

    return NatsBroker(plain, shards=shards)


def check_broker_url(url: str) -> None:
    """Refuse a broker URL that ``broker_from_url`` could not use, without connecting or
    importing a broker's client: a process taking one checks it when it starts.

    Raises:
        BrokerError: ``url`` is empty, its scheme is unknown (the message lists the known
            ones), its ``shards`` is not a positive integer, a Redis URL's database is not a
            number or its seconds are not positive numbers, or the broker's client package is
            not installed.
    """
    _parse(url)


def _parse(url: str) -> tuple[str, str, int, dict[str, float]]:
    """``url``'s scheme (lower case), the URL its client is given, its shard count, and a
    Redis URL's ``claim_after`` and ``max_age``."""
    known = ", ".join(f"{s}://" for s in SCHEMES)
    if not url.strip():
        raise BrokerError(f"an empty broker URL names no broker: use {known}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BrokerError(f"unknown broker URL scheme {scheme!r} in {_hide(url)!r}: use {known}")
    query = parse_qs(parts.query, keep_blank_values=True)
    shards = _shards(query.pop("shards", ["4"])[-1], url)
    seconds: dict[str, float] = {
        name: _seconds(name, query.pop(name)[-1], url)
        for name in ("claim_after", "max_age")
        if scheme in ("redis", "rediss") and name in query
    }
    if scheme in ("redis", "rediss"):
        from .redis import database_number  # the module only: its client loads on connect

        database_number(url)
    client = _CLIENTS.get(scheme)
    if client is not None and find_spec(client[0]) is None:  # looked for, not imported
        raise BrokerError(
            f"{client[1]}, which is not installed: pip install 'statesaga[messaging]' (from a "
            "checkout of statesaga: pip install -e '.[messaging]')"
        )
    # Re-encoded, so a value holding '&', '=' or '%' reaches the client as it was written.
    rest = urlencode({name: values[-1] for name, values in query.items()})
    return (
        scheme,
        urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)),
        shards,
        seconds,
    )


def _shards(text: str, url: str) -> int:
    shards = int(text) if text.isascii() and text.isdigit() else 0
    if shards < 1:
        raise BrokerError(f"shards={text!r} in {_hide(url)!r} is not a positive integer")
    return shards


def _seconds(name: str, text: str, url: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise BrokerError(f"{name}={text!r} in {_hide(url)!r} is not a positive number of seconds")
    return seconds


def _hide(url: str) -> str:
    return hide_credentials(url, tokens=True)  # a user part alone is a NATS token
