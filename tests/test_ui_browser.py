"""``statesaga ui`` in a real browser: the server started as users start it (a subprocess of
``statesaga ui``) over a SQLite store, driven by headless Chromium through Selenium.

It needs Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them) and is
skipped without them, unless ``$CI`` is ``true``. Selenium is pointed at /usr/bin/chromium and
/usr/bin/chromedriver and downloads nothing. With ``STATESAGA_SCREENSHOTS=1`` (``make
screenshots``) it also writes the screenshots docs/ui.md shows into docs/ui/, and the hash of
the templates they were taken with (checked by tests/test_ui_screenshots.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from _services import free_port

from statesaga import Retry, Saga, Step, Wait
from statesaga.store import SagaStore, store_from_url

# Real processes started, killed and restarted: run on the default Python only in CI.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Seconds a page is given to show what is awaited (it refreshes a running run every 2 s).
PATIENCE = 8.0
SCREENSHOTS = os.environ.get("STATESAGA_SCREENSHOTS", "") not in ("", "0")
#: The overlay's colours (statesaga/render/dot.py): taken edges, visited and current states.
TAKEN, VISITED, CURRENT, UNTOUCHED = "#e08a00", "#ffe9b3", "#ffb74d", "white"


async def reserve(ctx: Any) -> dict[str, Any]:
    return {"items": ctx.data["items"]}


async def release(ctx: Any) -> None:
    return None


async def charge(ctx: Any) -> dict[str, Any]:
    if ctx.data.get("decline"):
        raise RuntimeError("card declined")
    return {"charged": 12 * ctx.data["items"]}


def _there(name: str | None, wait: bool = False) -> bool:
    """Whether the file ``name`` exists; with ``wait``, once it does."""
    while name and wait and not Path(name).exists():
        time.sleep(0.05)
    return bool(name) and Path(name).exists()


async def ship(ctx: Any) -> dict[str, Any]:
    """Waits while the file ``gate`` names is absent, fails while the file ``hold`` names is
    there: files, so the test controls this step in any process that runs it."""
    await asyncio.to_thread(_there, ctx.data.get("gate"), True)
    if _there(ctx.data.get("hold")):
        raise RuntimeError("no courier available")
    return {"tracking": f"T-{ctx.saga_id}"}


class OrderSaga(Saga):
    """Reserve, charge (the pivot), wait for an approval, ship."""

    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", charge, pivot=True),
        Wait("approval"),
        Step("ship", ship, retry=Retry(attempts=1)),
    )


@attrs.frozen
class Shop:
    """The store the inspector reads and the files its runs' ``ship`` steps look at."""

    folder: Path
    url: str
    gate: Path  # order-1006 ships once it exists
    hold: Path  # order-1004 cannot ship while it exists


async def _until(store: SagaStore, run_id: str, done: Callable[[Any], bool]) -> None:
    deadline = time.monotonic() + 10
    while not done(await store.load(run_id)):
        assert time.monotonic() < deadline, f"{run_id} never got there"
        await asyncio.sleep(0.01)


async def _approved(store: SagaStore, run_id: str, **data: Any) -> Any:
    """A run of ``OrderSaga`` with ``data``, started and approved."""
    handle = await OrderSaga(**data).start(store=store, saga_id=run_id)
    await _until(store, run_id, lambda s: s.run.status == "waiting")
    await handle.signal("approval", {"by": "ann"})
    return handle


def _fill(shop: Shop) -> None:
    """A completed run, a compensated one, two failed ones that can be pushed forward and a
    waiting one."""

    async def fill() -> None:
        async with store_from_url(shop.url) as store:
            await (await _approved(store, "order-1001", items=2)).result()
            await OrderSaga(items=1, decline=True).execute(store=store, saga_id="order-1002")
            shop.hold.touch()
            for run_id in ("order-1003", "order-1004"):
                await (await _approved(store, run_id, items=3, hold=str(shop.hold))).result()
            await OrderSaga(items=4).start(store=store, saga_id="order-1005")
            await _until(store, "order-1005", lambda s: s.run.status == "waiting")

    asyncio.run(fill())


def _drive_running(shop: Shop) -> threading.Thread:
    """order-1006, driven in a thread of this process, held in ``ship`` until ``shop.gate``
    exists (it is running until then)."""
    shipping = threading.Event()

    async def drive() -> None:
        async with store_from_url(shop.url) as store:
            handle = await _approved(store, "order-1006", items=1, gate=str(shop.gate))
            await _until(store, "order-1006", lambda s: s.steps.get("ship") is not None)
            shipping.set()
            await handle.result()

    thread = threading.Thread(target=asyncio.run, args=(drive(),), daemon=True)
    thread.start()
    assert shipping.wait(20), "order-1006 never reached its ship step"
    return thread


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp("shop")
    made = Shop(folder, f"sqlite:///{folder / 'orders.db'}", folder / "gate", folder / "hold")
    _fill(made)
    running = _drive_running(made)
    try:
        yield made
    finally:
        made.gate.touch()
        running.join(10)


