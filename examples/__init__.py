"""Example sagas: each folder is a small, realistic saga against simulated services.

``from examples.order_processing import OrderProcessingSaga`` works from the repository root.
"""
