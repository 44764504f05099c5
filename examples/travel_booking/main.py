"""Travel booking: flight, hotel and car booked concurrently, then the itinerary.

Run ``python main.py`` in this folder or ``python -m examples.travel_booking`` from the
repository root; add ``--store sqlite:///trips.db`` to record the runs durably.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples._script import run_as_package

    run_as_package(__file__)

import functools
from collections.abc import Sequence
from typing import Any

import attrs

from statesaga import Retry, Saga, Step

from .. import _input, _runner
from . import actions, compensations
from .services import world

#: Seconds the airline has to confirm a seat; after that the booking's outcome is unknown.
FLIGHT_TIMEOUT = 0.5


@attrs.frozen
class Trip:
    """The saga's input: ``TravelBookingSaga(trip_id=..., user_id=..., ...)``."""

    trip_id: str = attrs.field(validator=_input.non_empty)
    user_id: str = attrs.field(validator=_input.non_empty)
    flight: str = attrs.field(validator=_input.non_empty)
    hotel: str = attrs.field(validator=_input.non_empty)
    car_rental: bool


class TravelBookingSaga(Saga):
    """Book a flight, a hotel and (maybe) a car at once, then issue the itinerary."""

    steps = (
        Step(
            "book_flight",
            actions.book_flight,
            compensate=compensations.cancel_flight,
            timeout=FLIGHT_TIMEOUT,
        ),
        Step("book_hotel", actions.book_hotel, compensate=compensations.cancel_hotel),
        Step("rent_car", actions.rent_car, compensate=compensations.cancel_car),
        Step(
            "issue_itinerary",
            actions.issue_itinerary,
            depends_on=("book_flight", "book_hotel", "rent_car"),
            retry=Retry(attempts=3, delay=0.05),
        ),
    )

    def __init__(self, **trip: Any) -> None:
        """Check the input as a ``Trip``; ``InvalidInputError`` names the field at fault."""
        super().__init__(**_input.structure(self.name, Trip, trip))


#: The stories' input, each story changing what it needs.
_trip = functools.partial(
    TravelBookingSaga,
    user_id="USER-789",
    flight="AA123",
    hotel="HTL-789",
    car_rental=True,
)


def _slow_airline() -> None:
    world.airline.reply_delay = 2 * FLIGHT_TIMEOUT


STORIES = (
    _runner.Story("A trip with flight, hotel and car", _trip(trip_id="TRIP-1001")),
    _runner.Story(
        "The hotel is full: the flight and the car are cancelled",
        _trip(trip_id="TRIP-1002", hotel="HTL-FULL"),
    ),
    _runner.Story(
        "The airline books the seat but its reply times out: cancelled all the same",
        _trip(trip_id="TRIP-1003"),
        setup=_slow_airline,
    ),
    _runner.Story(
        "A trip without a car: the car step does nothing",
        _trip(trip_id="TRIP-1004", car_rental=False),
    ),
)


def main(argv: Sequence[str] | None = None) -> None:
    """Tell a booked trip, a compensated one, an uncertain one, and one without a car."""
    _runner.main(__doc__ or "", world, STORIES, argv)
