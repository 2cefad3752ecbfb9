"""End to end in a real browser: serve, record a fleet, run ``flightrec ui``, and open a shared
story link, every page's own URL and an alert's triage link in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from flightrec.demo.fleet import FleetConfig, run_fleet
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, running_ui  # noqa: F401 - shared with the other browser tests
from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow

@pytest.fixture(autouse=True, scope="module")
def patient_expectations() -> Iterator[None]:
    """Each ``expect`` waits up to 30 s for what it looks for (Playwright's default is 5 s, which a loaded
    machine's Streamlit misses: a step sentence or a chart drawn 6 s after the heading failed the test)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def ui(server: ServerProcess, tmp_path: Path) -> Iterator[str]:
    """``flightrec ui`` on a free port, reading ``server``; its URL."""
    with running_ui(server.url, tmp_path / "ui.log") as url:
        yield url


class Site(NamedTuple):
    """A server and the dashboards reading it, shared by the tests that each read only their own objects."""

    server: ServerProcess
    ui: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """For the tests whose data (a fleet's ticket, hostile names) no other test of this module touches."""
    base = tmp_path_factory.mktemp("browser")
    server = ServerProcess(base / "srv").start()
    try:
        with running_ui(server.url, base / "ui.log") as url:
            yield Site(server, url)
    finally:
        server.stop()


def test_a_shared_story_link_opens_the_narrated_story(chromium: Path, site: Site) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, ui = site

    report = run_fleet(FleetConfig(endpoint=server.url, workflows=30, seed=7))
    server.wait_drained()
    ticket = next(ref for ref in report.example_objects if ref.startswith("ticket:"))
    kind, _, ident = ticket.partition(":")
    with server.client() as client:
        story = client.get(f"/api/objects/{kind}/{ident}/story").raise_for_status().json()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(f"{ui}/?object={ticket}")
            expect(page.get_by_role("heading", name=f"Ticket {ident}")).to_be_visible(timeout=60_000)
            expect(page.get_by_text(story["summary"])).to_be_visible()
            for step in story["steps"][:5]:
                expect(page.get_by_text(step["sentence"]).first).to_be_visible()
            expect(page.get_by_role("button", name="Download story")).to_be_visible()
            expect(page.locator(".js-plotly-plot").first).to_be_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "story.png"))
        finally:
            browser.close()


SEARCH_PLACEHOLDER = "ticket id, agent, trace id"  # the sidebar search: only there when the entrypoint ran
DIRECT_URLS = [
    ("/objects", "Business objects"), ("/story", "Story"), ("/trace", "Trace"), ("/rollback", "Rollback console"),
    ("/triage", "Triage"), ("/alerts", "Alerts"), ("/governance", "Governance"), ("/audit", "Audit log"),
    ("/evidence", "Evidence"),
]


def test_every_page_opens_by_its_own_url_in_a_new_session(chromium: Path, site: Site) -> None:
    """A URL pasted into a new browser runs the entrypoint (navigation, sidebar search), not the page file alone."""
    from playwright.sync_api import expect, sync_playwright

    ui = site.ui

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            for path, heading in DIRECT_URLS:
                page = browser.new_page(viewport={"width": 1400, "height": 1200})
                page.goto(f"{ui}{path}")
                expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
                nav = page.get_by_test_id("stSidebarNav")
                for title in ("Objects", "Triage", "Alerts", "Rollback", "Governance", "Audit log", "Evidence"):
                    expect(nav.get_by_text(title, exact=True)).to_be_visible()
                expect(nav.get_by_text("app", exact=True)).to_have_count(0)
                expect(page.get_by_placeholder(SEARCH_PLACEHOLDER)).to_be_visible()
                page.close()
        finally:
            browser.close()


def test_an_alerts_triage_link_opens_the_alert_and_the_version_change(chromium: Path, server: ServerProcess,
                                                                       ui: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    run_fleet(FleetConfig(endpoint=server.url, workflows=300, seed=7))
    server.wait_drained()
    with server.client() as client:
        client.post("/api/detectors/run").raise_for_status()
        alerts = client.get("/api/alerts", params={"status": "firing"}).raise_for_status().json()["alerts"]
    alert = next(alert for alert in alerts if alert["detector"] == "version_regression")
    assert alert["agent"] == "support-agent"
    path = alert["links"]["triage"].split("/", 3)[3]  # the dashboards' base URL is the server's setting
    assert path == "triage?agent=support-agent"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(f"{ui}/{path}")
            expect(page.get_by_role("heading", name="Triage", exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_text(alert["summary"]).first).to_be_visible()
            expect(page.get_by_text("Version change").first).to_be_visible()
            expect(page.get_by_role("button", name="Show every agent")).to_be_visible()
            expect(page.locator(".js-plotly-plot").first).to_be_visible()
            expect(page.get_by_placeholder(SEARCH_PLACEHOLDER)).to_be_visible()
            page.wait_for_timeout(1000)  # let plotly finish drawing before the picture
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "triage.png"))
        finally:
            browser.close()


# --- agent-supplied text stays text in the browser ------------------------------------------------

