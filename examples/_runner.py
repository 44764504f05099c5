"""What every example's ``main.py`` does: run a few stories and tell what happened in each."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from statesaga import HistoryEntry, RunHandle, Saga, SagaResult, StatesagaError
from statesaga.store import SagaStore, store_from_url


class World(Protocol):
    """An example's simulated services."""

    def reset(self) -> None:
        """Back to the initial state."""

    def describe(self) -> str:
        """The state worth showing, on one line."""


@attrs.frozen
class Recorded:
    """Where ``--store`` records the runs: the open store, and the URL it was given as."""

    store: SagaStore
    url: str


#: What a story does while its run runs (such as sending the signal a person would send):
#: given the run's handle, and where it is recorded (``None`` in memory).
Meanwhile = Callable[[RunHandle, Recorded | None], Awaitable[None]]


@attrs.frozen
class Story:
    """One run to show.

    Attributes:
        title: What the run shows.
        saga: The saga with its input.
        setup: Prepares the world after its reset (such as making a service flaky).
        meanwhile: Runs beside the run, which is then started rather than executed.
    """

    title: str
    saga: Saga
    setup: Callable[[], None] | None = None
    meanwhile: Meanwhile | None = None


def main(
    description: str, world: World, stories: Sequence[Story], argv: Sequence[str] | None = None
) -> None:
    """Parse ``--store``, then tell every story; a store that cannot be used is one line."""
    parser = argparse.ArgumentParser(prog=_prog(), description=description)
    parser.add_argument(
        "--store", metavar="URL", help="record the runs durably, such as sqlite:///sagas.db"
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(tell(world, stories, args.store))
    except StatesagaError as error:  # a bad --store, say: the user's to fix, not a traceback
        parser.exit(1, f"error: {error}\n")
    if args.store:
        print(f"\nThe runs are recorded in {args.store}: statesaga runs list --store {args.store}")


def _prog() -> str | None:
    """``python -m examples.<name>`` for the usage line, which would say ``__main__.py``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return f"python -m {spec.parent}" if spec is not None and spec.parent else None


async def tell(world: World, stories: Sequence[Story], store: str | None = None) -> None:
    """Run each story on a freshly reset world and print its account.

    The store is opened once, before the first story, so a URL that cannot be used stops
    the command before it tells anything.
    """
    if store is None:
        await _tell(world, stories, None)
        return
    opened = store_from_url(store)
    await opened.open()
    try:
        await _tell(world, stories, Recorded(opened, store))
    finally:
        await opened.close()


async def _tell(world: World, stories: Sequence[Story], recorded: Recorded | None) -> None:
    for number, story in enumerate(stories, 1):
        world.reset()
        if story.setup is not None:
            story.setup()
        print(f"\n{number}. {story.title}\n   {story.saga!r}")
        print(f"   before: {world.describe()}")
        result = await run(story, recorded)
        for line in account(result):
            print(f"   {line}")
        print(f"   after:  {world.describe()}")


async def run(story: Story, recorded: Recorded | None = None) -> SagaResult:
    """Run one story's saga (in memory, or in ``recorded``'s store) to its end, with what the
    story does meanwhile; the world is left as it is."""
    store = recorded.store if recorded is not None else None
    if story.meanwhile is None:
        return await story.saga.execute(store=store)
    handle = await story.saga.start(store=store)
    await story.meanwhile(handle, recorded)
    return await handle.result()


def account(result: SagaResult) -> list[str]:
    """What happened in a run, a line per step event, then its status."""
    lines = [_line(entry, result.results) for entry in result.history]
    status = result.status.value.upper()
    lines = [line for line in lines if line]
    lines.append(f"-> {status} in {result.duration * 1000:.1f} ms (run {result.saga_id})")
    return lines


#: Step event -> how the account names it; events not listed are left out.
_EVENTS = {
    "skip": "skipped",
    "wait": "waiting",
    "signal": "signalled",
    "retry": "retried",
    "succeed": "done",
    "fail": "FAILED",
    "time_out": "TIMED OUT",
    "invalid_result": "BAD RESULT",
    "compensation_done": "undone",
    "retry_compensation": "undo retried",
    "compensation_fail": "UNDO FAILED",
}


def _line(entry: HistoryEntry, results: Mapping[str, Mapping[str, Any]]) -> str:
    if entry.trigger == "halt":
        return "stopped past the pivot: nothing is undone, a person must look at this run"
    step, _, event = entry.trigger.partition(".")
    label = _EVENTS.get(event)
    if label is None:
        return ""
    if event in {"succeed", "signal"}:
        detail = ", ".join(f"{k}={v}" for k, v in results.get(step, {}).items())
    elif event in {"retry", "retry_compensation"}:
        detail = f"attempt {entry.attempt} after {entry.error}"
    else:
        detail = entry.error or ""
    return f"{step:<22} {label:<12} {detail}".rstrip()
