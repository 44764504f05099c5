"""``statesaga ui --allow-actions`` on runs: what a signal or a cancellation answers and what
the run page then offers, what a resume answers (how the run ended, and why not when it
cannot drive the run), on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from starlette.testclient import TestClient
from test_ui import BROKEN, plain_run
from test_ui_actions import client, filled, status, token

from statesaga import Retry, Saga, Step
from statesaga.store import store_from_url
from statesaga.ui import actions

__all__ = ["client", "filled"]  # the fixtures, shared

#: ``ship`` fails while ``fail`` is set; otherwise it waits for ``GATE``.
SHIP = {"fail": True}
GATE = threading.Event()


async def charge(ctx: Any) -> None:
    return None


async def ship(ctx: Any) -> None:
    if SHIP["fail"]:
        raise RuntimeError("no courier")
    await asyncio.to_thread(GATE.wait, 20)


class ShipSaga(Saga):
    """Charge (the pivot), then ship: a failed ship is pushed forward by a resume."""

    steps = (Step("charge", charge, pivot=True), Step("ship", ship, retry=Retry(attempts=1)))


def post(client: TestClient, action: str, **data: str) -> Any:
    return client.post(f"/actions/{action}", data={"csrf": token(client, "/outbox"), **data})


def offered(client: TestClient, run_id: str) -> set[str]:
    """The ids of the action buttons and notes the run's page shows."""
    html = client.get(f"/runs/{run_id}").text
    ids = ("resume", "signal", "cancel", "due", "cancel-requested")
    return {name for name in ids if f'id="{name}"' in html}


def test_a_signal_says_what_moves_the_run_on_and_resume_is_offered(client: TestClient) -> None:
    """A signal's answer says who drives the run on; its page then says it is due, offers
    resume and no signal for the wait already signalled; the resume drives it to its end."""
    assert offered(client, "wait-1") == {"signal", "cancel"}  # waiting for a signal: not due
    answer = post(client, "signal", run_id="wait-1", event="approval", payload="{}")
    assert answer.status_code == 200
    text = " ".join(answer.text.split())
    assert "signal &#39;approval&#39; accepted" in text
    for driver in ("statesaga worker` on this store", "the process that started it", "resume"):
        assert driver in text, driver
    assert offered(client, "wait-1") == {"resume", "cancel", "due"}
    resumed = post(client, "resume", run_id="wait-1")
    assert (resumed.status_code, "wait-1: completed" in resumed.text) == (200, True)
    assert status(client, "wait-1") == "completed"
    assert offered(client, "wait-1") == set()


def test_a_cancel_request_is_said_and_resume_compensates_the_run(client: TestClient) -> None:
    """After a cancel request the page says so, offers no signal or cancel again but resume,
    which compensates the run."""
    answer = post(client, "cancel", run_id="wait-2")
    assert answer.status_code == 200
    assert "wait-2: cancellation requested. The run is compensated when" in answer.text
    assert offered(client, "wait-2") == {"resume", "cancel-requested"}
    again = post(client, "cancel", run_id="wait-2")
    assert "already requested" in again.text
    resumed = post(client, "resume", run_id="wait-2")
    assert "wait-2: compensated" in resumed.text
    assert status(client, "wait-2") == "compensated"


def test_a_failed_resume_says_what_failed(client: TestClient) -> None:
    """A resume that ends failed says which step failed, with what, and which compensation."""
    BROKEN["compensation"] = True
    try:
        answer = post(client, "resume", run_id="failed-1")
    finally:
        BROKEN["compensation"] = False
    assert answer.status_code == 200
    assert "failed-1: failed (charge failed: " in answer.text
    assert "; compensating reserve failed: RuntimeError: &lt;script&gt;" in answer.text


def test_a_second_resume_while_this_inspector_drives_the_run_says_so(
    client: TestClient, filled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an earlier resume drives a run in the background, another is refused (409)
    saying the inspector drives it already; once it ended, a resume answers again."""

    async def failed_run() -> None:
        async with store_from_url(filled) as store:
            await ShipSaga().execute(store=store, saga_id="ship-1")

    SHIP["fail"] = True
    asyncio.run(failed_run())
    assert status(client, "ship-1") == "failed"
    monkeypatch.setattr(actions, "RESUME_WAIT", 0.2)
    SHIP["fail"] = False
    GATE.clear()
    try:
        first = post(client, "resume", run_id="ship-1")
        assert "ship-1: resuming; it goes on in this server" in first.text
        second = post(client, "resume", run_id="ship-1")
        assert second.status_code == 409
        assert "this inspector is already driving it" in second.text
        assert "reload its page" in second.text
        assert "--wait" not in second.text
    finally:
        GATE.set()
    deadline = time.monotonic() + 10
    while status(client, "ship-1") != "completed":
        assert time.monotonic() < deadline, "the background resume never finished"
        time.sleep(0.05)
    for _ in range(100):  # its task is let go of right after it commits the end
        if "ship-1" not in client.app.state.inspector.driving:  # type: ignore[attr-defined]
            break
        time.sleep(0.02)
    assert "ship-1: completed" in post(client, "resume", run_id="ship-1").text


def test_a_saga_that_cannot_be_imported_says_where_to_start_the_inspector(
    client: TestClient, filled: str
) -> None:
    """Resuming or signalling a run whose saga this process cannot import is refused with
    where to start `statesaga ui`, not with advice for code or workers."""

    async def foreign() -> None:
        async with store_from_url(filled) as store:
            await store.create(plain_run("far-1", time.time(), status="running"))
            await store.create(plain_run("far-2", time.time(), status="waiting"))

    asyncio.run(foreign())
    for action, run_id in (("resume", "far-1"), ("signal", "far-2")):
        answer = post(client, action, run_id=run_id, event="approval")
        assert answer.status_code == 409, answer.text
        text = " ".join(answer.text.split())
        assert f"run {run_id}: its saga nowhere.at.all:Bulk cannot be imported" in text
        assert "start `statesaga ui` from the folder where that module can be imported" in text
        assert "PYTHONPATH" in text
        assert "resume(store" not in text


def test_a_run_another_process_drives_is_refused_with_its_lease(
    client: TestClient, filled: str
) -> None:
    """A resume of a run whose live lease another process holds says so and until when,
    without the command line's --wait advice."""

    async def leased() -> None:
        async with store_from_url(filled) as store:
            await ShipSaga().execute(store=store, saga_id="held-1")  # fails at ship
            await store.acquire("held-1", "elsewhere", time.time() + 3600, time.time())

    SHIP["fail"] = True
    asyncio.run(leased())
    answer = post(client, "resume", run_id="held-1")
    assert answer.status_code == 409
    text = " ".join(answer.text.split())
    assert "held-1: another process is driving it (its lease, held by elsewhere, runs until" in text
    assert "--wait" not in text
