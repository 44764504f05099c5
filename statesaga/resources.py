"""Stores and brokers opened from URLs: one per URL and event loop, closed as the loop ends.

``execute(store="sqlite:///sagas.db")`` must not open a store per run: every run of a loop
that names the same URL shares one store (one writer, one connection pool), opened by the
first run while the others wait for it. Connections belong to the loop that made them, so a
second ``asyncio.run`` gets stores of its own; those of the first are closed when it ends
(``asyncio.run`` and ``asyncio.Runner`` shut down a loop's asynchronous generators as they
finish, after its tasks, so runs wound down by that end still have their store).
``shutdown()`` closes them earlier, for applications with a shutdown hook of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import attrs

from .store import SagaStore, StoreError, hide_password, store_from_url

if TYPE_CHECKING:
    from .messaging.broker import Broker

log = logging.getLogger("statesaga")


@attrs.define(eq=False)
class LoopResources:
    """What statesaga opened from URLs in one event loop, and the helpers tied to them.

    Attributes:
        stores: Open stores by URL.
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

    async def aclose(self) -> None:
        """Close every broker, then every store (each error is logged, none stops the rest)."""
        if self.closed:
            return
        self.closed = True
        for task in self.opening.values():
            task.cancel()
        closing: list[tuple[str, Broker | SagaStore]] = [
            *self.brokers.items(),
            *self.stores.items(),
        ]
        self.brokers.clear()
        self.stores.clear()
        self.senders.clear()
        for url, thing in closing:
            try:
                await thing.close()
            except Exception:
                log.warning("closing %s failed", hide_password(url), exc_info=True)

    def abandon(self) -> None:
        """Forget everything without closing (the loop is gone: its connections went with it).

        Finishes the closer generator here, so it is not handed to a loop that is closed.
        """
        self.closed = True
        closer, self.closer = self.closer, None
        if closer is not None:
            with contextlib.suppress(StopIteration, RuntimeError):
                closer.aclose().send(None)


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
        resources = _BY_LOOP[loop] = LoopResources()
        closer = resources.closer = _close_with_loop(resources)
        # Run it to its ``yield`` now: from then on the loop knows it, and its
        # shutdown_asyncgens() closes it, which closes what it holds. A loop that is closed
        # or collected without that leaves it to ``abandon``.
        with contextlib.suppress(StopIteration):
            closer.asend(None).send(None)
        weakref.finalize(loop, resources.abandon)
    return resources


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
        task = asyncio.get_running_loop().create_task(_open(resources, url, store_from_url(url)))
        resources.opening[url] = task
    # Shielded: a caller cancelled while it waits must not cancel the others' open.
    return await asyncio.shield(task)


async def _open(resources: LoopResources, url: str, store: SagaStore) -> SagaStore:
    try:
        await store.open()
    finally:
        resources.opening.pop(url, None)
    if resources.closed:  # shut down while it opened
        await store.close()
        raise StoreError(f"{hide_password(url)}: statesaga was shut down in this event loop")
    resources.stores[url] = store
    return store


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
    closer, resources.closer = resources.closer, None
    if closer is not None:
        await closer.aclose()
