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
    """A failed run (its compensation failed), a waiting run and a dead message."""

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

            message = Message(id="m1", topic="orders", payload={"n": 1}, saga_id="r1", step="s")
            await store.commit(attrs.evolve(make_commit(), messages=[message], create=make_run()))
            [claimed] = await store.outbox_claim("relay", time.time(), time.time() + 60)
            await store.outbox_mark_failed(claimed.id, "relay", "broker down", 0.0, dead=True)

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """An inspector with actions on, of a store filled by ``fill``."""
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
        with TestClient(create_app(url, allow_actions=True)) as test_client:
            yield test_client
    finally:
        if schema is not None:
            from test_store_postgres import drop_schema

            drop_schema(schema)


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
    assert "deleted 0 dead messages" in purge.text
    bad = client.post("/actions/purge", data={"days": "soon", "csrf": csrf})
    assert bad.status_code == 409