FIND_LIVE = """() => {
  const found = [];
  const outside = (value) => {  // a URL that leads to evil.example (our own links may carry it in a query)
    try { return new URL(value, location.href).hostname.endsWith('evil.example'); } catch { return false; }
  };
  const attrs = ['href', 'xlink:href', 'src', 'data', 'action', 'formaction', 'poster'];
  for (const el of document.querySelectorAll('a, img, image, iframe, object, embed, video, audio, source, [src]')) {
    const urls = attrs.map((name) => el.getAttribute(name)).filter(Boolean);
    urls.push(...(el.getAttribute('srcset') || '').split(',').map((part) => part.trim().split(' ')[0]));
    if (urls.some(outside) || (el.tagName.toLowerCase() === 'img' && el.getAttribute('src') === 'x')) {
      found.push(el.outerHTML.slice(0, 200));
    }
  }
  for (const el of document.querySelectorAll('svg a')) found.push('plotly link: ' + el.outerHTML.slice(0, 200));
  for (const el of document.querySelectorAll('.katex')) found.push('math: ' + el.outerHTML.slice(0, 200));
  for (const el of document.querySelectorAll('.stMarkdownColoredText, .stMarkdownColoredBackground')) {
    if (el.textContent.trim() === 'alert') found.push('colored payload: ' + el.outerHTML.slice(0, 200));
  }
  for (const el of document.querySelectorAll('strong, em, b, i')) {
    if (el.textContent.trim() === 'bold') found.push('bold payload: ' + el.outerHTML.slice(0, 200));
  }
  for (const el of document.querySelectorAll('code')) {
    if (el.textContent.trim() === 'x') found.push('code payload: ' + el.outerHTML.slice(0, 200));
  }
  return found;
}"""


def page_text(page) -> str:
    """The page's text as read (word joiners, which break autolinks and shortcodes, are invisible)."""
    return page.evaluate("() => document.body.innerText").replace("\u2060", "")


def test_hostile_span_text_stays_text_in_the_story_and_the_rollback_console(chromium: Path, site: Site) -> None:
    """Hostile agent names, ids, undo targets and reasons: no link or image to evil.example in the DOM, no
    request to it, no bold, code, color or math made of them; they read exactly as sent."""
    from urllib.parse import quote, urlsplit

    from playwright.sync_api import expect, sync_playwright

    from tests.http_receiver import Receiver
    from tests.test_dashboards_safety import (AGENT, EVIL, OTHER_AGENT, TARGET, TARGET_REFUSED, TICKET, hostile_run,
                                              later_change, register_system, send)

    server, ui = site
    receiver = Receiver()  # where the registered system of record answers; a dry run calls nothing
    register_system(server, receiver.url)
    now = time.time_ns()
    send(server, hostile_run(now - 600_000_000_000), AGENT)
    send(server, later_change(now - 300_000_000_000), OTHER_AGENT)
    server.wait_drained()

    outside: list[str] = []

    def evil(url: str) -> bool:
        return (urlsplit(url).hostname or "").endswith("evil.example")

    def guard(route) -> None:
        if evil(route.request.url):
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 2400})
            context.route("**/*", guard)
            context.on("request", lambda request: outside.append(request.url) if evil(request.url) else None)
            page = context.new_page()
            page.goto(f"{ui}/?object={quote(f'{TICKET[0]}:{TICKET[1]}', safe='')}")
            expect(page.get_by_role("heading", name="Timeline")).to_be_visible(timeout=60_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible()
            expect(page.get_by_test_id("stExpander").first).to_be_visible()
            for summary in page.get_by_test_id("stExpander").locator("summary").all():
                summary.click()  # every step's facts and raw span
            expect(page.get_by_text("Raw span").first).to_be_visible()
            point = page.locator(".js-plotly-plot .scatterlayer .point").first
            point.evaluate("(el) => el.scrollIntoView({block: 'center'})")
            box = point.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # plotly draws the hover text
            expect(page.locator(".js-plotly-plot .hoverlayer .hovertext").first).to_be_attached()
            text = page_text(page)
            assert f"Ticket {TICKET[1]}" in text and AGENT in text and OTHER_AGENT in text
            assert page.evaluate(FIND_LIVE) == []
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "story-hostile.png"))

            page = context.new_page()
            page.goto(f"{ui}/rollback?agent={quote(AGENT, safe='')}")
            expect(page.get_by_role("heading", name="Rollback console")).to_be_visible(timeout=60_000)
            page.get_by_placeholder("your name").fill(f"actor {EVIL}")
            page.get_by_placeholder("your name").press("Enter")
            build = page.locator("button:not([disabled])", has_text="Build the plan (dry run)")
            expect(build.first).to_be_visible(timeout=30_000)  # enabled once the page knows who acts
            build.first.click()
            expect(page.get_by_text("built: a dry run").first).to_be_visible(timeout=30_000)
            for summary in page.get_by_test_id("stExpander").locator("summary").all():
                if "called" in summary.inner_text():
                    summary.click()
            # A call's target, as text (in an expander that the clicks above may have toggled either way).
            expect(page.get_by_text("/refunds/RF-1/undo", exact=True).first).to_be_attached(timeout=30_000)
            expect(page.get_by_text("has a segment that is not a plain id").first).to_be_visible()
            text = page_text(page)
            assert f"refund {EVIL}" in text and OTHER_AGENT in text
            assert f"Hand to a person: {TARGET_REFUSED}" in text, "the hostile undo target, quoted in its reason"
            assert TARGET in text
            assert page.evaluate(FIND_LIVE) == []
            page.screenshot(path=str(ARTIFACTS / "rollback-hostile.png"))
            assert outside == [], f"requests to evil.example: {outside}"
            assert receiver.requests == [], "building a plan calls nothing on the system of record"
        finally:
            browser.close()
            receiver.close()
