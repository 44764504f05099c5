"""Exactly-once messaging: a transactional outbox for steps, an inbox for consumers."""

from __future__ import annotations

from .broker import Broker, BrokerError, Delivery
from .message import Message

__all__ = ["Broker", "BrokerError", "Delivery", "Message"]
