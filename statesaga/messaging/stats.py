"""Counters of message delivery in this process, for metrics."""

from __future__ import annotations

import attrs


@attrs.define
class OutboxStats:
    """How messages left this process; every sender and relay in it adds to one instance.

    Attributes:
        optimistic_sent: Messages the broker confirmed right after their commit.
        fallback: Messages left to the relay instead: their optimistic publish failed or
            timed out, or an earlier message of their key was still unsent.
        relay_sent: Messages a relay published.
        relay_failed: Relay attempts that failed (the message is tried again later).
        dead: Messages a relay gave up on after too many attempts.
    """

    optimistic_sent: int = 0
    fallback: int = 0
    relay_sent: int = 0
    relay_failed: int = 0
    dead: int = 0

    @property
    def fallback_ratio(self) -> float:
        """The share of optimistically handled messages that needed the relay (0 to 1)."""
        total = self.optimistic_sent + self.fallback
        return self.fallback / total if total else 0.0


#: This process's counters; the observability layer exports them.
OUTBOX_STATS = OutboxStats()
