"""A worker that dies at the commit recording a wait's signal (the process the tests kill).

Usage: ``python -m tests.crash.wait_worker URL (before|after)``: the worker SIGKILLs itself
right before that commit is handed to the store, or right after it is durable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Sequence
from typing import Any

from statesaga.store import Commit, SagaStore, store_from_url
from statesaga.worker import Worker


class DiesAtSignal:
    """A store that SIGKILLs this process at the first commit recording ``<wait>.signal``."""

    def __init__(self, store: SagaStore, when: str) -> None:
        self._store = store
        self._when = when

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def commit(self, commit: Commit) -> Awaitable[Sequence[str] | None]:
        if not any(t.trigger.endswith(".signal") for t in commit.transitions):
            return self._store.commit(commit)
        if self._when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        written = self._store.commit(commit)

        async def then_die() -> Sequence[str] | None:
            await written
            os.kill(os.getpid(), signal.SIGKILL)
            raise AssertionError("not killed")

        return then_die()


async def main(url: str, when: str) -> None:
    store = DiesAtSignal(store_from_url(url), when)
    await Worker(store, poll=0.1).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
