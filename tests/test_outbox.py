"""ctx.emit: what a run commits to the outbox, when, with which ids, and optimistic sending."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from statesaga import Retry, Saga, SagaStatus, Step, resume
from statesaga.context import Context
from statesaga.messaging.broker import BrokerError
from statesaga.messaging.brokers.memory import MemoryBroker
from statesaga.messaging.message import Message
from statesaga.messaging.relay import Relay
from statesaga.messaging.stats import OUTBOX_STATS
from statesaga.store import Commit, MemoryStore, SagaStore, StoreError
from statesaga.store.sqlite import SQLiteStore
from statesaga.testing import FakeClock, fail_step


async def emit_two(ctx: Context) -> None:
    ctx.emit("orders", {"step": ctx.step, "attempt": ctx.attempt}, key="order-1")
    ctx.emit("audit", {"step": ctx.step}, headers={"source": "test"})


async def emit_then_fail(ctx: Context) -> None:
    ctx.emit("orders", {"step": ctx.step}, key="order-1")
    raise RuntimeError("declined")


async def undo(ctx: Context) -> None:
    ctx.emit("orders", {"undo": ctx.step}, key="order-1")


class Fails(Saga):
    steps = (
        Step("reserve", emit_two, compensate=undo),
        Step("charge", emit_then_fail, compensate=undo),
    )


class Completes(Saga):
    steps = (Step("reserve", emit_two), Step("charge", emit_two))


class Recording:
    """A store that remembers every commit it was given (and can fail one)."""

    def __init__(self, inner: SagaStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.commits: list[Commit] = []
        self.fail_next_with_messages = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, commit: Commit) -> Sequence[str] | None:
        if commit.messages and self.fail_next_with_messages:
            self.fail_next_with_messages = False
            raise StoreError("disk full", run_id=commit.run_id)
        self.commits.append(commit)
        return await self.inner.commit(commit)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store."""
    async with SQLiteStore(tmp_path / "outbox.db") as opened:
        yield opened


async def outbox(store: SagaStore) -> dict[str, Any]:
    """Message id to payload, for every message in the outbox."""
    return {r.id: r.message.payload for r in await store.outbox_list(limit=1000)}


async def test_failed_step_emits_nothing_and_compensation_emits(store: SQLiteStore) -> None:
    """The failing step's message is dropped; the compensation's is committed."""
    result = await Fails().execute(store=store, saga_id="r1")
    assert result.status is SagaStatus.COMPENSATED
    assert await outbox(store) == {
        "r1:reserve:1": {"step": "reserve", "attempt": 1},
        "r1:reserve:2": {"step": "reserve"},
        "r1:reserve:compensate:1": {"undo": "reserve"},
    }
    assert [m.id for m in result.messages] == [
        "r1:reserve:1",
        "r1:reserve:2",
        "r1:reserve:compensate:1",
    ]


async def test_messages_share_the_commit_that_records_the_success(store: SQLiteStore) -> None:
    """Each message is in the same commit as its step's succeed (or compensation_done)."""
    recording = Recording(store)
    await Fails().execute(store=recording, saga_id="r1")  # type: ignore[arg-type]
    carrying = [c for c in recording.commits if c.messages]
    assert len(carrying) == 2
    for commit in carrying:
        triggers = {t.trigger for t in commit.transitions}
        steps = {m.step for m in commit.messages}
        ends = {f"{s}.succeed" for s in steps} | {f"{s}.compensation_done" for s in steps}
        assert triggers & ends
    assert [m.id for m in carrying[1].messages] == ["r1:reserve:compensate:1"]


async def test_ids_are_stable_across_attempts(store: SQLiteStore) -> None:
    """A retried step's messages keep their ids; the failed attempt's are not kept."""

    class Retried(Saga):
        steps = (Step("reserve", emit_two, retry=Retry(attempts=2, delay=0)),)

    with fail_step("reserve", times=1):
        result = await Retried().execute(store=store, saga_id="r1")
    assert result.status is SagaStatus.COMPLETED
    assert await outbox(store) == {
        "r1:reserve:1": {"step": "reserve", "attempt": 2},
        "r1:reserve:2": {"step": "reserve"},
    }


