"""``statesaga ui --allow-actions``: each action does what its command does, only with the
form's CSRF token, and is logged."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from starlette.testclient import TestClient
from test_ui import BROKEN, SECRET, EvilSaga, WaitingSaga

from statesaga.messaging.message import Message
from statesaga.store import store_from_url
from statesaga.ui.app import create_app


def fill(url: str) -> None:
    """A failed run (its compensation failed), waiting runs, two dead messages (m1, m2) and a
    pending one (m3)."""

    async def run() -> None:
        async with store_from_url(url) as store:
            BROKEN["compensation"] = True
            try:
                await EvilSaga(note="x").execute(store=store, saga_id="failed-1")
            finally:
                BROKEN["compensation"] = False
            await WaitingSaga(n=1).start(store=store, saga_id="wait-1")
            await WaitingSaga(n=2).start(store=store, saga_id="wait-2")
            for run_id in ("wait-1", "wait-2"):
                for _ in range(1000):
                    if (await store.load(run_id)).run.status == "waiting":
                        break
                    await asyncio.sleep(0.01)
            from test_store_contract import make_commit, make_run

            messages = [
                Message(id=f"m{n}", topic="orders", payload={"n": n}, saga_id="r1", step="s")
                for n in (1, 2, 3)
            ]
            await store.commit(attrs.evolve(make_commit(), messages=messages, create=make_run()))
            claimed = await store.outbox_claim("relay", time.time(), time.time() + 60)
            for dead in ("m1", "m2"):
                await store.outbox_mark_failed(dead, "relay", "broker down", 0.0, dead=True)
            await store.outbox_release([r.id for r in claimed], "relay")  # m3 stays pending

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a store of each durable backend, filled by ``fill``."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'actions.db'}"
    else:
        from test_store_postgres import URL, new_schema, require_server

        require_server()
        schema = new_schema()
        url = URL.replace("postgres@", f"postgres:{SECRET}@") + f"?schema={schema}"
    try:
        fill(url)
        yield url
    finally:
        if schema is not None:
            from test_store_postgres import drop_schema

            drop_schema(schema)


@pytest.fixture
def client(filled: str) -> Iterator[TestClient]:
    """An inspector with actions on, of a store filled by ``fill``."""
    with TestClient(create_app(filled, allow_actions=True)) as test_client:
        yield test_client


def outbox(client: TestClient) -> dict[str, list[str]]:
    """The messages the outbox page lists, by id, with the actions each one's row offers."""
    rows = re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", client.get("/outbox").text, re.DOTALL)
    return {message_id: re.findall(r'action="/actions/(\w+)"', row) for message_id, row in rows}


def token(client: TestClient, page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)
    assert found is not None, f"no action form on {page}"
    return found.group(1)


def status(client: TestClient, run_id: str) -> str:
    return str(client.get(f"/api/runs/{run_id}").json()["run"]["status"])


def test_a_post_without_the_token_is_refused(client: TestClient) -> None:
    """No token, or a wrong one, is a 403 and changes nothing."""
    for data in ({"run_id": "wait-1"}, {"run_id": "wait-1", "csrf": "forged"}):
        answer = client.post("/actions/cancel", data=data)
        assert answer.status_code == 403
        assert "token" in answer.text
    assert status(client, "wait-1") == "waiting"


