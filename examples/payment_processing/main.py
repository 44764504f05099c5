"""Payment processing: fraud check, authorization, capture (the pivot), reconciliation.

Run ``python main.py`` in this folder or ``python -m examples.payment_processing`` from the
repository root; add ``--store sqlite:///payments.db`` to record the runs durably.
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
from .services import CURRENCIES, world

#: Seconds to wait for the gateway's answer before asking again (with the same key).
AUTHORIZE_TIMEOUT = 0.25


@attrs.frozen
class Payment:
    """The saga's input: ``PaymentSaga(payment_id=..., user_id=..., ...)``."""

    payment_id: str = attrs.field(validator=_input.non_empty)
    user_id: str = attrs.field(validator=_input.non_empty)
    amount: float = attrs.field(validator=_input.money)
    currency: str = attrs.field(validator=_input.one_of(*CURRENCIES))


class PaymentSaga(Saga):
    """Screen, authorize and capture a card payment, then book it."""

    steps = (
        Step("check_fraud", actions.check_fraud),
        Step(
            "authorize_payment",
            actions.authorize_payment,
            compensate=compensations.void_authorization,
            retry=Retry(attempts=4, delay=0.05),
            timeout=AUTHORIZE_TIMEOUT,
        ),
        Step("capture_payment", actions.capture_payment, pivot=True, timeout=5.0),
        # Past the pivot the money is taken: booking it is pushed through by retrying.
        Step(
            "reconcile_payment",
            actions.reconcile_payment,
            retry=Retry(attempts=5, delay=0.05, max_delay=1.0),
        ),
    )

    def __init__(self, **payment: Any) -> None:
        """Check the input as a ``Payment``; ``InvalidInputError`` names the field at fault."""
        super().__init__(**_input.structure(self.name, Payment, payment))


#: The stories' input, each story changing what it needs.
_payment = functools.partial(
    PaymentSaga,
    user_id="USER-456",
    amount=250.00,
    currency="USD",
)


def _unreliable_gateway() -> None:
    world.gateway.unavailable = 1
    world.gateway.lost_replies = 1


def _expiring_authorization() -> None:
    world.gateway.expired = 1


STORIES = (
    _runner.Story(
        "A payment through an unreliable gateway: one request lost, one answer lost, "
        "one authorization",
        _payment(payment_id="PAY-1001"),
        setup=_unreliable_gateway,
    ),
    _runner.Story(
        "The authorization expires before capture: it is voided, nothing is taken",
        _payment(payment_id="PAY-1002"),
        setup=_expiring_authorization,
    ),
)


def main(argv: Sequence[str] | None = None) -> None:
    """Tell a payment that goes through and one that is compensated."""
    _runner.main(__doc__ or "", world, STORIES, argv)
