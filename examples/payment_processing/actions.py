"""The payment saga's forward steps."""

from __future__ import annotations

from typing import Any

from statesaga import Context, NonRetryableError

from .services import CardDeclined, world


async def check_fraud(ctx: Context) -> dict[str, Any]:
    """Screen the payment; a flagged one goes no further."""
    data = ctx.data
    await world.fraud.screen(data["payment_id"], data["user_id"], data["amount"])
    return {"screened": True}


async def authorize_payment(ctx: Context) -> dict[str, Any]:
    """Hold the amount on the card.

    Every attempt sends the same idempotency key, so a retry after a lost answer gets the
    first authorization back instead of holding the money twice.
    """
    data = ctx.data
    try:
        authorization = await world.gateway.authorize(
            ctx.idempotency_key, data["user_id"], data["amount"], data["currency"]
        )
    except CardDeclined as error:
        raise NonRetryableError(str(error)) from error  # a retry would be declined too
    return {"authorization": authorization, "attempts": ctx.attempt}


async def capture_payment(ctx: Context) -> dict[str, Any]:
    """Take the money: the point of no return."""
    await world.gateway.capture(f"{ctx.saga_id}:authorize_payment")
    return {"captured": ctx.data["amount"]}


async def reconcile_payment(ctx: Context) -> dict[str, Any]:
    """Book the captured payment in the ledger."""
    data = ctx.data
    await world.ledger.record(
        ctx.idempotency_key, data["payment_id"], data["amount"], data["currency"]
    )
    return {"booked": True}
