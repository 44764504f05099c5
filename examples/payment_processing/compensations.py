"""The payment saga's one compensation: release the authorization's hold.

It also runs when the authorization's outcome is unknown, so it tolerates finding nothing.
"""

from __future__ import annotations

from statesaga import Context

from .services import world


async def void_authorization(ctx: Context) -> None:
    """Release the money held on the card."""
    await world.gateway.void(ctx.action_key)
