"""Exactly-once messaging: a transactional outbox for steps, an inbox for consumers.

Steps emit with ``ctx.emit``; messages are committed with the step and published after the
commit (``statesaga.messaging.relay.Relay`` delivers what that first attempt could not).
Consumers apply each message once through an ``Inbox``. Brokers: ``broker_from_url``
(``check_broker_url`` checks a URL without building or connecting anything).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .broker import Broker, BrokerError, Delivery
from .brokers import MemoryBroker, broker_from_url, check_broker_url
from .inbox import Inbox, InboxError, Outcome, consume
from .inboxes import inbox_for
from .message import Message

if TYPE_CHECKING:  # imported when first named: PostgreSQL's needs its driver
    from .inbox_postgres import PostgresInbox
    from .inbox_sqlite import SQLiteInbox

__all__ = [
    "Broker",
    "BrokerError",
    "Delivery",
    "Inbox",
    "InboxError",
    "MemoryBroker",
    "Message",
    "Outcome",
    "PostgresInbox",
    "SQLiteInbox",
    "broker_from_url",
    "check_broker_url",
    "consume",
    "inbox_for",
]


def __getattr__(name: str) -> object:
    """``PostgresInbox`` and ``SQLiteInbox``, imported when first asked for."""
    found: object
    if name == "PostgresInbox":
        from .inbox_postgres import PostgresInbox as found
    elif name == "SQLiteInbox":
        from .inbox_sqlite import SQLiteInbox as found
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = found
    return found
