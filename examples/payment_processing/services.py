"""The payment provider's simulated services: fraud screening, a card gateway and a ledger.

They keep real state, so a run's effect (and its undoing) can be seen and tested. The
gateway honours idempotency keys, as real ones do: a request repeated with the same key
returns the first answer and moves no more money.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import attrs

CURRENCIES = frozenset({"USD", "EUR", "GBP"})
#: Payments of at least this amount are flagged by the fraud check.
FRAUD_LIMIT = 10_000.00
BLOCKED_USERS = frozenset({"USER-FRAUD"})
DECLINED_USERS = frozenset({"USER-DECLINED"})


class FraudSuspected(Exception):
    """The fraud check flagged the payment."""


class CardDeclined(Exception):
    """The card issuer refused; asking again will not change its mind."""


class GatewayUnavailable(ConnectionError):
    """No answer from the gateway: the request may or may not have arrived."""


@attrs.define
class Authorization:
    """Money held on a card, later captured (taken) or voided (released)."""

    user_id: str
    amount: float
    currency: str
    state: Literal["authorized", "captured", "voided"] = "authorized"


class FraudCheck:
    """Screens payments and remembers what it screened."""

    def __init__(self) -> None:
        self.screened: list[str] = []

    async def screen(self, payment_id: str, user_id: str, amount: float) -> None:
        """Pass the payment or raise ``FraudSuspected``."""
        self.screened.append(payment_id)
        if user_id in BLOCKED_USERS or amount >= FRAUD_LIMIT:
            raise FraudSuspected(f"payment {payment_id} of {amount:,.2f} by {user_id} flagged")


class Gateway:
    """Authorizes, captures and voids card payments.

    Faults to simulate (each counts down as it strikes):
        unavailable: requests lost on the way in (nothing happens).
        lost_replies: authorizations carried out whose answer never comes back.
        expired: authorizations found expired when captured.
    """

    def __init__(self) -> None:
        self.authorizations: dict[str, Authorization] = {}  # idempotency key -> authorization
        self.requests = 0
        self.unavailable = 0
        self.lost_replies = 0
        self.expired = 0

    @property
    def held(self) -> float:
        """Money authorized and not yet captured or voided."""
        return self._total("authorized")

    @property
    def captured(self) -> float:
        """Money taken from cards."""
        return self._total("captured")

    def _total(self, state: str) -> float:
        return round(sum(a.amount for a in self.authorizations.values() if a.state == state), 2)

    def _arrive(self) -> None:
        self.requests += 1
        if self.unavailable:
            self.unavailable -= 1
            raise GatewayUnavailable("gateway did not answer")

    async def _answer(self) -> None:
        if self.lost_replies:
            self.lost_replies -= 1
            await asyncio.Event().wait()  # no answer ever comes: the caller's timeout ends this

    async def authorize(self, key: str, user_id: str, amount: float, currency: str) -> str:
        """Hold ``amount`` on the user's card, once per key; the authorization's id."""
        self._arrive()
        if key not in self.authorizations:
            if user_id in DECLINED_USERS:
                raise CardDeclined(f"card of {user_id} declined")
            self.authorizations[key] = Authorization(user_id, amount, currency)
        await self._answer()
        return f"AUTH-{list(self.authorizations).index(key) + 1:04d}"

    async def capture(self, key: str) -> None:
        """Take the money an authorization holds (again: no effect)."""
        self._arrive()
        authorization = self.authorizations[key]
        if authorization.state == "authorized" and self.expired:
            self.expired -= 1
            authorization.state = "voided"
            raise CardDeclined("the authorization expired before it was captured")
        if authorization.state == "voided":
            raise CardDeclined("the authorization was voided")
        authorization.state = "captured"

    async def void(self, key: str) -> bool:
        """Release an authorization's hold; ``False`` when there was nothing held."""
        self._arrive()
        authorization = self.authorizations.get(key)
        if authorization is None or authorization.state != "authorized":
            return False
        authorization.state = "voided"
        return True


class Ledger:
    """The provider's books: one entry per reconciled payment; ``unavailable`` fails calls."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, float, str]] = {}  # key -> payment, amount, currency
        self.unavailable = 0

    async def record(self, key: str, payment_id: str, amount: float, currency: str) -> None:
        """Book a captured payment once per key."""
        if self.unavailable:
            self.unavailable -= 1
            raise ConnectionError("ledger did not answer")
        self.entries.setdefault(key, (payment_id, amount, currency))


class World:
    """Every service the payment saga talks to."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """No payments anywhere, every service up."""
        self.fraud = FraudCheck()
        self.gateway = Gateway()
        self.ledger = Ledger()

    def describe(self) -> str:
        """Money held and captured, gateway requests and ledger entries, on one line."""
        gateway = self.gateway
        return (
            f"held {gateway.held:.2f} | captured {gateway.captured:.2f} | authorizations "
            f"{len(gateway.authorizations)} | gateway requests {gateway.requests} | "
            f"ledger entries {len(self.ledger.entries)}"
        )


world = World()
