"""A short tour: an order saga run durably on SQLite, three times.

1. order-0001 succeeds (its payment gateway drops the first call: retried).
2. order-0002 fails at shipping: the charge is refunded, the stock released.
3. order-0003's worker process is killed mid-saga; the run is resumed from the store: the
   steps that had succeeded are not run again.

Run it with ``make demo`` (or ``python examples/demo.py``). The runs stay in ``.demo/sagas.db``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from statesaga import Retry, Saga, SagaResult, Step, compile_saga, resume
from statesaga.context import Context


class World:
    """Simulated services that keep real state, so compensation can be seen to restore it."""

    def __init__(self) -> None:
        self.stock = {"BOOK-1": 5}
        self.charged: dict[str, float] = {}
        self.shipments: set[str] = set()
        self.flaky_payments = 1  # the payment gateway drops the first call


WORLD = World()
CALLS: list[str] = []


async def reserve_stock(ctx: Context) -> dict[str, Any]:
    CALLS.append(ctx.step)
    sku, qty = ctx.data["sku"], ctx.data["quantity"]
    if WORLD.stock[sku] < qty:
        raise RuntimeError(f"only {WORLD.stock[sku]} of {sku} left")
    WORLD.stock[sku] -= qty
    return {"reserved": qty}


async def release_stock(ctx: Context) -> None:
    if "reserve_stock" in ctx.results:
        WORLD.stock[ctx.data["sku"]] += ctx.results["reserve_stock"]["reserved"]


async def charge_card(ctx: Context) -> dict[str, Any]:
    CALLS.append(ctx.step)
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
    CALLS.append(ctx.step)
    if os.environ.get("DEMO_SLOW_SHIP"):
        await asyncio.sleep(60)  # the courier is slow: the process will be killed here
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


def report(title: str, result: SagaResult, *, world: bool = True) -> None:
    print(f"\n== {title}: {result.status.value.upper()} in {result.duration * 1000:.1f} ms")
    for entry in result.history:
        note = f"  (attempt {entry.attempt})" if entry.attempt > 1 else ""
        error = f"  <- {entry.error}" if entry.error else ""
        print(f"   {entry.source:>22} --{entry.trigger}--> {entry.dest}{note}{error}")
    print(f"   completed: {', '.join(result.completed_steps) or '-'}")
    print(f"   compensated: {', '.join(result.compensated_steps) or '-'}")
    if world:
        print(f"   world: stock={WORLD.stock} charged={sum(WORLD.charged.values()):.2f}")


# Where the runs are kept; $STATESAGA_DEMO_DIR moves it (tests run the demo side by side).
DEMO_DIR = Path(
    os.environ.get("STATESAGA_DEMO_DIR") or Path(__file__).resolve().parent.parent / ".demo"
)
STORE = f"sqlite:///{DEMO_DIR / 'sagas.db'}"


async def crash_child() -> None:
    """Start order-0003 durably and hang in its last step (the parent kills this process)."""
    WORLD.flaky_payments = 0
    await OrderSaga(sku="BOOK-1", quantity=1, amount=15.0, address="slow").execute(
        saga_id="order-0003", store=STORE
    )


def kill_mid_saga() -> None:
    """Run order-0003 in a child process and SIGKILL it while its last step runs."""
    env = {**os.environ, "STATESAGA_LEASE_SECONDS": "1", "DEMO_SLOW_SHIP": "1"}
    child = subprocess.Popen([sys.executable, __file__, "--crash-child"], env=env)
    db = DEMO_DIR / "sagas.db"
    for _ in range(500):
        time.sleep(0.02)
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(db) as con:
            row = con.execute(
                "SELECT phase FROM statesaga_steps WHERE run_id='order-0003' AND step='ship'"
            ).fetchone()
            if row and row[0] == "running":
                break
    child.send_signal(signal.SIGKILL)
    child.wait()
    print(f"\n== order-0003: worker process {child.pid} killed (SIGKILL) while 'ship' was running")


async def main() -> None:
    compiled = compile_saga(OrderSaga)
    print(f"{compiled!r}  stored in {STORE}")
    ok = await OrderSaga(sku="BOOK-1", quantity=2, amount=40.0, address="1 Main St").execute(
        saga_id="order-0001", store=STORE
    )
    report("order-0001", ok)
    bad = await OrderSaga(sku="BOOK-1", quantity=1, amount=20.0, address=None).execute(
        saga_id="order-0002", store=STORE
    )
    report("order-0002 (no address: the charge is refunded, the stock released)", bad)

    kill_mid_saga()
    await asyncio.sleep(1.1)  # the dead worker's lease runs out
    CALLS.clear()
    resumed = await resume(STORE, "order-0003", saga=OrderSaga)
    print(f"   resumed in this process: steps called again: {CALLS}")
    print("   (reserve_stock and charge_card had succeeded before the kill: not run again)")
    report("order-0003 after resume", resumed, world=False)


if __name__ == "__main__":
    if "--crash-child" in sys.argv:
        asyncio.run(crash_child())
    else:
        shutil.rmtree(DEMO_DIR, ignore_errors=True)
        DEMO_DIR.mkdir()
        asyncio.run(main())
        print("\n$ statesaga runs list")
        subprocess.run(
            [sys.executable, "-m", "statesaga.cli", "runs", "list", "--store", STORE], check=True
        )
