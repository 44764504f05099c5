"""The travel saga's forward steps: three bookings made concurrently, then the itinerary."""

from __future__ import annotations

from typing import Any

from statesaga import Context

from .services import world


async def book_flight(ctx: Context) -> dict[str, Any]:
    """Book a seat on the flight."""
    flight = ctx.data["flight"]
    return {"flight": flight, "booking": await world.airline.book(ctx.idempotency_key, flight)}


async def book_hotel(ctx: Context) -> dict[str, Any]:
    """Book a room at the hotel."""
    hotel = ctx.data["hotel"]
    return {"hotel": hotel, "booking": await world.hotels.book(ctx.idempotency_key, hotel)}


async def rent_car(ctx: Context) -> dict[str, Any]:
    """Rent a car, if the trip wants one.

    A trip without a car still runs this step, which then does nothing: the saga keeps one
    shape (one machine, one diagram) for every input, and the result says what happened.
    """
    if not ctx.data["car_rental"]:
        return {"skipped": True}
    return {"booking": await world.cars.book(ctx.idempotency_key, "any")}


async def issue_itinerary(ctx: Context) -> dict[str, Any]:
    """Record the trip's itinerary from the three bookings."""
    lines = [
        f"flight {ctx.results['book_flight']['flight']}: {ctx.results['book_flight']['booking']}",
        f"hotel {ctx.results['book_hotel']['hotel']}: {ctx.results['book_hotel']['booking']}",
    ]
    car = ctx.results["rent_car"]
    if not car.get("skipped"):
        lines.append(f"car: {car['booking']}")
    await world.agency.issue(ctx.idempotency_key, lines)
    return {"itinerary": ctx.data["trip_id"], "lines": len(lines)}
