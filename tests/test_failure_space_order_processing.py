"""examples/order_processing under every generated fault and crash point, checked on the shop's
simulated services: stock, card charges, parcels and emails."""

from __future__ import annotations

import pytest

from examples.order_processing import OrderProcessingSaga
from examples.order_processing.services import INITIAL_STOCK, world
from statesaga import SagaResult, SagaStatus
from statesaga.testing import Scenario, scenarios

ORDER = {
    "order_id": "ORD-123",
    "user_id": "USER-456",
    "items": [{"sku": "ITEM-1", "quantity": 2}, {"sku": "ITEM-2", "quantity": 1}],
    "total_amount": 99.99,
}
#: The stock once the order's items are taken.
TAKEN = {
    **INITIAL_STOCK,
    "ITEM-1": INITIAL_STOCK["ITEM-1"] - 2,
    "ITEM-2": INITIAL_STOCK["ITEM-2"] - 1,
}


def check_shop(result: SagaResult, scenario: Scenario) -> None:
    """Whatever was retried or run again: one charge, one reservation, one parcel, one email
    at most; a completed order has them all, a compensated one has none of them left."""
    inventory, gateway = world.inventory, world.gateway
    shipments, sent = world.carrier.shipments, world.mailer.sent
    assert len(inventory.reservations) <= 1, f"stock reserved {len(inventory.reservations)} times"
    assert len(gateway.charges) <= 1, f"card charged {len(gateway.charges)} times"
    assert len(shipments) <= 1, f"{len(shipments)} parcels booked"
    assert len(sent) <= 1, f"{len(sent)} emails sent"
    if result.status is SagaStatus.COMPLETED:
        assert inventory.stock == TAKEN, f"stock {inventory.stock}, expected {TAKEN}"
        assert gateway.net == ORDER["total_amount"], f"charged {gateway.net}"
        payment = result.results["process_payment"]
        assert payment["amount"] == ORDER["total_amount"]
        assert list(gateway.charge_ids.values()) == [payment["charge_id"]]
        assert len(shipments) == 1, "a completed order has its parcel"
        assert result.results["create_shipment"]["tracking"] in shipments.values()
        assert len(sent) == 1, "a completed order has its confirmation"
        return
    # Compensated, or failed with a compensation that gave up: everything is undone but
    # what such a compensation should have undone.
    left = set(result.compensation_errors)
    if "reserve_inventory" not in left:
        assert inventory.stock == INITIAL_STOCK, f"stock not put back: {inventory.stock}"
        assert inventory.reservations == {}, "a reservation is still held"
    if "process_payment" not in left:
        assert gateway.net == 0, f"{gateway.net} charged and not refunded"
        assert gateway.refunded == set(gateway.charges), "a charge is not refunded"
    if "create_shipment" not in left:
        assert shipments == {}, "a parcel is still booked"
    # The email has nothing to undo it: it may only have gone out if its own outcome was
    # in doubt (it sent, then failed), which is what makes its step the failed one.
    if result.failed_step != "send_confirmation":
        assert sent == {}, "a confirmation went out for an order that was undone"


@pytest.mark.parametrize("scenario", scenarios(OrderProcessingSaga), ids=str)
async def test_failure_space(scenario: Scenario) -> None:
    """Each fault and crash point ends as the machine predicts, the shop as check_shop says."""
    outcome = await scenario.run(data=ORDER, setup=world.reset, check=check_shop)
    assert outcome.ok, outcome.explain()


async def test_a_repeated_charge_answers_with_the_first_charges_id() -> None:
    """The gateway answers a repeat as it answered the first call, other charges between."""
    world.reset()
    first = await world.gateway.charge("run-1:process_payment", "USER-456", 10.0)
    await world.gateway.charge("run-2:process_payment", "USER-789", 20.0)
    assert await world.gateway.charge("run-1:process_payment", "USER-456", 10.0) == first
    assert world.gateway.net == 30.0
