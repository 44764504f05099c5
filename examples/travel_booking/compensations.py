"""The travel saga's compensations: each cancels by the action's key.

A compensation may run for an action that did nothing (a skipped car, or a booking whose
reply never came), so each one tolerates finding nothing to cancel.
"""

from __future__ import annotations

from statesaga import Context

from .services import world


async def cancel_flight(ctx: Context) -> None:
    """Give the seat back."""
    await world.airline.cancel(ctx.action_key)


async def cancel_hotel(ctx: Context) -> None:
    """Give the room back."""
    await world.hotels.cancel(ctx.action_key)


async def cancel_car(ctx: Context) -> None:
    """Give the car back (nothing to do when none was rented)."""
    await world.cars.cancel(ctx.action_key)
