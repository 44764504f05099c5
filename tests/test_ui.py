"""``statesaga ui``: every page and API route against real SQLite and PostgreSQL stores, what
they show escaped, and their errors (an unknown run, bad parameters, a store that goes away)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from statesaga import Retry, Saga, Step, Wait
from statesaga.store import SagaStore, StepRecord, store_from_url
from statesaga.store.base import Commit, RunRecord, TransitionRecord
from statesaga.ui.app import create_app

XSS = "<script>alert('{}')</script>"
#: A password the pages must never show (PostgreSQL's test server trusts every login).
SECRET = "hunter2secret"


async def reserve(ctx: Any) -> dict[str, Any]:
    return {"note": XSS.format("result")}


async def release(ctx: Any) -> None:
    if BROKEN["compensation"]:
        raise RuntimeError(XSS.format("compensation"))


async def charge(ctx: Any) -> dict[str, Any]:
    raise RuntimeError(XSS.format("error"))


#: Whether ``release`` fails (a failed run, which a resume finishes once it works).
BROKEN = {"compensation": False}


class EvilSaga(Saga):
    """A saga whose input, result and error carry script tags."""

    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", charge, retry=Retry(attempts=1)),
    )


class WaitingSaga(Saga):
    """A saga that waits for an approval."""

    steps = (Step("reserve", reserve, compensate=release), Wait("approval"))


def run_in_store(url: str) -> dict[str, str]:
    """Fill the store at ``url``: a compensated run, a failed one, a waiting one, a run of a
    saga that cannot be imported with HTML step names, a running run whose lease ran out and
    one whose lease holds, and enough runs for three pages."""

    async def fill() -> dict[str, str]:
        store = store_from_url(url)
        async with store:
            ids = {}
            await EvilSaga(note=XSS.format("input")).execute(store=store, saga_id="evil-1")
            ids["compensated"] = "evil-1"
            BROKEN["compensation"] = True
            try:
                await EvilSaga(note="x").execute(store=store, saga_id="failed-1")
            finally:
                BROKEN["compensation"] = False
            ids["failed"] = "failed-1"
            await WaitingSaga(n=1).start(store=store, saga_id="wait-1")
            for _ in range(1000):  # the run parks in a moment
                if (await store.load("wait-1")).run.status == "waiting":
                    break
                await asyncio.sleep(0.01)
            ids["waiting"] = "wait-1"
            await foreign_run(store)
            for run_id, expires in (("lease-gone", -60), ("lease-live", 3600)):
                lease = {"lease_owner": f"w-{run_id}", "lease_expires": time.time() + expires}
                await store.create(
                    plain_run(run_id, 500.0, saga="Leases", status="running", **lease)
                )
            for n in range(120):
                await store.create(plain_run(f"bulk-{n:03}", 1_000.0 + n))
            return ids

    return asyncio.run(fill())


def plain_run(run_id: str, created: float, **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "saga": "Bulk",
        "saga_path": "nowhere.at.all:Bulk",
        "fingerprint": "0" * 16,
        "input": {},
        "status": "completed",
        "config": {},
        "version": 0,
        "lease_owner": None,
        "lease_expires": None,
        "created_at": created,
        "updated_at": created,
    }
    fields.update(changes)
    return RunRecord(**fields)


async def foreign_run(store: SagaStore) -> None:
    """A run of a saga this process cannot import, with HTML in its step names and errors."""
    step = XSS.format("step")
    await store.create(
        plain_run(
            "foreign-1", time.time() - 5, status="running", lease_owner="w", saga=XSS.format("saga")
        )
    )
    await store.commit(
        Commit(
            run_id="foreign-1",
            version=0,
            lease_owner="w",
            status="failed",
            config={},
            steps=[StepRecord(step, "failed", 2, error=XSS.format("step-error"))],
            transitions=[TransitionRecord(1, f"{step}.fail", "a", "b", 1.0, 2, XSS.format("h"))],
            updated_at=time.time(),
            failed_step=step,
            error=XSS.format("run-error"),
        )
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A store URL of each durable backend, filled by ``run_in_store``, and its runs' ids."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'ui.db'}"
        yield url, run_in_store(url)
        return
    from test_store_postgres import URL, drop_schema, new_schema, require_server

    require_server()
    schema = new_schema()
    url = URL.replace("postgres@", f"postgres:{SECRET}@") + f"?schema={schema}"
    try:
        yield url, run_in_store(url)
    finally:
        drop_schema(schema)


@pytest.fixture
def client(backend: tuple[str, dict[str, str]]) -> Iterator[TestClient]:
    """A read-only inspector of ``backend``."""
    with TestClient(create_app(backend[0])) as test_client:
        yield test_client


def unescaped(html: str) -> list[str]:
    """The script tags in ``html`` other than the page's own."""
    return [tag for tag in re.findall(r"<script[^>]*>", html) if "/static/live.js" not in tag]


