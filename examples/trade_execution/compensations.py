"""The trade saga's compensations: only the steps before the trade have any.

Each finds the action's effect by the action's key and tolerates finding nothing (a hold
whose outcome was unknown). A step that was skipped (a small trade's approval) is not
compensated at all.
"""

from __future__ import annotations

from statesaga import Context

from .services import world


async def release_hold(ctx: Context) -> None:
    """Give the cash set aside back to the account."""
    await world.risk.release(ctx.action_key)


async def withdraw_approval(ctx: Context) -> None:
    """Withdraw the approval recorded with compliance: the trade it approved did not happen."""
    await world.compliance.withdraw(ctx.action_key)
