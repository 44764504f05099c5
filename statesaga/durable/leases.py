"""Who drives which run: this process's worker id, and keeping its leases alive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from typing import Self

from ..store.base import SagaStore


def _lease_seconds(text: str) -> float:
    """``STATESAGA_LEASE_SECONDS`` read: a finite number of seconds above 0, else an error."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ValueError(
            f"STATESAGA_LEASE_SECONDS={text!r} is not a finite number of seconds above 0: a "
            "lease of no time lets two workers drive one run at once. Unset it (30 s) or give "
            "a time well above a step's commit, such as 10"
        )
    return seconds


#: How long a lease lasts without renewal (seconds); ``STATESAGA_LEASE_SECONDS`` overrides it.
#: A worker renews its leases every third of it, and another worker can take a run over only
#: once its lease has run out, so this is also how long a crashed worker's runs wait.
LEASE_SECONDS = _lease_seconds(os.environ.get("STATESAGA_LEASE_SECONDS", "30"))

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
    conflicts and its driver stops. Its renewing task runs only while it holds a run; its
    owner closes it (``aclose``, or ``async with``), which stops that task. Closing it leaves
    the store open: the keeper does not own it.
    """

    def __init__(self, store: SagaStore, seconds: float = LEASE_SECONDS) -> None:
        self.store = store
        self.seconds = seconds
        self.held: dict[str, int] = {}
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._renewing = False

    @property
    def running(self) -> bool:
        """Whether its renewing task is alive."""
        return self._task is not None and not self._task.done()

    def hold(self, run_id: str) -> None:
        """Start renewing ``run_id``'s lease.

        Raises:
            RuntimeError: The keeper is closed.
        """
        if self.closed:
            raise RuntimeError("this lease keeper is closed: its owner closed it")
        self.held[run_id] = self.held.get(run_id, 0) + 1
        loop = asyncio.get_running_loop()
        # A renewer from a loop that has since closed will never run again: start one here.
        if not self.running or self._task is None or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._renew_forever(), name="statesaga-lease-keeper")

    def drop(self, run_id: str) -> None:
        """Stop renewing ``run_id``'s lease; the last one dropped stops the renewing task."""
        count = self.held.get(run_id, 0) - 1
        if count > 0:
            self.held[run_id] = count
            return
        self.held.pop(run_id, None)
        if not self.held and self._task is not None and not self._renewing:
            # Asleep until its next round: nothing to renew then, no task left behind now. A
            # renewal under way finishes instead (the loop then sees nothing held).
            self._task.cancel()
            self._task = None

    async def aclose(self) -> None:
        """Stop renewing every lease and wait for the renewing task to end (idempotent)."""
        self.closed = True
        self.held.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _renew_forever(self) -> None:
        while self.held:
            await asyncio.sleep(self.seconds / 3)
            ids = list(self.held)
            if not ids:
                break
            self._renewing = True
            try:
                with contextlib.suppress(Exception):  # a failed renewal is retried next round
                    await self.store.renew(ids, owner_id(), time.time() + self.seconds)
            finally:
                self._renewing = False