def _serve(shop: Shop, *options: str) -> Iterator[str]:
    """``statesaga ui`` on the shop's store (named relative to its folder, as the pages then
    show it), started where the sagas can be imported; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "statesaga.cli", "ui", "--store", "sqlite:///orders.db"]
    server = subprocess.Popen(
        [*command, "--port", str(port), *options],
        cwd=shop.folder,
        env={**os.environ, "PYTHONPATH": os.pathsep.join((str(HERE), str(HERE.parent)))},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, f"statesaga ui exited: {server.communicate()[0]}"
            assert time.monotonic() < deadline, "statesaga ui did not listen within 20 s"
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def site(shop: Shop) -> Iterator[str]:
    """The read-only inspector."""
    yield from _serve(shop)


@pytest.fixture(scope="module")
def acting_site(shop: Shop) -> Iterator[str]:
    """The inspector with ``--allow-actions``."""
    yield from _serve(shop, "--allow-actions")


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (in the dev extra)")
    if not missing:
        return
    message = (
        f"headless browser tests need {', '.join(missing)}: run `make browser` "
        "(apt-get install chromium chromium-driver) and `make install`"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, 1200x800, driven by Debian's chromedriver (Selenium Manager, which
    would download a browser or a driver, is not used: the driver's path is given)."""
    _require_browser()
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1200,800")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:  # the page's viewport itself 1200x800 (a window's size includes what a window has)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1200, "height": 800, "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, what: str, check: Callable[[Any], Any]) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, PATIENCE, poll_frequency=0.1).until(check)
    except TimeoutException:
        pytest.fail(f"within {PATIENCE} s the page at {driver.current_url} did not show {what}")


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def texts(driver: Any, selector: str) -> list[str]:
    return [e.text for e in css(driver, selector)]


#: The run page's diagram as the browser has it: each node's fill and each edge's strokes.
DIAGRAM_SCRIPT = """
const svg = document.querySelector('#diagram svg');
if (!svg) return null;
const nodes = {}, edges = {};
for (const g of svg.querySelectorAll('g.node')) {
  const shape = g.querySelector('path, polygon, ellipse');
  nodes[g.querySelector('title').textContent] = shape && shape.getAttribute('fill');
}
for (const g of svg.querySelectorAll('g.edge')) {
  const strokes = [...g.querySelectorAll('path')].map(p => p.getAttribute('stroke'));
  const name = g.querySelector('title').textContent;
  edges[name] = (edges[name] || []).concat(strokes);
}
return {nodes: nodes, edges: edges};
"""


def diagram(driver: Any) -> dict[str, dict[str, Any]]:
    drawn = driver.execute_script(DIAGRAM_SCRIPT)
    assert drawn is not None, f"no diagram on {driver.current_url}"
    return dict(drawn)


SHOT_NAMES = ("runs", "run", "sagas")
_taken: set[str] = set()


def shoot(driver: Any, name: str) -> None:
    """With ``STATESAGA_SCREENSHOTS`` set, the page as it is now into docs/ui/NAME.png."""
    if not SCREENSHOTS:
        return
    from test_ui_screenshots import SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(SHOTS / f"{name}.png")), name
    _taken.add(name)


def test_runs_page_lists_every_status_and_filters_by_one(browser: Any, site: str) -> None:
    browser.get(f"{site}/")
    assert browser.title.startswith("runs")
    rows = texts(browser, "#runs tbody tr td:first-child")
    assert sorted(rows) == [f"order-100{n}" for n in range(1, 7)]
    assert set(texts(browser, "#runs .status")) == {
        "completed",
        "compensated",
        "failed",
        "waiting",
        "running",
    }
    assert "sqlite:///orders.db" in browser.find_element("css selector", "header .store").text
    shoot(browser, "runs")

    from selenium.webdriver.support.ui import Select

    Select(css(browser, "select[name=status]")[0]).select_by_visible_text("failed")
    css(browser, ".filters button[type=submit]")[0].click()
    wait_for(browser, "the failed runs alone", lambda d: "status=failed" in d.current_url)
    assert sorted(texts(browser, "#runs tbody tr td:first-child")) == ["order-1003", "order-1004"]
    assert set(texts(browser, "#runs .status")) == {"failed"}
    assert texts(browser, ".counts a.current") == ["failed 2"]

    css(browser, ".counts a")[0].click()  # "all": the filter cleared again
    wait_for(browser, "every run", lambda d: len(css(d, "#runs tbody tr")) == 6)


