"""Start a task at once, running it up to its first real wait (asyncio's "eager start").

A run lives in a task of its own (so that cancelling the caller cannot cut a step short), and
a task normally waits for the event loop before its first step. A run whose steps never wait
(cache hits, in-process services) would then pay two trips through the loop for nothing.
Python 3.12 added ``eager_start`` for exactly this; on 3.11 the same is done by running the
task's first step straight away, as 3.12 does, where the loop is asyncio's own.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from asyncio import Task
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

_T = TypeVar("_T")

if sys.version_info >= (3, 12):

    def start_task(
        coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, name: str
    ) -> Task[_T]:
        """A task named ``name`` running ``coro``, already run up to its first wait."""
        return asyncio.Task(coro, loop=loop, name=name, eager_start=True)

else:
    from asyncio import tasks

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
        if (
            not capable
            or loop._task_factory is not None  # type: ignore[attr-defined]
            or "call_soon" in vars(loop)  # someone else stands in for it already
        ):
            return loop.create_task(coro, name=name)
        # A new task schedules its first step with loop.call_soon. For the length of its
        # construction a stand-in takes that one call (recognised by the task's coroutine)
        # instead of queueing it, so the step can run here; any other call goes to the loop
        # as usual. Other threads queue through call_soon_threadsafe, which the stand-in
        # does not touch.
        first: list[Any] = []
        base = cast(asyncio.BaseEventLoop, loop)

        def call_soon(callback: Any, *args: Any, context: Any = None) -> Any:
            owner = getattr(callback, "__self__", None)
            if not first and not args and isinstance(owner, Task) and owner.get_coro() is coro:
                first.extend((callback, context))
                return None
            return _BASE.call_soon(base, callback, *args, context=context)

        # An exception can arrive between any two statements (a signal handler raising
        # KeyboardInterrupt or SystemExit): whatever happened, the finally clause leaves the
        # loop as it was, the caller current again, and the step with the loop if it has not
        # run, so the task can still run or be cancelled.
        instance = vars(loop)
        caller = tasks.current_task(loop)
        try:
            instance["call_soon"] = call_soon
            task: Task[_T] = Task(coro, loop=loop, name=name)  # loop.create_task, no factory
            del instance["call_soon"]
            if not first:  # scheduled the ordinary way
                return task
            step, context = first
            # Run it now, with the task as the current one, as Task(eager_start=True) does
            # on 3.12. (A task's step takes no arguments and handles its coroutine's errors.)
            if caller is not None:
                tasks._leave_task(loop, caller)
            context.run(step)
            first.clear()  # it ran: nothing to hand back
            if caller is not None:
                tasks._enter_task(loop, caller)
                caller = None  # restored
            return task
        finally:
            if instance.get("call_soon") is call_soon:
                del instance["call_soon"]
            if caller is not None and tasks.current_task(loop) is not caller:
                tasks._enter_task(loop, caller)
            if first and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                _BASE.call_soon(base, first[0], context=first[1])
