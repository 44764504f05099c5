"""Who drives which run: this process's worker id, and keeping its leases alive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import weakref

from ..store.base import SagaStore

#: How long a lease lasts without renewal (seconds); ``STATESAGA_LEASE_SECONDS`` overrides it.
#: A worker renews its leases every third of it, and another worker can take a run over only
#: once its lease has run out, so this is also how long a crashed worker's runs wait.
LEASE_SECONDS = float(os.environ.get("STATESAGA_LEASE_SECONDS", "30"))

_OWNER = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def owner_id() -> str:
    """This process's worker id (host, pid and a random tag, fresh after a fork)."""
    return _OWNER


def _after_fork() -> None:
    global _OWNER
    _OWNER = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


os.register_at_fork(after_in_child=_after_fork)


class LeaseKeeper:
    """Renews the leases of the runs this process drives in one store, in one batch.

    A lease another worker has taken over is simply not renewed: the run's next commit
    conflicts and its driver stops.
    """

    def __init__(self, store: SagaStore, seconds: float = LEASE_SECONDS) -> None:
        self.store = store
        self.seconds = seconds
        self.held: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def hold(self, run_id: str) -> None:
        """Start renewing ``run_id``'s lease."""
        self.held[run_id] = self.held.get(run_id, 0) + 1
        loop = asyncio.get_running_loop()
        # A renewer from a loop that has since closed will never run again: start one here.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._renew_forever())

    def drop(self, run_id: str) -> None:
        """Stop renewing ``run_id``'s lease."""
        count = self.held.get(run_id, 0) - 1
        if count > 0:
            self.held[run_id] = count
        else:
            self.held.pop(run_id, None)

    async def _renew_forever(self) -> None:
        while self.held:
            await asyncio.sleep(self.seconds / 3)
            ids = list(self.held)
            if not ids:
                break
            with contextlib.suppress(Exception):  # a failed renewal is retried next round
                await self.store.renew(ids, owner_id(), time.time() + self.seconds)


_KEEPERS: weakref.WeakKeyDictionary[object, LeaseKeeper] = weakref.WeakKeyDictionary()


def keeper_for(store: SagaStore) -> LeaseKeeper:
    """The lease keeper of ``store`` in this process."""
    keeper = _KEEPERS.get(store)
    if keeper is None:
        keeper = _KEEPERS[store] = LeaseKeeper(store)
    return keeper