async def test_ids_are_stable_across_a_resume(store: SQLiteStore) -> None:
    """A step whose success was not committed runs again on resume, with the same ids."""
    recording = Recording(store)
    recording.fail_next_with_messages = True
    with pytest.raises(StoreError, match="disk full"):
        await Completes().execute(store=recording, saga_id="r1")  # type: ignore[arg-type]
    assert await outbox(store) == {}
    result = await resume(store, "r1", saga=Completes)
    assert result.status is SagaStatus.COMPLETED
    assert sorted(await outbox(store)) == [
        "r1:charge:1",
        "r1:charge:2",
        "r1:reserve:1",
        "r1:reserve:2",
    ]


async def test_dag_siblings_commit_their_messages(store: SQLiteStore) -> None:
    """Concurrent steps of a DAG each commit their own messages."""

    class Dag(Saga):
        steps = (
            Step("a", emit_two),
            Step("b", emit_two, depends_on="a"),
            Step("c", emit_two, depends_on="a"),
        )

    await Dag().execute(store=store, saga_id="r1")
    assert len(await outbox(store)) == 6


async def test_in_memory_run_returns_its_messages() -> None:
    """Without a store nothing is published; result.messages has what succeeded calls emitted."""
    result = await Fails().execute(saga_id="r1")
    assert [m.id for m in result.messages] == [
        "r1:reserve:1",
        "r1:reserve:2",
        "r1:reserve:compensate:1",
    ]
    assert result.messages[0].key == "order-1"
    assert result.messages[1].headers == {"source": "test"}


async def test_a_broker_without_a_store_is_refused() -> None:
    """execute(broker=...) without store= says a store is needed."""
    with pytest.raises(ValueError, match="needs a store"):
        await Completes().execute(broker=MemoryBroker())


async def test_a_payload_that_is_not_json_fails_the_step() -> None:
    """Emitting a payload JSON cannot hold raises TypeError in the action."""

    async def bad(ctx: Context) -> None:
        ctx.emit("orders", {"at": object()})

    class Bad(Saga):
        steps = (Step("bad", bad, retry=Retry(attempts=1)),)

    result = await Bad().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert isinstance(result.error, TypeError)
    assert "JSON" in str(result.error)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload": {"note": "\ud800"}}, "not valid Unicode"),
        ({"payload": {}, "key": 7}, "key must be a string or None"),
        ({"payload": {}, "headers": {"trace": 1}}, "header names and values must be strings"),
        ({"payload": {}, "headers": {"trace": "\udfff"}}, "not valid Unicode"),
    ],
)
async def test_a_message_no_broker_could_send_fails_the_step(
    kwargs: dict[str, Any], message: str
) -> None:
    """Keys, headers and text that could be stored but never sent are refused at emit."""

    async def bad(ctx: Context) -> None:
        ctx.emit("orders", **kwargs)

    class Bad(Saga):
        steps = (Step("bad", bad),)

    result = await Bad().execute()
    assert result.status is SagaStatus.COMPENSATED
    assert isinstance(result.error, TypeError)
    assert message in str(result.error)


async def test_text_outside_the_basic_plane_is_sent_as_is() -> None:
    """A surrogate pair (an emoji) is valid text: emitted and returned unchanged."""

    async def smile(ctx: Context) -> None:
        ctx.emit("orders", {"note": "\U0001f600"}, headers={"mood": "\U0001f600"})

    class Smile(Saga):
        steps = (Step("smile", smile),)

    result = await Smile().execute()
    assert result.status is SagaStatus.COMPLETED
    assert result.messages[0].payload == {"note": "\U0001f600"}


async def test_optimistic_sending_publishes_and_marks_sent(store: SQLiteStore) -> None:
    """With a broker, messages are published after their commit and marked sent."""
    broker = MemoryBroker()
    before = OUTBOX_STATS.optimistic_sent
    await Completes().execute(store=store, broker=broker, saga_id="r1")
    assert [m.id for m in broker.messages("orders")] == ["r1:reserve:1", "r1:charge:1"]
    assert {r.status for r in await store.outbox_list()} == {"sent"}
    assert OUTBOX_STATS.optimistic_sent - before == 4


async def test_without_a_broker_messages_wait_for_the_relay(store: SQLiteStore) -> None:
    """A run with a store and no broker leaves its messages pending; a relay sends them."""
    await Completes().execute(store=store, saga_id="r1")
    pending = await store.outbox_list(status="pending")
    assert len(pending) == 4
    assert {r.claim_owner for r in pending} == {None}
    broker = MemoryBroker()
    assert (await Relay(store, broker).run_once()).sent == 4
    assert [m.payload["step"] for m in broker.messages("orders")] == ["reserve", "charge"]


