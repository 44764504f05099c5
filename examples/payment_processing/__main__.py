"""``python -m examples.payment_processing``."""

from .main import main

main()
