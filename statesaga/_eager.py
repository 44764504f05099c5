"""Start a task at once, running it up to its first real wait (asyncio's "eager start").

A run lives in a task of its own (so that cancelling the caller cannot cut a step short), and
a task normally waits for the event loop before its first step. A run whose steps never wait
(cache hits, in-process services) would then pay two trips through the loop for nothing.
Python 3.12 added ``eager_start`` for exactly this; on 3.11 the same is done by running the
task's first step straight away, as 3.12 does, where the loop is asyncio's own.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import Task
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

if sys.version_info >= (3, 12):

    def start_task(
        coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, name: str
    ) -> Task[_T]:
        """A task named ``name`` running ``coro``, already run up to its first wait."""
        return asyncio.Task(coro, loop=loop, name=name, eager_start=True)

else:
    from asyncio import events, tasks

    _BASE = asyncio.BaseEventLoop
    _capable: dict[type[Any], bool] = {}

    def _eager_capable(loop: asyncio.AbstractEventLoop) -> bool:
        # 3.11's loop and task internals are frozen (it gets security fixes only), so relying
        # on them is safe there; any other loop (uvloop, a subclass that schedules
        # differently) starts its tasks the ordinary way.
        cls = type(loop)
        capable = _capable[cls] = (
            issubclass(cls, _BASE)
            and cls.create_task is _BASE.create_task
            and cls.call_soon is _BASE.call_soon
            and isinstance(getattr(loop, "_ready", None), deque)
        )
        return capable

    def start_task(
        coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, name: str
    ) -> Task[_T]:
        """A task named ``name`` running ``coro``, already run up to its first wait (where the
        loop allows)."""
        capable = _capable.get(type(loop))
        if capable is None:
            capable = _eager_capable(loop)
        if not capable or loop._task_factory is not None:  # type: ignore[attr-defined]
            return loop.create_task(coro, name=name)
        ready: deque[events.Handle] = loop._ready  # type: ignore[attr-defined]
        queued = len(ready)
        task = Task(coro, loop=loop, name=name)  # loop.create_task without a task factory
        if len(ready) != queued + 1:  # not the one step the task scheduled: leave it be
            return task
        # Take the task's first step off the queue and run it now, with the task as the
        # current one, as Task(eager_start=True) does on 3.12. (A task's step takes no
        # arguments and handles its coroutine's errors itself.)
        first = ready.pop()
        caller = tasks.current_task(loop)
        if caller is not None:
            tasks._leave_task(loop, caller)
        try:
            first._context.run(first._callback)  # type: ignore[attr-defined]
        finally:
            if caller is not None:
                tasks._enter_task(loop, caller)
        return task
