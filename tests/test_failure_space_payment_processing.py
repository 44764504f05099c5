"""examples/payment_processing under every generated fault and crash point, checked on the
payment provider's simulated services: the card gateway's authorizations and the ledger."""

from __future__ import annotations

import pytest

from examples.payment_processing import PaymentSaga
from examples.payment_processing.services import world
from statesaga import SagaResult, SagaStatus
from statesaga.testing import Scenario, scenarios

PAYMENT = {"payment_id": "PAY-1001", "user_id": "USER-456", "amount": 250.00, "currency": "USD"}
AMOUNT = PAYMENT["amount"]


def check_payments(result: SagaResult, scenario: Scenario) -> None:
    """Whatever was retried or run again: one authorization at most, never more taken than
    the payment; a completed payment is captured and booked once, a compensated one leaves
    nothing held nor taken, one that failed past the pivot leaves the money held or taken."""
    gateway, entries = world.gateway, world.ledger.entries
    assert len(gateway.authorizations) <= 1, f"{len(gateway.authorizations)} authorizations"
    assert gateway.held + gateway.captured <= AMOUNT, (
        f"held {gateway.held} and captured {gateway.captured} of a payment of {AMOUNT}"
    )
    assert len(entries) <= 1, f"booked {len(entries)} times"
    if entries:
        assert gateway.captured == AMOUNT, "a payment is booked that was not captured"
        assert list(entries.values()) == [("PAY-1001", AMOUNT, "USD")]
    if result.status is SagaStatus.COMPLETED:
        assert gateway.captured == AMOUNT, f"captured {gateway.captured}"
        assert gateway.held == 0, f"{gateway.held} still held after the capture"
        assert len(entries) == 1, "a completed payment is booked"
        return
    if result.status is SagaStatus.COMPENSATED:
        assert gateway.captured == 0, f"{gateway.captured} taken from a compensated payment"
        assert gateway.held == 0, f"{gateway.held} still held: the authorization was not voided"
        return
    # Failed: a void that gave up leaves the money held; past the pivot (a capture in doubt,
    # a booking that gave up) a person finds it held or taken, never lost nor voided.
    assert gateway.captured == 0 or gateway.held == 0
    if "authorize_payment" in result.compensation_errors:
        assert gateway.captured == 0, "captured, then compensated"
    else:
        assert result.failed_step in ("capture_payment", "reconcile_payment")
        assert gateway.held + gateway.captured == AMOUNT, "the authorization was lost"


@pytest.mark.parametrize("scenario", scenarios(PaymentSaga), ids=str)
async def test_failure_space(scenario: Scenario) -> None:
    """Each fault and crash point ends as the machine predicts, the gateway and the ledger as
    check_payments says."""
    outcome = await scenario.run(data=PAYMENT, setup=world.reset, check=check_payments)
    assert outcome.ok, outcome.explain()
