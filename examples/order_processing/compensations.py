"""The order saga's compensations: each finds the action's effect by the action's key.

A compensation may run for an action that did nothing (its outcome was unknown), so each one
tolerates finding nothing to undo.
"""

from __future__ import annotations

from statesaga import Context

from .services import world


async def release_inventory(ctx: Context) -> None:
    """Put the reserved items back in stock."""
    await world.inventory.release(ctx.action_key)


async def refund_payment(ctx: Context) -> None:
    """Refund the charge."""
    await world.gateway.refund(ctx.action_key)


async def cancel_shipment(ctx: Context) -> None:
    """Cancel the parcel."""
    await world.carrier.cancel(ctx.action_key)
