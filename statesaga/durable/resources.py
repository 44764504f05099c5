"""Stores and brokers opened from URLs: one per URL and event loop, closed as the loop ends.

``execute(store="sqlite:///sagas.db")`` must not open a store per run: every run of a loop
that names the same URL shares one store (one writer, one connection pool), opened by the
first run while the others wait for it. Connections belong to the loop that made them, so a
second ``asyncio.run`` gets stores of its own; those of the first are closed when it ends
(``asyncio.run`` and ``asyncio.Runner`` shut down a loop's asynchronous generators as they
finish, after its tasks, so runs wound down by that end still have their store). A loop
closed without that step is noticed when the next loop opens a store, and what it left open
is closed then. ``shutdown()`` closes them earlier, for applications with a shutdown hook of
their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..store import SagaStore, StoreError, hide_password, store_from_url

if TYPE_CHECKING:
    from ..messaging.broker import Broker

log = logging.getLogger("statesaga")


@attrs.define(eq=False)
class LoopResources:
    """What statesaga opened from URLs in one event loop, and the helpers tied to them.

    Attributes:
        stores: Open stores by URL.
        opening: The opens under way, by URL (every run naming the URL waits for the same).
        brokers: Brokers by URL (they connect on first publish).
        senders: Per-loop state of the messaging layer (senders and their key order), which
            must not outlive the stores and brokers it points at.
    """

    stores: dict[str, SagaStore] = attrs.Factory(dict)
    opening: dict[str, asyncio.Task[SagaStore]] = attrs.Factory(dict)
    brokers: dict[str, Broker] = attrs.Factory(dict)
    senders: dict[object, Any] = attrs.Factory(dict)
    closed: bool = False
    closer: AsyncGenerator[None, None] | None = None
    finalizer: weakref.finalize[Any, Any] | None = None

    def _take(self) -> list[tuple[str, Broker | SagaStore]]:
        """Everything to close, forgotten here: brokers first, then stores."""
        self.closed = True
        taken: list[tuple[str, Broker | SagaStore]] = [*self.brokers.items(), *self.stores.items()]
        self.brokers.clear()
        self.stores.clear()
        self.senders.clear()
        return taken

    async def aclose(self) -> None:
        """Close every broker, then every store (each error is logged, none stops the rest);
        a store still opening is closed once it has opened."""
        if self.closed:
            return
        self.closed = True
        for task in list(self.opening.values()):
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)  # it sees ``closed`` and closes what it opened
        await _close_all(self._take())

    def abandon(self, *, close: bool) -> None:
        """Forget everything: the loop is closed or the process is ending.

        Finishes the closer generator here, so it is never handed to a loop that is closed.
        With ``close``, what was left open is closed in a thread of its own (a SQLite writer
        thread would otherwise live as long as the process).
        """
        taken = self._take()
        if self.finalizer is not None:
            self.finalizer.detach()
        closer, self.closer = self.closer, None
        if closer is not None:
            with contextlib.suppress(StopIteration, RuntimeError):
                closer.aclose().send(None)
        if close and taken:
            threading.Thread(
                target=asyncio.run, args=(_close_all(taken),), name="statesaga-close", daemon=True
            ).start()


async def _close_all(things: Sequence[tuple[str, Broker | SagaStore]]) -> None:
    for url, thing in things:
        try:
            await thing.close()
        except Exception:
            log.warning("closing %s failed", hide_password(url), exc_info=True)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopResources] = (
    weakref.WeakKeyDictionary()
)


async def _close_with_loop(resources: LoopResources) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if not resources.closed:
            await resources.aclose()


def loop_resources() -> LoopResources:
    """The running loop's resources (made on first use, closed when the loop shuts down)."""
    loop = asyncio.get_running_loop()
    resources = _BY_LOOP.get(loop)
    if resources is None or resources.closed:
        _forget_closed_loops()
        resources = _BY_LOOP[loop] = LoopResources()
        closer = resources.closer = _close_with_loop(resources)
        # Run it to its ``yield`` now: from then on the loop knows it, and its
        # shutdown_asyncgens() closes it, which closes what it holds.
        with contextlib.suppress(StopIteration):
            closer.asend(None).send(None)
        # At exit, a loop still open is left as it is: its process is ending.
        resources.finalizer = weakref.finalize(loop, resources.abandon, close=False)
    return resources


def _forget_closed_loops() -> None:
    # A loop closed without shutting down its asynchronous generators (new_event_loop(),
    # run_until_complete(), close()) never closed what it opened.
    for loop, resources in list(_BY_LOOP.items()):
        if loop.is_closed():
            del _BY_LOOP[loop]
            resources.abandon(close=True)


async def store_for_url(url: str) -> SagaStore:
    """The open store ``url`` names in this loop, opened by its first caller.

    Raises:
        StoreError: The URL is empty, unknown or the store cannot be opened (the next call
            tries again).
    """
    resources = loop_resources()
    store = resources.stores.get(url)
    if store is not None:
        return store
    task = resources.opening.get(url)
    if task is None:
        if not url.strip():
            raise StoreError(
                "store='' names no store: pass a URL such as sqlite:///sagas.db, "
                "or leave store out to run in memory"
            )
        opening = _open(resources, url, store_from_url(url))
        task = resources.opening[url] = asyncio.get_running_loop().create_task(opening)
        task.add_done_callback(_retrieve)
    # Shielded: a caller cancelled while it waits must not cancel the others' open.
    return await asyncio.shield(task)


async def _open(resources: LoopResources, url: str, store: SagaStore) -> SagaStore:
    try:
        await store.open()
    except BaseException:
        # Cancelled (the loop is ending), an open running in a thread may still complete:
        # close whatever it made once it has.
        with contextlib.suppress(Exception):
            await asyncio.shield(store.close())
        raise
    finally:
        resources.opening.pop(url, None)
    if resources.closed:  # shut down while it opened
        await store.close()
        raise StoreError(f"{hide_password(url)}: statesaga was shut down in this event loop")
    resources.stores[url] = store
    return store


def _retrieve(task: asyncio.Task[SagaStore]) -> None:
    # Its waiters may all have been cancelled: the error must not be logged as never seen.
    if not task.cancelled():
        task.exception()


async def shutdown() -> None:
    """Close the stores and brokers statesaga opened from URLs in the running event loop.

    They are closed anyway when the loop ends through ``asyncio.run`` (or ``asyncio.Runner``);
    call this from an application's own shutdown hook to close them earlier, once its runs
    have ended. A later run that names a URL opens it again.
    """
    loop = asyncio.get_running_loop()
    resources = _BY_LOOP.pop(loop, None)
    if resources is None:
        return
    await resources.aclose()
    if resources.finalizer is not None:
        resources.finalizer.detach()
    closer, resources.closer = resources.closer, None
    if closer is not None:
        await closer.aclose()