async def test_a_broker_that_is_down_falls_back_to_the_relay(store: SQLiteStore) -> None:
    """A failed optimistic publish leaves the message to the relay and counts a fallback."""
    broker = MemoryBroker()
    broker.down()
    before = OUTBOX_STATS.fallback
    result = await Completes().execute(store=store, broker=broker, saga_id="r1")
    assert result.status is SagaStatus.COMPLETED
    assert OUTBOX_STATS.fallback - before == 4
    pending = await store.outbox_list(status="pending")
    assert {(r.claim_owner, r.attempts) for r in pending} == {(None, 0)}
    assert all(
        "BrokerError" in (r.last_error or "") for r in pending if r.message.step == "reserve"
    )
    broker.up()
    assert (await Relay(store, broker).run_once()).sent == 4
    assert [m.id for m in broker.messages("orders")] == ["r1:reserve:1", "r1:charge:1"]


async def test_optimistic_sending_waits_behind_an_unsent_message_of_its_key(
    store: SQLiteStore,
) -> None:
    """A message whose key has an earlier unsent message is left to the relay, in order."""
    await Completes().execute(store=store, saga_id="r0")  # pending, key order-1
    broker = MemoryBroker()
    await Completes().execute(store=store, broker=broker, saga_id="r1")
    assert broker.messages("orders") == []  # both keyed ones would have overtaken r0's
    assert {m.id for m in broker.messages("audit")} == {"r1:reserve:2", "r1:charge:2"}
    await Relay(store, broker).run_once()
    assert [m.id for m in broker.messages("orders")] == [
        "r0:reserve:1",
        "r0:charge:1",
        "r1:reserve:1",
        "r1:charge:1",
    ]


async def test_a_memory_store_keeps_the_same_rules() -> None:
    """memory:// gives an in-process outbox: optimistic sending and the relay work alike."""
    broker = MemoryBroker()
    broker.down()
    await Completes().execute(store="memory://", broker=broker, saga_id=f"m{time.time_ns()}")
    broker.up()
    relay = Relay("memory://", broker)
    while (await relay.run_once()).claimed:
        pass
    assert len(broker.messages("orders")) >= 2


def test_the_docs_page_example_prints_what_it_shows() -> None:
    """docs/optimistic-sending.md: its example runs and prints the text block after it."""
    import contextlib
    import io

    from test_docs import ROOT, blocks

    [(_, code), (_, shown), *_] = blocks(ROOT / "docs" / "optimistic-sending.md")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/optimistic-sending.md", "exec"), {"__name__": "__docs__"})
    assert out.getvalue().rstrip() == shown.rstrip()


