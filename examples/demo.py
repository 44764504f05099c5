"""A short tour: one order saga run twice, once to success and once into compensation.

Run it with ``make demo`` (or ``python examples/demo.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from statesaga import Retry, Saga, SagaResult, Step, compile_saga
from statesaga.context import Context


class World:
    """Simulated services that keep real state, so compensation can be seen to restore it."""

    def __init__(self) -> None:
        self.stock = {"BOOK-1": 5}
        self.charged: dict[str, float] = {}
        self.shipments: set[str] = set()
        self.flaky_payments = 1  # the payment gateway drops the first call


WORLD = World()


async def reserve_stock(ctx: Context) -> dict[str, Any]:
    sku, qty = ctx.data["sku"], ctx.data["quantity"]
    if WORLD.stock[sku] < qty:
        raise RuntimeError(f"only {WORLD.stock[sku]} of {sku} left")
    WORLD.stock[sku] -= qty
    return {"reserved": qty}


async def release_stock(ctx: Context) -> None:
    if "reserve_stock" in ctx.results:
        WORLD.stock[ctx.data["sku"]] += ctx.results["reserve_stock"]["reserved"]


async def charge_card(ctx: Context) -> dict[str, Any]:
    if WORLD.flaky_payments:
        WORLD.flaky_payments -= 1
        raise ConnectionError("payment gateway timed out")
    # The idempotency key makes a retried charge land once.
    WORLD.charged[ctx.idempotency_key] = ctx.data["amount"]
    return {"charge_id": ctx.idempotency_key}


async def refund_card(ctx: Context) -> None:
    charge = ctx.results.get("charge_card")
    if charge:  # nothing to refund when the charge never went through
        WORLD.charged.pop(charge["charge_id"], None)


async def ship(ctx: Context) -> dict[str, Any]:
    if ctx.data.get("address") is None:
        raise ValueError("no shipping address")
    WORLD.shipments.add(ctx.saga_id)
    return {"tracking": f"TRK-{ctx.saga_id[-4:]}"}


class OrderSaga(Saga):
    """Reserve stock, charge the card, ship."""

    steps = (
        Step("reserve_stock", reserve_stock, compensate=release_stock),
        Step("charge_card", charge_card, compensate=refund_card, retry=Retry(attempts=3)),
        Step("ship", ship),
    )


def report(title: str, result: SagaResult) -> None:
    print(f"\n== {title}: {result.status.value.upper()} in {result.duration * 1000:.1f} ms")
    for entry in result.history:
        note = f"  (attempt {entry.attempt})" if entry.attempt > 1 else ""
        error = f"  <- {entry.error}" if entry.error else ""
        print(f"   {entry.source:>22} --{entry.trigger}--> {entry.dest}{note}{error}")
    print(f"   completed: {', '.join(result.completed_steps) or '-'}")
    print(f"   compensated: {', '.join(result.compensated_steps) or '-'}")
    print(f"   world: stock={WORLD.stock} charged={sum(WORLD.charged.values()):.2f}")


async def main() -> None:
    compiled = compile_saga(OrderSaga)
    print(f"{compiled!r}")
    ok = await OrderSaga(sku="BOOK-1", quantity=2, amount=40.0, address="1 Main St").execute(
        saga_id="order-0001"
    )
    report("order-0001", ok)
    bad = await OrderSaga(sku="BOOK-1", quantity=1, amount=20.0, address=None).execute(
        saga_id="order-0002"
    )
    report("order-0002 (no address: the charge is refunded, the stock released)", bad)


if __name__ == "__main__":
    asyncio.run(main())
