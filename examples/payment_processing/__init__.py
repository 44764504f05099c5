"""Payment processing: retries made safe by idempotency keys, and a pivot (the capture)."""

from .main import PaymentSaga

__all__ = ["PaymentSaga"]
