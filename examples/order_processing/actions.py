"""The order saga's forward steps: each calls one service, passing its idempotency key."""

from __future__ import annotations

from typing import Any

from statesaga import Context

from .services import MailerUnavailable, world

#: Calls of the mailer before the confirmation is given up on.
EMAIL_ATTEMPTS = 3


async def reserve_inventory(ctx: Context) -> dict[str, Any]:
    """Reserve every item of the order (all or nothing)."""
    lines = [(item["sku"], item["quantity"]) for item in ctx.data["items"]]
    await world.inventory.reserve(ctx.idempotency_key, lines)
    return {"units": sum(quantity for _, quantity in lines)}


async def process_payment(ctx: Context) -> dict[str, Any]:
    """Charge the order's total; the key makes a retried charge land once."""
    amount = ctx.data["total_amount"]
    charge_id = await world.gateway.charge(ctx.idempotency_key, ctx.data["user_id"], amount)
    return {"charge_id": charge_id, "amount": amount}


async def create_shipment(ctx: Context) -> dict[str, Any]:
    """Book the parcel with the carrier."""
    skus = [item["sku"] for item in ctx.data["items"]]
    return {"tracking": await world.carrier.ship(ctx.idempotency_key, skus)}


async def send_confirmation(ctx: Context) -> dict[str, Any]:
    """Email the customer; a mailer that stays down does not undo a paid, shipped order."""
    try:
        await world.mailer.send(
            ctx.idempotency_key, ctx.data["user_id"], f"Order {ctx.data['order_id']} is on its way"
        )
    except MailerUnavailable:
        if ctx.attempt < EMAIL_ATTEMPTS:
            raise  # the step's Retry calls again
        return {"sent": False}  # left for a person (or a later job) to resend
    return {"sent": True}
