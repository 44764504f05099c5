"""The 3.11 eager start (statesaga/_eager.py) when an exception arrives in the middle of it.

A Python signal handler's exception (KeyboardInterrupt from SIGINT's default handler,
SystemExit from the common ``signal.signal(SIGTERM, lambda *a: sys.exit())``) surfaces at the
check that follows a call. A profile hook raising on the ``c_return`` of a given call puts one
at exactly that point. Wherever it lands, the loop must be left as it was, the caller must be
the current task again, and the run's task must not be stranded: it runs once, now or later.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import weakref
from typing import Any

import pytest

from statesaga import Saga, Step, _eager
from statesaga.context import Context

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.11's emulation only")

calls: list[str] = []


async def record(ctx: Context) -> None:
    calls.append(ctx.step)


class Chain(Saga):
    steps = (Step("a", record), Step("b", record))


# Where the exception lands: (the call it follows, the code that call is made from).
POINTS = {
    "inside the task's construction": ("add", weakref.WeakSet.add.__code__),
    "after the caller is left": ("_leave_task", _eager.start_task.__code__),
    "after the first step ran": ("run", _eager.start_task.__code__),
    "before the caller is entered again": ("clear", _eager.start_task.__code__),
}


def interrupt_after(call: str, code: Any) -> tuple[Any, list[int]]:
    """A profile hook raising KeyboardInterrupt once, right after ``call`` returns in ``code``
    while the stand-in is installed or start_task runs."""
    fired: list[int] = []

    def hook(frame: Any, event: str, arg: Any) -> None:
        if (
            not fired
            and event == "c_return"
            and frame.f_code is code
            and getattr(arg, "__name__", None) == call
            and (code is _eager.start_task.__code__ or "call_soon" in vars(_running()))
        ):
            fired.append(1)
            sys.setprofile(None)
            raise KeyboardInterrupt

    return hook, fired


def _running() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - no loop: nothing to match
        return asyncio.new_event_loop()


@pytest.mark.parametrize("where", POINTS)
def test_an_interrupt_anywhere_leaves_the_loop_the_caller_and_the_run_whole(where: str) -> None:
    call, code = POINTS[where]
    hook, fired = interrupt_after(call, code)
    loop = asyncio.new_event_loop()
    seen: list[bool] = []
    calls.clear()

    async def main() -> None:
        me = asyncio.current_task()
        sys.setprofile(hook)
        try:
            await Chain().execute()
        except KeyboardInterrupt:
            pass
        finally:
            sys.setprofile(None)
        seen.append(asyncio.current_task() is me)
        seen.append("call_soon" not in vars(asyncio.get_running_loop()))
        for _ in range(5):  # a run handed back to the loop finishes meanwhile
            await asyncio.sleep(0)
        seen.append(asyncio.all_tasks() == {me})

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert fired, f"no {call} call was made where expected"
    assert seen == [True, True, True]
    assert calls == ["a", "b"]  # the run's steps ran, once each


HANG = textwrap.dedent(
    """
    import asyncio, signal, sys, weakref
    from statesaga import Saga, Step, _eager

    async def noop(ctx):
        return None

    class Chain(Saga):
        steps = (Step("a", noop),)

    CALL = {call!r}
    CODE = weakref.WeakSet.add.__code__ if CALL == "add" else _eager.start_task.__code__
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))  # the usual SIGTERM handler
    fired = []

    def hook(frame, event, arg):
        if (not fired and event == "c_return" and frame.f_code is CODE
                and getattr(arg, "__name__", None) == CALL
                and (CALL != "add" or "call_soon" in vars(asyncio.get_running_loop()))):
            fired.append(1)
            sys.setprofile(None)
            signal.raise_signal(signal.SIGTERM)  # its handler raises SystemExit here

    async def main():
        sys.setprofile(hook)
        try:
            await Chain().execute()
        finally:
            sys.setprofile(None)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("call", ["add", "_leave_task"])
def test_a_sigterm_handler_exiting_mid_start_ends_the_process(call: str) -> None:
    """asyncio.run's shutdown cancels every task and waits for them: a task whose first step
    was taken and dropped would make it wait forever instead of exiting."""
    done = subprocess.run(
        [sys.executable, "-c", HANG.format(call=call)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3, done.stderr
