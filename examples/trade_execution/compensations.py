"""The trade saga's compensations: only the steps before the trade have any.

Each finds the action's effect by the action's key and tolerates finding nothing (a review
that was skipped, or a hold whose outcome was unknown).
"""

from __future__ import annotations

from statesaga import Context

from .services import world


async def release_hold(ctx: Context) -> None:
    """Give the cash set aside back to the account."""
    await world.risk.release(ctx.action_key)


async def withdraw_approval(ctx: Context) -> None:
    """Withdraw compliance's approval (nothing to do when the review was skipped)."""
    await world.compliance.withdraw(ctx.action_key)
