"""How a ``Message`` travels: a JSON body and text headers any consumer can read.

The body is the payload as UTF-8 JSON. Every other field is a header (``statesaga-id``,
``statesaga-topic``, ``statesaga-key``, ``statesaga-saga-id``, ``statesaga-step``,
``statesaga-created-at``), beside the message's own headers, so a consumer written without
statesaga can read them. Messages are spread over a fixed number of shards by key: every message
of one key lands in the same shard, and a shard is delivered in order, one message at a time.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping

from ..broker import BrokerError
from ..message import Message

PREFIX = "statesaga-"
ID, TOPIC, KEY = f"{PREFIX}id", f"{PREFIX}topic", f"{PREFIX}key"
SAGA_ID, STEP, CREATED_AT = f"{PREFIX}saga-id", f"{PREFIX}step", f"{PREFIX}created-at"
CONTENT_TYPE = "application/json"


def body(message: Message) -> bytes:
    """The payload as compact UTF-8 JSON.

    Raises:
        BrokerError: The payload is not JSON data.
    """
    try:
        return json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as error:
        raise BrokerError(
            f"message {message.id!r} on {message.topic!r} has a payload that is not JSON "
            f"data ({error}): emit dicts, lists, strings, numbers, booleans or None"
        ) from None


def headers(message: Message) -> dict[str, str]:
    """The message's own headers plus its fields as ``statesaga-*`` headers."""
    out = {name: value for name, value in message.headers.items() if not name.startswith(PREFIX)}
    out[ID] = message.id
    out[TOPIC] = message.topic
    if message.key is not None:
        out[KEY] = message.key
    out[SAGA_ID] = message.saga_id
    out[STEP] = message.step
    out[CREATED_AT] = repr(message.created_at)
    return out


def decode(data: bytes, fields: Mapping[str, str], *, topic: str, fallback_id: str) -> Message:
    """The message carried by ``data`` and ``fields`` (headers).

    Messages published without statesaga's headers are accepted: ``fallback_id`` (the broker's
    own message id) stands in for the id, and a body that is not JSON arrives as text.
    """
    try:
        payload = json.loads(data) if data else None
    except ValueError:
        payload = data.decode("utf-8", "replace")
    try:
        created_at = float(fields.get(CREATED_AT, "0") or 0)
    except ValueError:
        created_at = 0.0
    return Message(
        id=fields.get(ID) or fallback_id,
        topic=fields.get(TOPIC) or topic,
        payload=payload,
        key=fields.get(KEY),
        headers={name: value for name, value in fields.items() if not name.startswith(PREFIX)},
        saga_id=fields.get(SAGA_ID, ""),
        step=fields.get(STEP, ""),
        created_at=created_at,
    )


def shard(message: Message, shards: int) -> int:
    """The shard ``message`` goes to: by key, so one key stays in one ordered shard.

    A message without a key is placed by its id: it is spread, and not ordered.
    """
    return zlib.crc32((message.key if message.key is not None else message.id).encode()) % shards


def check_shards(shards: int) -> int:
    """``shards`` if it is a positive number.

    Raises:
        BrokerError: It is not.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise BrokerError(f"shards must be a positive integer, not {shards!r}")
    return shards


def check_topic(topic: str) -> str:
    """``topic`` if brokers can route it.

    Raises:
        BrokerError: It is empty, or holds whitespace or a wildcard (``*``, ``#``, ``>``).
    """
    if not topic or any(c.isspace() or c in "*#>" for c in topic) or ".." in topic:
        raise BrokerError(
            f"{topic!r} is not a usable topic: use dot-separated words without spaces or "
            "wildcards (*, #, >), e.g. 'orders.created'"
        )
    if topic.startswith(".") or topic.endswith("."):
        raise BrokerError(f"{topic!r} is not a usable topic: it cannot start or end with a dot")
    return topic
