"""``python -m examples.order_processing``."""

from .main import main

main()