def test_a_run_page_draws_the_runs_path_on_its_diagram(browser: Any, site: str) -> None:
    browser.get(f"{site}/?status=completed")
    css(browser, "#runs a[href='/runs/order-1001']")[0].click()
    wait_for(browser, "run order-1001", lambda d: d.current_url.endswith("/runs/order-1001"))
    assert browser.find_element("id", "run-status").text == "completed"
    drawn = diagram(browser)
    nodes, edges = drawn["nodes"], drawn["edges"]
    path = ["reserve.succeeded", "charge.succeeded", "approval.waiting", "ship.succeeded"]
    assert {n: nodes[n] for n in path} == dict.fromkeys(path, VISITED)
    assert nodes["completed"] == CURRENT
    assert {nodes[n] for n in ("reserve.failed", "ship.failed", "compensated")} == {UNTOUCHED}
    # Taken edges are drawn with TAKEN on both sides of their own colour; others are not.
    for taken in ("approval.waiting->approval.succeeded", "ship.succeeded->completed"):
        assert TAKEN in edges[taken], (taken, edges[taken])
    for untaken in ("ship.running->ship.failed", "running->compensating"):
        assert TAKEN not in edges[untaken], (untaken, edges[untaken])
    steps = texts(browser, "#steps tbody td:first-child")
    assert sorted(steps) == ["approval", "charge", "reserve", "ship"]
    shoot(browser, "run")


def test_a_failed_runs_diagram_shows_where_it_failed(browser: Any, site: str) -> None:
    browser.get(f"{site}/runs/order-1003")
    assert browser.find_element("id", "run-status").text == "failed"
    assert "no courier available" in browser.find_element("id", "live").text
    drawn = diagram(browser)
    assert drawn["nodes"]["failed@ship"] == CURRENT
    assert drawn["nodes"]["ship.failed"] == VISITED
    assert TAKEN in drawn["edges"]["ship.running->ship.failed"]
    assert TAKEN not in drawn["edges"]["ship.running->ship.succeeded"]
    assert not css(browser, "#actions"), "a read-only inspector shows action forms"


def test_sagas_page_draws_each_saga_with_its_runs_by_status(browser: Any, site: str) -> None:
    browser.get(f"{site}/")
    css(browser, "header nav a[href='/sagas']")[0].click()
    wait_for(browser, "the sagas", lambda d: css(d, "section.saga"))
    [saga] = css(browser, "section.saga")
    assert saga.find_element("css selector", "h2").text == "OrderSaga"
    assert "failed 2" in saga.text
    assert "completed 1" in saga.text
    assert saga.find_elements("css selector", ".diagram svg g.node")
    shoot(browser, "sagas")


def test_a_running_run_page_follows_the_run_without_reloading(
    browser: Any, site: str, shop: Shop
) -> None:
    browser.get(f"{site}/runs/order-1006")
    assert browser.find_element("id", "run-status").text == "running"
    assert diagram(browser)["nodes"]["ship.running"] == CURRENT
    browser.execute_script("window.notReloaded = true")
    shop.gate.touch()
    began = time.monotonic()
    wait_for(
        browser,
        "order-1006 completed",
        lambda d: d.find_element("id", "run-status").text == "completed",
    )
    print(f"the page showed the run completed {time.monotonic() - began:.1f} s after it moved")
    assert browser.execute_script("return window.notReloaded") is True, "the page was reloaded"
    drawn = diagram(browser)
    assert drawn["nodes"]["completed"] == CURRENT
    assert drawn["nodes"]["ship.succeeded"] == VISITED
    history = texts(browser, "#history tbody tr")
    assert any("ship.succeeded → completed" in row for row in history), history


def test_resume_pushes_a_failed_run_forward_to_completion(
    browser: Any, acting_site: str, shop: Shop
) -> None:
    browser.get(f"{acting_site}/runs/order-1004")
    assert browser.find_element("id", "run-status").text == "failed"
    button = browser.find_element("id", "resume")
    assert button.text == "push forward"
    shop.hold.unlink()  # the courier is back
    button.click()
    wait_for(browser, "the action's answer", lambda d: css(d, "#action-message"))
    message = browser.find_element("id", "action-message")
    assert message.text == "order-1004: completed", message.text
    assert "ok" in (message.get_attribute("class") or "")
    browser.find_element("id", "back").click()
    wait_for(browser, "run order-1004 again", lambda d: d.current_url.endswith("/order-1004"))
    assert browser.find_element("id", "run-status").text == "completed"
    assert diagram(browser)["nodes"]["completed"] == CURRENT
    assert not css(browser, "#resume"), "a completed run still offers a resume"


@pytest.mark.skipif(not SCREENSHOTS, reason="screenshots are taken with STATESAGA_SCREENSHOTS=1")
def test_screenshots_are_recorded_with_the_templates_they_show() -> None:
    """Runs last: once every screenshot is written, the hash of the templates and stylesheet
    they were taken with goes next to them."""
    from test_ui_screenshots import RECORD, looks_hash

    missing = sorted(set(SHOT_NAMES) - _taken)
    assert not missing, f"not retaken in this run: {missing} (run the whole file)"
    RECORD.write_text(f"{looks_hash()}  statesaga/ui templates/*.html static/*.css\n")
