"""The trade saga's forward steps, from checks that change nothing to the trade itself."""

from __future__ import annotations

from typing import Any

from statesaga import Context

from .services import PRICE_BAND, OrderRefused, world

#: Trades of at least this amount need compliance's approval.
LARGE_TRADE = 100_000.00


def _amount(ctx: Context) -> float:
    quantity: int = ctx.data["quantity"]
    price: float = ctx.data["price"]
    return round(quantity * price, 2)


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


async def review_large_trade(ctx: Context) -> dict[str, Any]:
    """Ask compliance to approve the trade, when it is large; otherwise do nothing.

    The step is in the saga for every trade and decides at run time whether it applies, so
    the machine and its diagram stay the same for every input.
    """
    amount = _amount(ctx)
    if amount < LARGE_TRADE:
        return {"skipped": True}
    await world.compliance.approve(ctx.idempotency_key, ctx.data["symbol"], amount)
    return {"approved": amount}


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
