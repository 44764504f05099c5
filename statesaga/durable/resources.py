"""What statesaga opens itself, and who closes it: stores and brokers named by URL, the
senders publishing through them, the lease keepers of the stores runs are driven in.

Whoever opens a resource closes it. A store or broker passed as an object is its caller's:
statesaga never closes it. One named by URL is opened by statesaga, as a resource of the event
loop that first uses it: ``execute(store="sqlite:///sagas.db")`` must not open a store per run,
so every run of a loop that names the same URL shares one store (one writer, one connection
pool), opened by the first run while the others wait for it. Connections belong to the loop
that made them, so a second ``asyncio.run`` gets stores of its own; those of the first are
closed when it ends (``asyncio.run`` and ``asyncio.Runner`` shut down a loop's asynchronous
generators as they finish, after its tasks, so runs wound down by that end still have their
store). A loop closed without that step is noticed when the next loop opens a store, and what
it left open is closed then. ``shutdown()`` closes them earlier, for applications with a
shutdown hook of their own. Nothing here outlives its event loop.
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
from .leases import LeaseKeeper

if TYPE_CHECKING:
    from ..messaging.broker import Broker
    from ..messaging.sender import KeyOrder, Sender

#: A store, or the URL of one.
StoreLike = SagaStore | str

log = logging.getLogger("statesaga")


@attrs.define(eq=False)
class LoopResources:
    """What statesaga opened in one event loop, which it closes when the loop ends.

    Attributes:
        stores: Open stores by URL (statesaga's own).
        opening: The opens under way, by URL (every run naming the URL waits for the same).
        keepers: The lease keepers of the stores runs of this loop hold leases in, by the
            store's id, whoever owns the store; one is dropped when it holds no run.
        brokers: Brokers by URL (they connect on first publish).
        senders: The senders of this loop, by store and broker id.
        key_orders: What the senders of one store share (see ``KeyOrder``), by the store's id.
        runs: The durable runs this loop drives in tasks of their own (``Saga.start``),
            until they end.
    """

    stores: dict[str, SagaStore] = attrs.Factory(dict)
    opening: dict[str, asyncio.Task[SagaStore]] = attrs.Factory(dict)
    keepers: dict[int, LeaseKeeper] = attrs.Factory(dict)
    brokers: dict[str, Broker] = attrs.Factory(dict)
    senders: dict[tuple[int, int], Sender] = attrs.Factory(dict)
    key_orders: dict[int, tuple[SagaStore, KeyOrder]] = attrs.Factory(dict)
    runs: set[asyncio.Task[Any]] = attrs.Factory(set)
    closed: bool = False
    closer: AsyncGenerator[None, None] | None = None
    finalizer: weakref.finalize[Any, Any] | None = None

    def keeper(self, store: SagaStore) -> LeaseKeeper:
        """The keeper of ``store``'s leases in this loop (made on first use)."""
        keeper = self.keepers.get(id(store))
        if keeper is None or keeper.store is not store or keeper.closed:
            keeper = self.keepers[id(store)] = LeaseKeeper(store)
        return keeper

    def driving(self, store: SagaStore, run_id: str) -> bool:
        """Whether a run of this loop holds ``run_id``'s lease in ``store``."""
        keeper = self.keepers.get(id(store))
        return keeper is not None and keeper.store is store and run_id in keeper.held

    def drive_in_background(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task``, a run's, until it ends; ``aclose`` stops it if it has not."""
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)

    def let_go(self, keeper: LeaseKeeper) -> None:
        """Forget ``keeper`` if it holds no run any more (the next run makes a new one)."""
        if not keeper.held and self.keepers.get(id(keeper.store)) is keeper:
            del self.keepers[id(keeper.store)]

    def _take(self) -> list[tuple[str, Broker | SagaStore]]:
        """Everything to close, forgotten here: brokers first, then stores."""
        self.closed = True
        taken: list[tuple[str, Broker | SagaStore]] = [*self.brokers.items(), *self.stores.items()]
        self.brokers.clear()
        self.stores.clear()
        self.senders.clear()
        self.key_orders.clear()
        for keeper in self.keepers.values():
            keeper.closed = True  # its task, if any, ends with the loop
        self.keepers.clear()
        return taken

    async def aclose(self) -> None:
        """Close the senders (their messages marked sent or left to the relay), the lease
        keepers, every broker, then every store (each error is logged, none stops the rest);
        a store still opening is closed once it has opened."""
        if self.closed:
            return
        # Runs still going would fail on closed stores: each is stopped (abandoned, as at a
        # crash: resumable, its lease released) before anything closes under it.
        going = [task for task in self.runs if not task.done()]
        for task in going:
            task.cancel()
        if going:
            await asyncio.wait(going)
        self.closed = True
        for task in list(self.opening.values()):
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)  # it sees ``closed`` and closes what it opened
        # Before the stores and brokers they use: a sender marks what it sent in its store.
        for sender in list(self.senders.values()):
            with contextlib.suppress(Exception):
                await sender.aclose()
        for keeper in list(self.keepers.values()):
            await keeper.aclose()
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


async def open_store(store: StoreLike) -> SagaStore:
    """``store`` itself (opened, and left to its caller to close), or the store its URL names
    in this event loop (shared by every run of the loop that names it, closed when the loop
    ends or by ``shutdown``)."""
    if isinstance(store, str):
        return await store_for_url(store)
    await store.open()
    return store


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
    """Close what statesaga opened in the running event loop: the stores and brokers named by
    URL, the senders publishing through them and the lease keepers (a store or broker passed
    as an object is left open: its caller closes it).

    They are closed anyway when the loop ends through ``asyncio.run`` (or ``asyncio.Runner``);
    call this from an application's own shutdown hook to close them earlier. Runs started in
    the background (``Saga.start``) that are still going are stopped first, as a crash would
    stop them, but with their leases released: each is left unfinished for a worker or
    ``resume`` to go on with at once, and its handle's ``result()`` raises ``RunPaused``. A
    later run that names a URL opens it again.
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
