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
    """A signal with a JSON payload is accepted; a bad payload is a bad parameter (400); an
    unknown run is a 404; cancel is asked."""
    csrf = token(client, "/runs/wait-1")
    for payload in ("[1]", "{nope"):
        bad = client.post(
            "/actions/signal",
            data={"run_id": "wait-1", "event": "approval", "payload": payload, "csrf": csrf},
        )
        assert bad.status_code == 400, payload
        assert "payload" in bad.text
    empty = client.post("/actions/signal", data={"run_id": "wait-1", "event": "", "csrf": csrf})
    assert (empty.status_code, "the form has no event" in empty.text) == (400, True)
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
    assert unknown.status_code == 404
    assert "no run &#39;nope&#39; in this store" in unknown.text
    wrong = client.post("/actions/signal", data={"run_id": "wait-1", "event": "x", "csrf": csrf})
    assert wrong.status_code == 409  # the run's saga has no such wait: its state refuses it


def test_an_unknown_run_is_404_for_every_run_action(client: TestClient) -> None:
    """resume, signal and cancel of a run the store does not have answer 404, as its page does."""
    csrf = token(client, "/outbox")
    for action in ("resume", "signal", "cancel"):
        data = {"run_id": "nope", "event": "approval", "csrf": csrf}
        answer = client.post(f"/actions/{action}", data=data)
        assert answer.status_code == 404, (action, answer.text)
        assert "no run &#39;nope&#39; in this store" in answer.text
    assert client.get("/runs/nope").status_code == 404


def test_retry_and_purge_dead_messages(client: TestClient) -> None:
    """A dead message is listed, requeued by retry; purge deletes dead ones by age."""
    html = client.get("/outbox").text
    assert "broker down" in html
    assert "/actions/retry" in html
    csrf = token(client, "/outbox")
    answer = client.post("/actions/retry", data={"message_id": "m1", "csrf": csrf})
    assert "requeued" in answer.text
    again = client.post("/actions/retry", data={"message_id": "nope", "csrf": csrf})
    assert again.status_code == 404
    assert "nope: not requeued: no such message" in again.text
    purge = client.post("/actions/purge", data={"days": "0", "csrf": csrf})
    assert "deleted 1 dead message " in purge.text
    assert list(outbox(client)) == ["m3", "m1"]  # m2 went; m1 was requeued


@pytest.mark.parametrize("days", ["soon", "-1", "", " ", "inf", "-inf", "nan", "1e400"])
def test_purge_by_age_refuses_what_is_no_number_of_days(client: TestClient, days: str) -> None:
    """days that are no finite number, 0 or more, are a bad parameter (400); nothing goes."""
    bad = client.post("/actions/purge", data={"days": days, "csrf": token(client, "/outbox")})
    assert bad.status_code == 400, bad.text
    assert "days" in bad.text
    assert "deleted" not in bad.text
    assert list(outbox(client)) == ["m2", "m1", "m3"]


def test_purge_one_dead_message_by_id(client: TestClient) -> None:
    """Each dead message has a purge button that deletes it alone; a pending one has none, and
    purging it by id is refused and deletes nothing."""
    assert outbox(client) == {"m2": ["retry", "purge"], "m1": ["retry", "purge"], "m3": ["retry"]}
    csrf = token(client, "/outbox")
    purged = client.post("/actions/purge", data={"message_id": "m1", "csrf": csrf})
    assert (purged.status_code, "m1: deleted" in purged.text) == (200, True)
    assert outbox(client) == {"m2": ["retry", "purge"], "m3": ["retry"]}
    pending = client.post("/actions/purge", data={"message_id": "m3", "csrf": csrf})
    assert pending.status_code == 409
    assert "m3: not deleted: it is pending, still to be delivered" in pending.text
    for message_id in ("m1", "nope"):  # gone already, unknown
        refused = client.post("/actions/purge", data={"message_id": message_id, "csrf": csrf})
        assert refused.status_code == 404
        assert f"{message_id}: not deleted: no such message" in refused.text
    both = client.post("/actions/purge", data={"message_id": "m2", "days": "0", "csrf": csrf})
    assert (both.status_code, "not both" in both.text) == (400, True)
    assert list(outbox(client)) == ["m2", "m3"]


def test_refusals_of_a_sent_message_say_it_was_sent(client: TestClient, filled: str) -> None:
    """Retrying or purging a sent message is refused (409) saying it was sent: the store is
    asked for the messages of the run the form names (the outbox page's buttons name it as
    of_run, a run page's as run_id)."""

    async def send_m3() -> None:
        async with store_from_url(filled) as store:
            [m3] = await store.outbox_claim("relay", time.time(), time.time() + 60)
            await store.outbox_mark_sent([m3.id], time.time())

    asyncio.run(send_m3())
    csrf = token(client, "/outbox")
    for extra in ({"of_run": "r1"}, {"run_id": "r1"}):
        retry = client.post("/actions/retry", data={"message_id": "m3", "csrf": csrf, **extra})
        assert retry.status_code == 409
        assert "m3: not requeued: it was sent already, at " in retry.text
    purge = client.post("/actions/purge", data={"message_id": "m3", "of_run": "r1", "csrf": csrf})
    assert purge.status_code == 409
    assert "m3: not deleted: it was sent at " in purge.text
    assert "it is not dead" in purge.text


def test_message_buttons_name_the_messages_run(client: TestClient) -> None:
    """Each retry and purge form carries the run of its message, where the refusal looks."""
    forms = re.findall(
        r'<form method="post" action="/actions/(?:retry|purge)">(.*?)</form>',
        client.get("/outbox").text,
    )
    assert len(forms) == 5  # m1 and m2: retry and purge; m3: retry
    assert all('name="of_run" value="r1"' in form for form in forms)


def test_pending_messages_held_behind_a_dead_one_are_marked(
    client: TestClient, filled: str
) -> None:
    """A pending message of a key whose earlier message is dead is marked as held behind it,
    on the outbox page; others are not."""

    async def keyed() -> None:
        async with store_from_url(filled) as store:
            from test_store_contract import make_commit, make_run

            messages = [
                Message(id=f"k{n}", topic=topic, payload={}, key="k", saga_id="r2", step="s")
                for n, topic in ((1, "orders"), (2, "orders"), (3, "billing"))
            ]
            commit = make_commit("r2", messages=messages, create=make_run("r2"))
            await store.commit(commit)
            claimed = await store.outbox_claim("relay", time.time(), time.time() + 60)
            assert [r.id for r in claimed] == ["m3", "k1", "k2", "k3"]
            await store.outbox_mark_failed("k1", "relay", "refused", 0.0, dead=True)
            await store.outbox_release(["m3", "k2", "k3"], "relay")

    asyncio.run(keyed())
    rows = dict(
        re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", client.get("/outbox").text, re.DOTALL)
    )
    for held in ("k2", "k3"):  # another topic, the same key: held all the same
        assert "held behind k1" in rows[held], rows[held]
    for free in ("m3", "k1", "m1"):
        assert "held behind" not in rows[free]


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


def test_a_post_to_a_page_or_the_api_is_405_in_its_own_form(filled: str) -> None:
    """The pages and the API answer GET only: a POST to the API is a JSON error, to a page an
    error page, each saying where actions go."""
    with TestClient(create_app(filled)) as read_only:
        api = read_only.post("/api/runs")
        assert api.status_code == 405
        assert api.json()["error"] == "method not allowed"
        assert "/actions/" in api.json()["detail"]
        page = read_only.post("/")
        assert page.status_code == 405
        assert "text/html" in page.headers["content-type"]
        assert "GET only" in page.text
