"""``python -m examples.travel_booking``."""

from .main import main

main()
