"""``python -m examples.trade_execution``."""

from .main import main

main()
