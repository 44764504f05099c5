"""The shop's simulated services: stock, card payments, a carrier and a mailer.

They keep real state, so a run's effect (and its undoing) can be seen and tested. Every call
that changes something takes the caller's idempotency key: calling again with the same key
changes nothing more, and the key is how a compensation finds what to undo.
"""

from __future__ import annotations

from collections.abc import Sequence

INITIAL_STOCK = {"ITEM-1": 10, "ITEM-2": 5, "ITEM-HAZMAT": 3}
#: Users whose card the gateway declines.
DECLINED_USERS = frozenset({"USER-DECLINED"})
#: SKUs the carrier refuses to carry.
REFUSED_SKUS = frozenset({"ITEM-HAZMAT"})


class OutOfStock(Exception):
    """Not enough stock (or no such SKU) to reserve an order's items."""


class CardDeclined(Exception):
    """The card issuer said no; asking again will not change its mind."""


class GatewayUnavailable(ConnectionError):
    """The payment gateway did not answer: worth retrying."""


class ShipmentRefused(Exception):
    """The carrier will not take the parcel."""


class MailerUnavailable(ConnectionError):
    """The mail service did not answer: worth retrying."""


class Inventory:
    """Stock per SKU and the reservations held against it."""

    def __init__(self) -> None:
        self.stock = dict(INITIAL_STOCK)
        self.reservations: dict[str, list[tuple[str, int]]] = {}

    async def reserve(self, key: str, lines: Sequence[tuple[str, int]]) -> None:
        """Take every line from stock, or none of them."""
        if key in self.reservations:
            return
        wanted: dict[str, int] = {}
        for sku, quantity in lines:  # a SKU on several lines needs their sum in stock
            wanted[sku] = wanted.get(sku, 0) + quantity
        for sku, quantity in wanted.items():
            if self.stock.get(sku, 0) < quantity:
                raise OutOfStock(f"{sku}: {quantity} wanted, {self.stock.get(sku, 0)} in stock")
        for sku, quantity in lines:
            self.stock[sku] -= quantity
        self.reservations[key] = list(lines)

    async def release(self, key: str) -> bool:
        """Put a reservation's items back; ``False`` when there was none."""
        lines = self.reservations.pop(key, None)
        for sku, quantity in lines or ():
            self.stock[sku] += quantity
        return lines is not None


class PaymentGateway:
    """Charges and refunds; ``unavailable`` makes the next calls fail as if the network did."""

    def __init__(self) -> None:
        self.charges: dict[str, float] = {}  # idempotency key -> amount
        self.charge_ids: dict[str, str] = {}  # idempotency key -> the charge's id
        self.refunded: set[str] = set()
        self.unavailable = 0

    @property
    def net(self) -> float:
        """Money taken and not given back."""
        return round(sum(a for k, a in self.charges.items() if k not in self.refunded), 2)

    async def charge(self, key: str, user_id: str, amount: float) -> str:
        """Charge ``amount`` to the user's card once per key; the charge's id."""
        if self.unavailable:
            self.unavailable -= 1
            raise GatewayUnavailable("payment gateway did not answer")
        if user_id in DECLINED_USERS:
            raise CardDeclined(f"card of {user_id} declined")
        if key not in self.charges:
            self.charges[key] = amount
            self.charge_ids[key] = f"CH-{len(self.charges):04d}"
        return self.charge_ids[key]  # a repeat gets the first charge's id back

    async def refund(self, key: str) -> bool:
        """Give a charge back (once); ``False`` when there was no charge."""
        if key not in self.charges:
            return False
        self.refunded.add(key)
        return True


class Carrier:
    """Shipments booked with the carrier."""

    def __init__(self) -> None:
        self.shipments: dict[str, str] = {}  # key -> tracking number

    async def ship(self, key: str, skus: Sequence[str]) -> str:
        """Book a parcel once per key; its tracking number."""
        refused = sorted(set(skus) & REFUSED_SKUS)
        if refused:
            raise ShipmentRefused(f"the carrier does not carry {', '.join(refused)}")
        return self.shipments.setdefault(key, f"TRK-{len(self.shipments) + 1:04d}")

    async def cancel(self, key: str) -> bool:
        """Cancel a parcel; ``False`` when there was none."""
        return self.shipments.pop(key, None) is not None


class Mailer:
    """Sent emails; ``down`` makes every send fail."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}  # key -> recipient
        self.down = False

    async def send(self, key: str, to: str, subject: str) -> None:
        """Send once per key."""
        if self.down:
            raise MailerUnavailable("mail service did not answer")
        self.sent.setdefault(key, f"{to}: {subject}")


class World:
    """Every service the order saga talks to."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to full stock, no charges, no parcels, no mail, every service up."""
        self.inventory = Inventory()
        self.gateway = PaymentGateway()
        self.carrier = Carrier()
        self.mailer = Mailer()

    def describe(self) -> str:
        """Stock, money taken, parcels and emails, on one line."""
        stock = " ".join(f"{sku}={n}" for sku, n in self.inventory.stock.items())
        return (
            f"stock {stock} | charged {self.gateway.net:.2f} | "
            f"parcels {len(self.carrier.shipments)} | emails {len(self.mailer.sent)}"
        )


world = World()