def test_runs_page_lists_newest_first_with_counts_and_escapes(client: TestClient) -> None:
    """/ lists runs newest first, counts them by status, and shows no markup from the data."""
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert unescaped(html) == []
    assert "&lt;script&gt;alert(&#39;saga&#39;)&lt;/script&gt;" in html  # a saga name
    assert "waiting 1" in html
    assert "failed 2" in html
    assert "compensated 1" in html
    assert html.index("wait-1") < html.index("failed-1") < html.index("evil-1")  # newest first
    assert SECRET not in html
    assert "store " in html


def test_runs_page_filters(client: TestClient) -> None:
    """Status, saga, run id and time filters each narrow the list."""
    waiting = client.get("/", params={"status": "waiting"}).text
    assert "wait-1" in waiting
    assert "evil-1" not in waiting
    assert "approval" in waiting
    assert "evil-1" not in client.get("/", params={"saga": "Bulk"}).text
    found = client.get("/", params={"run": "bulk-11"}).text
    assert "bulk-110" in found
    assert "bulk-119" in found
    assert "bulk-100" not in found
    early = client.get("/", params={"until": "1970-01-01T00:18:00", "saga": "Bulk"}).text
    assert "bulk-079" in early
    assert "bulk-080" not in early
    assert "evil-1" in client.get("/", params={"since": str(time.time() - 3600)}).text


def test_pagination_walks_every_run_once(client: TestClient) -> None:
    """Following "next page" visits every run once, 50 to a page."""
    seen: list[str] = []
    url = "/?saga=Bulk"
    while True:
        html = client.get(url).text
        seen += re.findall(r'href="/runs/(bulk-\d+)"', html)
        found = re.search(r'id="next-page" href="([^"]+)"', html)
        if found is None:
            break
        url = found.group(1).replace("&amp;", "&")
    assert seen == [f"bulk-{n:03}" for n in reversed(range(120))]


def test_bad_parameters_are_400(client: TestClient) -> None:
    """An unknown status, a bad time or cursor is a 400 that says what is wrong."""
    for params, says in (
        ({"status": "lost"}, "is not one of"),
        ({"since": "yesterday"}, "ISO 8601"),
        ({"after": "nope"}, "cursor"),
    ):
        page = client.get("/", params=params)
        assert page.status_code == 400
        assert says in page.text
        assert client.get("/api/runs", params=params).status_code == 400


def test_run_page_shows_diagram_steps_history_and_json_escaped(
    client: TestClient, backend: tuple[str, dict[str, str]]
) -> None:
    """/runs/{id}: the path on the diagram, steps, history, input and results, all escaped."""
    html = client.get("/runs/evil-1").text
    assert unescaped(html) == []
    assert "<svg" in html
    assert "#e08a00" in html
    assert "&lt;script&gt;alert(&#39;input&#39;)" in html
    assert "&lt;script&gt;alert(&#39;result&#39;)" in html
    assert "&lt;script&gt;alert(&#39;error&#39;)" in html
    assert 'id="steps"' in html
    assert 'id="history"' in html
    assert "reserve.compensate" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "<script" not in svg
    assert "&lt;script" in svg
    assert 'id="live"' in html
    assert 'data-finished="true"' in html


