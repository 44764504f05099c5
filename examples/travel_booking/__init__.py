"""Travel booking: a DAG saga (flight, hotel and car at once, then the itinerary)."""

from .main import TravelBookingSaga

__all__ = ["TravelBookingSaga"]