def test_resume_finishes_a_failed_run(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Resume retries a failed run's compensations; the action is logged."""
    html = client.get("/runs/failed-1").text
    assert "retry compensations" in html
    with caplog.at_level(logging.INFO, logger="statesaga.ui"):
        answer = client.post(
            "/actions/resume", data={"run_id": "failed-1", "csrf": token(client, "/runs/failed-1")}
        )
    assert answer.status_code == 200
    assert "failed-1: compensated" in answer.text
    assert status(client, "failed-1") == "compensated"
    assert any("resume" in r.getMessage() and "failed-1" in r.getMessage() for r in caplog.records)


def test_signal_and_cancel_a_waiting_run(client: TestClient) -> None:
    """A signal with a JSON payload is accepted; a bad payload is refused; cancel is asked."""
    csrf = token(client, "/runs/wait-1")
    bad = client.post(
        "/actions/signal",
        data={"run_id": "wait-1", "event": "approval", "payload": "[1]", "csrf": csrf},
    )
    assert bad.status_code == 409
    assert "JSON object" in bad.text
    good = client.post(
        "/actions/signal",
        data={"run_id": "wait-1", "event": "approval", "payload": '{"ok": true}', "csrf": csrf},
    )
    assert good.status_code == 200
    assert "accepted" in good.text
    signals = client.get("/api/runs/wait-1").json()["signals"]
    assert [(s["event"], s["payload"]) for s in signals] == [("approval", {"ok": True})]
    cancel = client.post("/actions/cancel", data={"run_id": "wait-2", "csrf": csrf})
    assert "cancellation requested" in cancel.text
    unknown = client.post("/actions/signal", data={"run_id": "nope", "event": "a", "csrf": csrf})
    assert unknown.status_code == 409


def test_retry_and_purge_dead_messages(client: TestClient) -> None:
    """A dead message is listed, requeued by retry; purge deletes dead ones by age."""
    html = client.get("/outbox").text
    assert "broker down" in html
    assert "/actions/retry" in html
    csrf = token(client, "/outbox")
    answer = client.post("/actions/retry", data={"message_id": "m1", "csrf": csrf})
    assert "requeued" in answer.text
    again = client.post("/actions/retry", data={"message_id": "nope", "csrf": csrf})
    assert again.status_code == 409
    purge = client.post("/actions/purge", data={"days": "0", "csrf": csrf})
    assert "deleted 1 dead message " in purge.text
    assert list(outbox(client)) == ["m3", "m1"]  # m2 went; m1 was requeued
    bad = client.post("/actions/purge", data={"days": "soon", "csrf": csrf})
    assert bad.status_code == 409


def test_purge_one_dead_message_by_id(client: TestClient) -> None:
    """Each dead message has a purge button that deletes it alone; a pending one has none, and
    purging it by id is refused and deletes nothing."""
    assert outbox(client) == {"m2": ["retry", "purge"], "m1": ["retry", "purge"], "m3": ["retry"]}
    csrf = token(client, "/outbox")
    purged = client.post("/actions/purge", data={"message_id": "m1", "csrf": csrf})
    assert (purged.status_code, "m1: deleted" in purged.text) == (200, True)
    assert outbox(client) == {"m2": ["retry", "purge"], "m3": ["retry"]}
    for message_id in ("m3", "m1", "nope"):  # pending, gone already, unknown
        refused = client.post("/actions/purge", data={"message_id": message_id, "csrf": csrf})
        assert refused.status_code == 409
        assert f"{message_id}: not deleted (no such dead message)" in refused.text
    both = client.post("/actions/purge", data={"message_id": "m2", "days": "0", "csrf": csrf})
    assert (both.status_code, "not both" in both.text) == (409, True)
    assert list(outbox(client)) == ["m2", "m3"]


def test_purge_by_id_needs_allow_actions(filled: str) -> None:
    """Without allow_actions there is no purge button, and a purge by id is refused (403)."""
    with TestClient(create_app(filled)) as read_only:
        assert outbox(read_only) == {"m2": [], "m1": [], "m3": []}
        assert "/actions/" not in read_only.get("/runs/r1").text
        refused = read_only.post("/actions/purge", data={"message_id": "m1", "csrf": "x"})
        assert refused.status_code == 403
        assert list(outbox(read_only)) == ["m2", "m1", "m3"]


def test_a_run_page_offers_its_messages_actions(client: TestClient) -> None:
    """A run's page has the retry and purge buttons of its own pending and dead messages, and
    the answer links back to the run."""
    rows = re.findall(r"<tr><td>(m\d)</td>(.*?)</tr>", client.get("/runs/r1").text, re.DOTALL)
    offered = {m: re.findall(r'action="/actions/(\w+)"', row) for m, row in rows}
    assert offered == {"m1": ["retry", "purge"], "m2": ["retry", "purge"], "m3": ["retry"]}
    csrf = token(client, "/runs/r1")
    purged = client.post("/actions/purge", data={"message_id": "m2", "run_id": "r1", "csrf": csrf})
    assert purged.status_code == 200
    assert 'id="back" href="/runs/r1"' in purged.text
    assert set(outbox(client)) == {"m1", "m3"}
