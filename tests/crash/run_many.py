"""Start many durable sagas on one store and drive them (the process the tests kill)."""

from __future__ import annotations

import asyncio
import random
import sys

from statesaga.durable import open_store
from tests.crash.sagas import CrashChain, CrashDag


async def main(url: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    store = await open_store(url)
    sagas = []
    for i in range(count):
        cls = CrashDag if i % 2 else CrashChain
        saga = cls(fail=rng.random() < 0.3)
        sagas.append(asyncio.create_task(saga.execute(store=store, saga_id=f"run-{seed}-{i:04d}")))
        await asyncio.sleep(0.004)  # a steady stream, so a kill finds runs at every stage
    await asyncio.gather(*sagas)
    print("all done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
