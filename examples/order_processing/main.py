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
from collections.abc import Mapping, Sequence
from typing import Any

from statesaga import Retry, Saga, Step

from .. import _runner
from .._validate import Fields
from . import actions, compensations
from .services import world


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

    def __init__(
        self,
        *,
        order_id: str,
        user_id: str,
        items: Sequence[Mapping[str, Any]],
        total_amount: float,
    ) -> None:
        check = Fields(self.name)
        super().__init__(
            order_id=check.ident("order_id", order_id, "ORD"),
            user_id=check.ident("user_id", user_id, "USER"),
            items=_items(check, items),
            total_amount=check.amount("total_amount", total_amount),
        )


def _items(check: Fields, items: object) -> list[dict[str, Any]]:
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise check.refuse("items", f"must be a non-empty list of items, not {items!r}")
    lines: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping) or set(item) != {"sku", "quantity"}:
            raise check.refuse(
                f"items[{n}]", f"must be {{'sku': ..., 'quantity': ...}}, not {item!r}"
            )
        sku = check.code(f"items[{n}].sku", item["sku"], "'ITEM-1'")
        first = next((i for i, line in enumerate(lines) if line["sku"] == sku), None)
        if first is not None:
            raise check.refuse(
                f"items[{n}].sku",
                f"repeats {sku!r} of items[{first}]: list each SKU once, with its total quantity",
            )
        lines.append(
            {"sku": sku, "quantity": check.count(f"items[{n}].quantity", item["quantity"])}
        )
    return lines


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
