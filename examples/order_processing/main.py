"""Order processing: reserve stock, charge the card, ship, confirm by email.

Run ``python main.py`` in this folder or ``python -m examples.order_processing`` from the
repository root; add ``--store sqlite:///orders.db`` to record the runs durably.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples._script import run_as_package

    run_as_package(__file__)

import functools
from collections.abc import Sequence
from typing import Any

import attrs

from statesaga import Retry, Saga, Step

from .. import _input, _runner
from . import actions, compensations
from .services import world


@attrs.frozen
class Item:
    """One line of an order: a SKU and how many of it."""

    sku: str = attrs.field(validator=_input.non_empty)
    quantity: int = attrs.field(validator=_input.positive)


def _each_sku_once(_order: object, _field: attrs.Attribute[Any], items: list[Item]) -> None:
    """Refuses a SKU on two lines: list it once, with its total quantity."""
    first: dict[str, int] = {}  # SKU -> the line it is on
    for n, item in enumerate(items):
        if item.sku in first:
            raise _input.Refused(
                f"items[{n}].sku",
                f"repeats {item.sku!r} of items[{first[item.sku]}]: "
                "list each SKU once, with its total quantity",
            )
        first[item.sku] = n


@attrs.frozen
class Order:
    """The saga's input: ``OrderProcessingSaga(order_id=..., user_id=..., ...)``."""

    order_id: str = attrs.field(validator=_input.non_empty)
    user_id: str = attrs.field(validator=_input.non_empty)
    items: list[Item] = attrs.field(validator=[_input.non_empty, _each_sku_once])
    total_amount: float = attrs.field(validator=_input.money)


class OrderProcessingSaga(Saga):
    """Reserve stock, charge the card, ship the parcel, email the customer."""

    steps = (
        Step(
            "reserve_inventory",
            actions.reserve_inventory,
            compensate=compensations.release_inventory,
        ),
        Step(
            "process_payment",
            actions.process_payment,
            compensate=compensations.refund_payment,
            retry=Retry(attempts=3, delay=0.05, retry_on=ConnectionError),
            timeout=5.0,
        ),
        Step("create_shipment", actions.create_shipment, compensate=compensations.cancel_shipment),
        Step(
            "send_confirmation",
            actions.send_confirmation,
            retry=Retry(attempts=actions.EMAIL_ATTEMPTS, delay=0.05),
        ),
    )

    def __init__(self, **order: Any) -> None:
        """Check the input as an ``Order``; ``InvalidInputError`` names the field at fault."""
        super().__init__(**_input.structure(self.name, Order, order))


#: The stories' input, each story changing what it needs.
_order = functools.partial(
    OrderProcessingSaga,
    user_id="USER-456",
    items=[{"sku": "ITEM-1", "quantity": 2}],
    total_amount=99.99,
)


def _flaky_gateway() -> None:
    world.gateway.unavailable = 1


STORIES = (
    _runner.Story(
        "An order that goes through (the gateway drops the first call: retried)",
        _order(order_id="ORD-1001"),
        setup=_flaky_gateway,
    ),
    _runner.Story(
        "The carrier refuses an item: the charge is refunded, the stock put back",
        _order(
            order_id="ORD-1002",
            items=[{"sku": "ITEM-1", "quantity": 1}, {"sku": "ITEM-HAZMAT", "quantity": 1}],
        ),
    ),
)


def main(argv: Sequence[str] | None = None) -> None:
    """Tell a successful order and a compensated one."""
    _runner.main(__doc__ or "", world, STORIES, argv)
