"""The trade saga's forward steps, from checks that change nothing to the trade itself, and
the condition that decides which trades need a person's approval."""

from __future__ import annotations

from typing import Any

from statesaga import Context

from .services import PRICE_BAND, OrderRefused, world

#: Trades of at least this amount are screened by compliance and need a person's approval.
LARGE_TRADE = 100_000.00


def _amount(ctx: Context) -> float:
    quantity: int = ctx.data["quantity"]
    price: float = ctx.data["price"]
    return round(quantity * price, 2)


def is_large_trade(ctx: Context) -> bool:
    """Whether the trade is large enough for compliance and a person to look at it.

    A step's condition (``when=``): a plain function of the input that calls nothing, so a
    resumed run decides the same way.
    """
    return _amount(ctx) >= LARGE_TRADE


async def validate_order(ctx: Context) -> dict[str, Any]:
    """Check that the symbol trades and the price is near the market (a fat finger is not)."""
    symbol, price = ctx.data["symbol"], ctx.data["price"]
    reference = await world.exchange.quote(symbol)
    if abs(price - reference) > PRICE_BAND * reference:
        raise OrderRefused(f"price {price:.2f} is too far from {symbol}'s {reference:.2f}")
    return {"reference_price": reference}


async def check_risk(ctx: Context) -> dict[str, Any]:
    """Set the trade's cash aside on the account."""
    amount = _amount(ctx)
    await world.risk.hold(ctx.idempotency_key, ctx.data["account_id"], amount)
    return {"held": amount}


async def screen_large_trade(ctx: Context) -> dict[str, Any]:
    """Have compliance screen the trade automatically (restricted symbols), before a person
    is asked to look at it."""
    amount = _amount(ctx)
    await world.compliance.screen(ctx.data["symbol"], amount)
    return {"screened": amount}


async def record_approval(ctx: Context) -> dict[str, Any]:
    """Check the approval the person sent (the ``trade_approved`` wait's payload) against
    their limit, and record it with compliance."""
    approval = ctx.results["trade_approved"]
    approver, limit = approval.get("approver"), approval.get("limit")
    if not isinstance(approver, str) or not approver:
        raise OrderRefused(f"the approval names no approver: {dict(approval)}")
    if not isinstance(limit, int | float):
        raise OrderRefused(f"the approval by {approver} gives no limit: {dict(approval)}")
    amount = _amount(ctx)
    if amount > limit:
        raise OrderRefused(f"{approver} may approve up to {limit:,.2f}, not {amount:,.2f}")
    await world.compliance.record(ctx.idempotency_key, ctx.data["symbol"], approver)
    return {"approved_by": approver}


async def execute_trade(ctx: Context) -> dict[str, Any]:
    """Buy at the exchange: the point of no return."""
    data = ctx.data
    fill = await world.exchange.execute(
        ctx.idempotency_key, data["account_id"], data["symbol"], data["quantity"], data["price"]
    )
    return {"fill": fill}


async def settle_trade(ctx: Context) -> dict[str, Any]:
    """Move cash and shares in the ledger, then lift the hold the risk check set."""
    data = ctx.data
    amount = _amount(ctx)
    await world.ledger.settle(
        ctx.idempotency_key, data["account_id"], data["symbol"], data["quantity"], amount
    )
    await world.risk.release(f"{ctx.saga_id}:check_risk")
    return {"settled": amount}
