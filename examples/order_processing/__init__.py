"""Order processing: a sequential saga (inventory, payment, shipment, email)."""

from .main import OrderProcessingSaga

__all__ = ["OrderProcessingSaga"]