def test_run_of_a_saga_that_cannot_be_imported_says_so(client: TestClient) -> None:
    """A run whose saga cannot be imported has no diagram, says why, and escapes its steps."""
    html = client.get("/runs/foreign-1").text
    assert unescaped(html) == []
    assert "cannot be imported here" in html
    assert "<svg" not in html
    for what in ("step", "step-error", "h", "run-error"):
        assert f"&lt;script&gt;alert(&#39;{what}&#39;)" in html


def test_live_fragment_and_waiting_run(client: TestClient) -> None:
    """?fragment=1 gives only the part that moves; a waiting run says what it waits for."""
    fragment = client.get("/runs/wait-1", params={"fragment": "1"}).text
    assert fragment.lstrip().startswith('<section id="live"')
    assert "approval" in fragment
    assert "<html" not in fragment


def test_unknown_run_is_404(client: TestClient) -> None:
    """An unknown run id is a 404 page (and a 404 in the API)."""
    page = client.get("/runs/<b>nope</b>")
    assert page.status_code == 404
    assert "&lt;b&gt;nope" in page.text
    assert client.get("/api/runs/nope").status_code == 404
    assert client.get("/nowhere").status_code == 404


def test_sagas_page(client: TestClient) -> None:
    """/sagas: each saga, drawn when it imports, with its runs by status."""
    html = client.get("/sagas").text
    assert unescaped(html) == []
    assert html.count("<svg") == 2  # EvilSaga and WaitingSaga; the others cannot be drawn
    assert "nowhere.at.all:Bulk" in html
    assert "cannot be imported here" in html
    assert "completed 120" in html


def test_outbox_page_without_messages(client: TestClient) -> None:
    """/outbox says when there is nothing pending or dead."""
    assert 'id="outbox-empty"' in client.get("/outbox").text


def test_api(client: TestClient) -> None:
    """/api/runs pages with a cursor, /api/runs/{id} gives a run in full, /api/sagas the sagas."""
    first = client.get("/api/runs", params={"saga": "Bulk"}).json()
    assert len(first["runs"]) == 50
    assert first["counts"] == {"completed": 120}
    second = client.get("/api/runs", params={"saga": "Bulk", "after": first["next"]}).json()
    assert second["runs"][0]["run_id"] == "bulk-069"
    run = client.get("/api/runs/evil-1").json()
    assert run["run"]["input"] == {"note": XSS.format("input")}
    assert [s["step"] for s in run["steps"]] == ["reserve", "charge"]  # the run's order
    assert run["history"][0]["seq"] == 1
    sagas = {s["saga"]: s for s in client.get("/api/sagas").json()["sagas"]}
    assert sagas["Bulk"]["total"] == 120


def test_no_action_without_allow_actions(client: TestClient) -> None:
    """Without --allow-actions no action button is shown and every POST is 403."""
    html = client.get("/runs/failed-1").text
    assert "/actions/" not in html
    assert 'name="csrf"' not in html
    for name in ("resume", "signal", "cancel", "retry", "purge"):
        assert client.post(f"/actions/{name}", data={"run_id": "failed-1"}).status_code == 403


def test_missing_sqlite_store_is_an_error_page_and_is_not_created(tmp_path: Path) -> None:
    """A SQLite file that does not exist is an error page, and no file is made."""
    path = tmp_path / "missing.db"
    with TestClient(create_app(f"sqlite:///{path}")) as test_client:
        page = test_client.get("/")
        assert page.status_code == 503
        assert "missing.db" in page.text
        assert test_client.get("/api/runs").status_code == 503
    assert not path.exists()


def test_store_that_goes_away_is_an_error_page_and_serving_goes_on(tmp_path: Path) -> None:
    """A store whose tables vanish is a 503 page; once it is back, pages work again."""
    path = tmp_path / "gone.db"
    url = f"sqlite:///{path}"
    asyncio.run(_create(url))
    with TestClient(create_app(url)) as test_client:
        assert "no-runs" in test_client.get("/").text
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE statesaga_runs RENAME TO statesaga_runs_away")
        page = test_client.get("/")
        assert page.status_code == 503
        assert "cannot be read" in page.text
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE statesaga_runs_away RENAME TO statesaga_runs")
        assert test_client.get("/").status_code == 200


