"""Start runs of waiting sagas durably and follow them to their end, as a service awaiting
``run.result()`` does (the process the tests kill while the runs wait).

Usage: ``python -m tests.crash.wait_start URL SAGA:RUN_ID...``, sagas from ``tests.crash.waits``.
"""

from __future__ import annotations

import asyncio
import sys

from tests.crash.waits import SAGAS


async def main(url: str, runs: list[str]) -> None:
    handles = []
    for item in runs:
        saga, run_id = item.split(":")
        handles.append(await SAGAS[saga](order=run_id).start(store=url, saga_id=run_id))
    print("started", flush=True)
    await asyncio.gather(*(handle.result() for handle in handles))
    print("all done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
