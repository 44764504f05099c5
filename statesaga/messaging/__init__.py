"""Exactly-once messaging: a transactional outbox for steps, an inbox for consumers.

Steps emit with ``ctx.emit``; messages are committed with the step and published after the
commit (``statesaga.messaging.relay.Relay`` delivers what that first attempt could not).
Consumers apply each message once through an ``Inbox``. Brokers: ``broker_from_url``.
"""

from __future__ import annotations

from .broker import Broker, BrokerError, Delivery
from .brokers import MemoryBroker, broker_from_url
from .inbox import Inbox, InboxError, Outcome, consume
from .inboxes import inbox_for
from .message import Message

__all__ = [
    "Broker",
    "BrokerError",
    "Delivery",
    "Inbox",
    "InboxError",
    "MemoryBroker",
    "Message",
    "Outcome",
    "broker_from_url",
    "consume",
    "inbox_for",
]