async def _create(url: str, *run_ids: str) -> None:
    async with store_from_url(url) as store:
        for run_id in run_ids:
            await store.create(plain_run(run_id, time.time()))


def test_a_deleted_or_replaced_sqlite_file_is_noticed(tmp_path: Path) -> None:
    """The SQLite file deleted while served is a 503 page (not reads from the unlinked file);
    a new file at its path is opened, and so is one moved over it."""
    path = tmp_path / "runs.db"
    url = f"sqlite:///{path}"
    asyncio.run(_create(url, "first-1"))
    with TestClient(create_app(url)) as test_client:
        assert "first-1" in test_client.get("/").text
        for name in ("runs.db", "runs.db-wal", "runs.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        gone = test_client.get("/")
        assert gone.status_code == 503
        assert "no such file" in gone.text
        asyncio.run(_create(url, "second-1"))
        again = test_client.get("/").text
        assert "second-1" in again
        assert "first-1" not in again
        other = tmp_path / "other.db"
        asyncio.run(_create(f"sqlite:///{other}", "third-1"))
        other.replace(path)  # the old -wal and -shm files go with the file they belong to
        for name in ("runs.db-wal", "runs.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        moved = test_client.get("/").text
        assert "third-1" in moved
        assert "second-1" not in moved


def test_pages_carry_a_content_security_policy(client: TestClient) -> None:
    """Every page forbids inline scripts and framing."""
    policy = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_a_time_past_any_calendar_is_shown_as_seconds() -> None:
    """A stored time no calendar date fits (a foreign row's, a test clock's lease) is shown as
    seconds since 1970 rather than failing the page or the command."""
    from statesaga.cli._common import when

    assert when(1_000.0) == "1970-01-01 00:16:40"
    assert when(1e12) == "1e+12 s after 1970 (no calendar date)"
    assert when(float("inf")) == "inf s after 1970 (no calendar date)"


def test_a_waiting_runs_page_keeps_following_it_slowly(client: TestClient) -> None:
    """A waiting run's page goes on refreshing (every 10 s, a signal or timer moves it on); a
    finished run's stops."""
    waiting = client.get("/runs/wait-1").text
    assert 'data-finished="false" data-pace="10000"' in waiting
    finished = client.get("/runs/failed-1").text
    assert 'data-finished="true"' in finished


def test_an_expired_lease_is_shown_as_expired(client: TestClient) -> None:
    """A lease past its time says it ran out and that any worker may take the run; a live
    one does not."""
    gone = client.get("/runs/lease-gone").text
    assert "leased by w-lease-gone until" in gone
    assert "expired: any worker may take the run" in gone
    live = client.get("/runs/lease-live", params={"fragment": "1"}).text
    assert "leased by w-lease-live until" in live
    assert "expired" not in live


def test_a_utc_offset_whose_plus_became_a_space_is_read(client: TestClient) -> None:
    """A `+01:00` typed in a URL arrives as ` 01:00` (a `+` in a query is a space): it is read
    as the offset it was, in the pages and the API."""
    url = "/?saga=Bulk&until=1970-01-01T01:18:00+01:00"  # 00:18 UTC
    early = client.get(url)
    assert early.status_code == 200, early.text
    assert "bulk-079" in early.text
    assert "bulk-080" not in early.text
    assert client.get(url.replace("/?", "/api/runs?")).json()["runs"][0]["run_id"] == "bulk-079"
    spaced = client.get("/", params={"saga": "Bulk", "until": "1970-01-01 01:18 01:00"})
    assert "bulk-080" not in spaced.text
    assert "bulk-079" in spaced.text


def test_a_saga_with_one_run_says_run(client: TestClient) -> None:
    """The sagas page counts one run as "1 run", others as "N runs"."""
    html = client.get("/sagas").text
    assert "1 run:" in html  # WaitingSaga
    assert "1 runs" not in html
    assert "2 runs:" in html  # EvilSaga
