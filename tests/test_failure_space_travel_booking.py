"""examples/travel_booking under every generated fault and crash point, checked on the travel
agency's simulated suppliers: seats, rooms, cars and itineraries."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from examples.travel_booking import TravelBookingSaga
from examples.travel_booking.services import INITIAL_CARS, INITIAL_ROOMS, INITIAL_SEATS, world
from statesaga import SagaResult, SagaStatus
from statesaga.testing import Scenario, scenarios

TRIP = {
    "trip_id": "TRIP-1001",
    "user_id": "USER-789",
    "flight": "AA123",
    "hotel": "HTL-789",
    "car_rental": True,
}
#: Every scenario is run for a trip with a car and for one without (its step does nothing).
TRIPS = {"with a car": TRIP, "without a car": {**TRIP, "car_rental": False}}


def check_suppliers(result: SagaResult, scenario: Scenario, *, car: bool = True) -> None:
    """Whatever was retried or run again: one seat, one room, one car and one itinerary at
    most, each counted once against the supplier's stock; a completed trip holds them all,
    a compensated one has given every booking back. ``car``: whether the trip wants one."""
    airline, hotels, cars = world.airline, world.hotels, world.cars
    itineraries = world.agency.itineraries
    for supplier, initial, what in (
        (airline, INITIAL_SEATS, "AA123"),
        (hotels, INITIAL_ROOMS, "HTL-789"),
        (cars, {"any": INITIAL_CARS}, "any"),
    ):
        booked = len(supplier.bookings)
        assert booked <= 1, f"{booked} {supplier.kind}s booked for one trip"
        assert supplier.free[what] == initial[what] - booked, (
            f"{supplier.kind}s free: {supplier.free[what]}, with {booked} booked"
        )
    assert len(itineraries) <= 1, f"{len(itineraries)} itineraries issued"
    if not car:
        assert cars.bookings == {}, "a car was rented for a trip without one"
    if result.status is SagaStatus.COMPLETED:
        for supplier in (airline, hotels, *([cars] if car else [])):
            assert len(supplier.bookings) == 1, f"a completed trip has its {supplier.kind}"
        assert len(itineraries) == 1, "a completed trip has its itinerary"
        [lines] = itineraries.values()
        assert lines == [
            f"flight AA123: {result.results['book_flight']['booking']}",
            f"hotel HTL-789: {result.results['book_hotel']['booking']}",
            *([f"car: {result.results['rent_car']['booking']}"] if car else []),
        ]
        return
    # Compensated, or failed with a cancellation that gave up: every booking is given back
    # but the ones whose cancellation gave up.
    left = set(result.compensation_errors)
    for step, supplier in (("book_flight", airline), ("book_hotel", hotels), ("rent_car", cars)):
        if step not in left:
            assert supplier.bookings == {}, f"a {supplier.kind} is still booked"
    # The itinerary has nothing to undo it: it may only have been issued if its own outcome
    # was in doubt (issued, then failed), which is what makes its step the failed one.
    if result.failed_step != "issue_itinerary":
        assert itineraries == {}, "an itinerary was issued for a trip that was undone"


@pytest.mark.parametrize("trip", TRIPS.values(), ids=TRIPS.keys())
@pytest.mark.parametrize("scenario", scenarios(TravelBookingSaga), ids=str)
async def test_failure_space(scenario: Scenario, trip: dict[str, Any]) -> None:
    """Each fault and crash point ends as the machine predicts, the suppliers as
    check_suppliers says."""
    check = functools.partial(check_suppliers, car=trip["car_rental"])
    outcome = await scenario.run(data=trip, setup=world.reset, check=check)
    assert outcome.ok, outcome.explain()