class ReleaseFailsOnce(MemoryStore):
    """A memory store whose first ``outbox_release`` raises (its connection dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def outbox_release(
        self, ids: Sequence[str], owner: str, error: str | None = None
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("connection lost")
        await super().outbox_release(ids, owner, error)


class RefusesOnce(MemoryBroker):
    """A memory broker that refuses the first publish of the ids in ``refuse``."""

    def __init__(self, *refuse: str) -> None:
        super().__init__()
        self.refuse = set(refuse)

    async def publish(self, message: Message) -> None:
        if message.id in self.refuse:
            self.refuse.discard(message.id)
            raise BrokerError(f"refused {message.id}")
        await super().publish(message)


async def test_a_message_whose_release_failed_still_holds_back_its_key() -> None:
    """Its publish and its release failed: a later message of its key is not sent before it."""

    async def pay(ctx: Context) -> None:
        ctx.emit("payments", {"run": ctx.saga_id}, key="acct-1")

    class Pay(Saga):
        steps = (Step("pay", pay),)

    store, broker = ReleaseFailsOnce(), RefusesOnce("r1:pay:1")
    await Pay().execute(store=store, broker=broker, saga_id="r1")  # stays claimed by us
    await Pay().execute(store=store, broker=broker, saga_id="r2")  # claimed behind it
    assert broker.messages("payments") == []
    relay = Relay(store, broker, clock=FakeClock(start=time.time() + 3600))  # claims ran out
    while (await relay.run_once()).claimed:
        pass
    assert [m.id for m in broker.messages("payments")] == ["r1:pay:1", "r2:pay:1"]


async def test_runs_with_different_brokers_keep_their_key_in_order() -> None:
    """A message behind one of its key that another broker object is publishing waits for it."""
    log: list[str] = []
    publishing, refuse = asyncio.Event(), asyncio.Event()

    class Stuck(MemoryBroker):
        async def publish(self, message: Message) -> None:
            publishing.set()
            await refuse.wait()
            raise BrokerError("connection reset")

    class Logging(MemoryBroker):
        async def publish(self, message: Message) -> None:
            await super().publish(message)
            log.append(message.id)

    async def pay(ctx: Context) -> None:
        ctx.emit("payments", {"run": ctx.saga_id}, key="acct-1")

    class Pay(Saga):
        steps = (Step("pay", pay),)

    class Noting(MemoryStore):
        async def commit(self, commit: Commit) -> Sequence[str] | None:
            claimed = await super().commit(commit)
            if commit.run_id == "r2" and commit.messages:
                committed.set()
            return claimed

    committed = asyncio.Event()
    store, second = Noting(), Logging()
    first = asyncio.ensure_future(Pay().execute(store=store, broker=Stuck(), saga_id="r1"))
    await publishing.wait()  # r1's message is committed and being published
    then = asyncio.ensure_future(Pay().execute(store=store, broker=second, saga_id="r2"))
    await committed.wait()  # r2's is committed, claimed behind r1's
    refuse.set()
    await asyncio.gather(first, then)
    assert log == []  # r2's waited for r1's, which failed: both are the relay's now
    relay = Relay(store, second)
    while (await relay.run_once()).claimed:
        pass
    assert log == ["r1:pay:1", "r2:pay:1"]


def test_publishes_cut_short_by_a_failed_run_log_no_unretrieved_errors() -> None:
    """A run that raises is not drained; its cancelled publishes leave no asyncio noise."""
    import gc

    from helpers import FailingStore

    class Slow(MemoryBroker):
        async def publish(self, message: Message) -> None:
            await asyncio.sleep(10)

    async def scenario() -> None:
        with pytest.raises(StoreError, match="disk full"):  # the commit after emit_two's
            await Completes().execute(store=FailingStore(fail_at=3), broker=Slow(), saga_id="r1")

    seen: list[str] = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _, context: seen.append(context["message"]))
    try:
        loop.run_until_complete(scenario())
        left = asyncio.all_tasks(loop)  # what asyncio.run cancels on the way out
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    finally:
        loop.close()
    gc.collect()
    assert seen == []


async def test_messages_committed_before_a_store_failure_are_still_published() -> None:
    """A run stopped by a failing commit still lets its earlier messages reach the broker."""
    from helpers import FailingStore

    class SlowBroker(MemoryBroker):
        async def publish(self, message: Message) -> None:
            await asyncio.sleep(0.05)  # still confirming when the run fails
            await super().publish(message)

    broker = SlowBroker()
    store = FailingStore(fail_at=3)  # 1: start, 2: reserve's success and message, 3: fails
    with pytest.raises(StoreError, match="disk full"):
        await Completes().execute(store=store, broker=broker, saga_id="sf")
    assert [m.id for m in broker.messages("orders")] == ["sf:reserve:1"]


async def test_a_sender_closed_by_its_owner_has_settled_every_message(store: SQLiteStore) -> None:
    """``async with Sender(store, broker)`` ends once every message handed to it is marked sent,
    with nothing of it left running; the store and broker stay open."""
    from statesaga.messaging.sender import Sender
    from statesaga.store import RunRecord

    class Slow(MemoryBroker):
        async def publish(self, message: Message) -> None:
            await asyncio.sleep(0.05)
            await super().publish(message)

    now = time.time()
    run = RunRecord("s1", "S", "m:S", "f", {}, "running", {}, 0, "w", now + 60, now, now)
    batch = [Message(id=f"s1:a:{n}", topic="orders", payload={"n": n}, key="k") for n in range(3)]
    commit = Commit("s1", 0, "w", "running", {}, [], [], now, create=run, messages=batch)
    claimed = await store.commit(attrs.evolve(commit, claim_until=now + 30))
    assert claimed is not None
    assert len(claimed) == 3
    broker = Slow()
    before = asyncio.all_tasks()
    async with Sender(store, broker) as sender:
        sender.send(batch, claimed, "w", now + 30)
    assert asyncio.all_tasks() == before
    assert [m.id for m in broker.messages("orders")] == [m.id for m in batch]
    assert {r.status for r in await store.outbox_list()} == {"sent"}
