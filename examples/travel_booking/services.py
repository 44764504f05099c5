"""The travel agency's simulated suppliers: an airline, hotels, a car rental and its own books.

They keep real state, so a run's effect (and its undoing) can be seen and tested. Every
booking takes the caller's idempotency key: booking again with the same key books nothing
more, and the key is how a compensation finds what to cancel.
"""

from __future__ import annotations

import asyncio

#: Free seats per flight; XX000 is full.
INITIAL_SEATS = {"AA123": 20, "UA456": 20, "XX000": 0}
#: Free rooms per hotel; HTL-FULL has none.
INITIAL_ROOMS = {"HTL-789": 10, "HTL-123": 10, "HTL-FULL": 0}
INITIAL_CARS = 3


class SoldOut(Exception):
    """Nothing left to book (or no such flight or hotel)."""


class AgencyUnavailable(ConnectionError):
    """The agency's own booking system did not answer: worth retrying."""


class Supplier:
    """Something with a limited stock of units to book (seats, rooms, cars)."""

    def __init__(self, kind: str, free: dict[str, int]) -> None:
        self.kind = kind
        self.free = dict(free)
        self.bookings: dict[str, tuple[str, str]] = {}  # key -> (what, reference)
        self.issued = 0

    async def book(self, key: str, what: str) -> str:
        """Book one unit of ``what`` once per key; the booking's reference."""
        if key not in self.bookings:
            if what not in self.free:
                raise SoldOut(f"{what} is not on sale")
            if self.free[what] < 1:
                raise SoldOut(f"no {self.kind} left on {what}")
            self.free[what] -= 1
            self.issued += 1
            self.bookings[key] = (what, f"{self.kind.upper()}-{self.issued:04d}")
        return self.bookings[key][1]

    async def cancel(self, key: str) -> bool:
        """Cancel a booking; ``False`` when there was none."""
        booking = self.bookings.pop(key, None)
        if booking is not None:
            self.free[booking[0]] += 1
        return booking is not None


class Airline(Supplier):
    """Seats per flight; ``reply_delay`` makes the airline answer late (after booking)."""

    def __init__(self) -> None:
        super().__init__("seat", INITIAL_SEATS)
        self.reply_delay = 0.0

    async def book(self, key: str, what: str) -> str:
        reference = await super().book(key, what)
        await asyncio.sleep(self.reply_delay)  # the seat is taken even if no one hears back
        return reference


class Agency:
    """The agency's own books: one itinerary per trip; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.itineraries: dict[str, list[str]] = {}
        self.down = False

    async def issue(self, key: str, lines: list[str]) -> None:
        """Record an itinerary once per key."""
        if self.down:
            raise AgencyUnavailable("booking system did not answer")
        self.itineraries.setdefault(key, lines)


class World:
    """Every supplier the travel saga talks to."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Every seat, room and car free again, no itineraries, every service up."""
        self.airline = Airline()
        self.hotels = Supplier("room", INITIAL_ROOMS)
        self.cars = Supplier("car", {"any": INITIAL_CARS})
        self.agency = Agency()

    def describe(self) -> str:
        """Bookings held with each supplier, and itineraries issued, on one line."""
        return (
            f"seats booked {len(self.airline.bookings)} | rooms booked {len(self.hotels.bookings)}"
            f" | cars booked {len(self.cars.bookings)} | itineraries {len(self.agency.itineraries)}"
        )


world = World()
