"""Where the SRE is, in a real browser (headless Chromium): from an alert and from the triage page, Pause
(then the button is off and the state shows), Plan rollback, and the rollback console opened on the plan
with its steps as the "Last actions" list. Also the pages issue 14 found broken: ``/objects`` opens
without "Page not found", no label of the console is cut off, the governance table shows every column,
the trace page tells an errored run's message, a guardrail block, tokens and cost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flightrec.demo.fleet import FleetConfig, run_fleet
from tests.browser_support import ARTIFACTS, CHROMIUM, launched_chromium, running_ui
from tests.conftest import ServerProcess, wait_for

pytestmark = pytest.mark.slow
QUIET = {"FLIGHTREC_DETECT_INTERVAL_S": "0"}  # detector passes only when the test asks
SRE = "sre-sam"


class Site:
    def __init__(self, server: ServerProcess, ui: str) -> None:
        self.server, self.ui = server, ui

    def get(self, path: str, **params: Any) -> Any:
        with self.server.client() as client:
            return client.get(path, params=params).raise_for_status().json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        with self.server.client() as client:
            return client.post(path, json=body or {}).raise_for_status().json()

    def resume(self, agent: str) -> None:
        self.post(f"/api/controls/agents/{agent}/resume", {"actor": "test", "reason": ""})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server with the fleet's regression (support-agent) recorded and a detector pass, and the dashboards."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    base = tmp_path_factory.mktemp("operate")
    server = ServerProcess(base / "srv", env=QUIET).start()
    try:
        run_fleet(FleetConfig(endpoint=server.url, workflows=300, seed=7))
        server.wait_drained()
        with server.client() as client:
            client.post("/api/detectors/run").raise_for_status()
        with running_ui(server.url, base / "ui.log") as url:
            yield Site(server, url)
    finally:
        server.stop()


@pytest.fixture
def browser(site: Site) -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


def sign_in(page: Any) -> None:
    field = page.get_by_placeholder("your name")
    field.fill(SRE)
    field.press("Enter")


def the_regression(site: Site) -> dict[str, Any]:
    alerts = site.get("/api/alerts", status="firing")["alerts"]
    return next(alert for alert in alerts if alert["detector"] == "version_regression")


def expect_console_on_newest_plan(site: Site, page: Any, agent: str) -> dict[str, Any]:
    """The console is open on the plan just built: its id in the URL, its steps listed, each in the table."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Rollback console")).to_be_visible(timeout=60_000)
    plan = site.get("/api/rollback/plans", limit=1)["items"][0]
    assert plan["selector"]["agent"] == agent and plan["author"] == SRE
    assert plan["steps"], "the window holds actions of the agent that took effect"
    expect(page.get_by_role("heading", name=f"Plan {plan['id']}")).to_be_visible(timeout=30_000)
    assert f"plan={plan['id']}" in page.url
    table = page.locator("table").filter(has_text="Time (UTC)").first
    expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(len(plan["steps"]))  # the list is exactly the plan's candidates
    for row, step in zip(rows.all(), plan["steps"], strict=True):
        text = row.inner_text()
        assert step["action"] in text and ", ".join(step["objects"]) in text
        if step["amount"]:
            assert step["amount"] in text
    expect(page.get_by_text("What will be called").first).to_be_visible()  # every step, ready to read
    return plan


def test_from_an_alert_the_sre_pauses_the_agent_and_reaches_a_prepared_plan(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    alert = the_regression(site)
    agent = alert["agent"]
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
        page.goto(f"{site.ui}/alerts?status=firing")
        expect(page.get_by_text(alert["summary"]).first).to_be_visible(timeout=60_000)
        sign_in(page)
        pause = page.get_by_role("button", name="Pause", exact=True).first
        expect(pause).to_be_enabled(timeout=30_000)
        pause.click()
        expect(page.get_by_text(f"{agent} is now paused").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("PAUSED").first).to_be_visible()
        expect(page.get_by_role("button", name="Pause", exact=True).first).to_be_disabled()
        control = site.get(f"/api/controls/agents/{agent}")
        assert (control["state"], control["actor"]) == ("paused", SRE) and alert["id"] in control["reason"]

        page.get_by_role("button", name="Plan rollback").first.click()
        plan = expect_console_on_newest_plan(site, page, agent)
        assert plan["selector"]["since"], "the alert's window, not everything the agent ever did"
        assert all(step["agent"] == agent for step in plan["steps"])
        expect(page.get_by_text("PAUSED").first).to_be_visible()  # the console's kill switch agrees
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "alert-to-plan.png"))
    finally:
        page.close()
        site.resume(agent)


def test_from_triage_the_sre_drains_the_agent_and_plans_its_rollback(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    agent = the_regression(site)["agent"]
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
        page.goto(f"{site.ui}/triage?agent={agent}")
        expect(page.get_by_role("heading", name="Triage", exact=True)).to_be_visible(timeout=60_000)
        sign_in(page)
        drain = page.get_by_role("button", name="Drain", exact=True).last  # the agent's own panel, below the alerts
        expect(drain).to_be_enabled(timeout=30_000)
        drain.click()
        expect(page.get_by_text(f"{agent} is now draining").first).to_be_visible(timeout=30_000)
        expect(page.get_by_role("button", name="Drain", exact=True).last).to_be_disabled()
        assert site.get(f"/api/controls/agents/{agent}")["state"] == "draining"
        pause = page.get_by_role("button", name="Pause", exact=True).last
        expect(pause).to_be_enabled(timeout=30_000)
        pause.click()
        expect(page.get_by_text(f"{agent} is now paused").first).to_be_visible(timeout=30_000)
        wait_for(lambda: site.get(f"/api/controls/agents/{agent}")["state"] == "paused", what="the pause")
        expect(page.get_by_role("button", name="Pause", exact=True).last).to_be_disabled(timeout=30_000)

        page.get_by_role("button", name="Plan rollback").last.click()
        plan = expect_console_on_newest_plan(site, page, agent)
        assert plan["selector"]["since"], "the triage window"
    finally:
        page.close()
        site.resume(agent)


# --- issue 14's pages ---------------------------------------------------------------------------

def test_objects_opens_by_its_own_url_without_page_not_found(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    for path in ("/objects", "/"):
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        try:
            page.goto(f"{site.ui}{path}")
            expect(page.get_by_role("heading", name="Business objects")).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1500)  # the dialog comes with the page's first answer
            expect(page.get_by_text("Page not found")).to_have_count(0)
            assert page.url.rstrip("/").endswith("/objects")
            nav = page.get_by_test_id("stSidebarNav")
            expect(nav.get_by_text("Flight Recorder", exact=True)).to_have_count(0)  # the hidden forwarder
        finally:
            page.close()


CUT_OFF = """() => [...document.querySelectorAll('[data-testid="stWidgetLabel"] *, button *, .stMarkdownEllipsis')]
  .filter((el) => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
  .map((el) => el.textContent)"""


def test_no_label_of_the_rollback_console_is_cut_off(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(f"{site.ui}/rollback?agent=ops-agent")
        expect(page.get_by_role("heading", name="Kill switch")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("heading", name="Last actions")).to_be_visible()
        page.wait_for_timeout(1000)
        assert page.evaluate(CUT_OFF) == []
        table = page.locator("table").filter(has_text="Time (UTC)").first
        column = page.get_by_test_id("stColumn").filter(has=table).last
        assert table.bounding_box()["x"] + table.bounding_box()["width"] <= (
            column.bounding_box()["x"] + column.bounding_box()["width"] + 1), "the table stays in its column"
    finally:
        page.close()


def test_the_governance_table_shows_every_column(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(f"{site.ui}/governance")
        heading = page.get_by_role("heading", name="Corrections, blocks and failures per flow")
        expect(heading).to_be_visible(timeout=60_000)
        table = page.get_by_test_id("stTable").last
        table.scroll_into_view_if_needed()
        box = table.bounding_box()
        headers = table.locator("th")
        names = [header.inner_text().strip() for header in headers.all()]
        for name in ("Agent", "Flow", "Runs", "Failed %", "Human decisions"):
            assert name in names, names
        for header in headers.all():
            cell = header.bounding_box()
            assert box["x"] - 1 <= cell["x"] and cell["x"] + cell["width"] <= box["x"] + box["width"] + 1, (
                f"column {header.inner_text()!r} is cut off")
        assert table.evaluate("(el) => el.scrollWidth <= el.clientWidth + 1"), "no hidden columns to scroll to"
    finally:
        page.close()


def test_the_trace_page_tells_why_a_run_failed_or_was_blocked_and_what_it_cost(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    failed = blocked = None
    for item in site.get("/api/objects", limit=300)["items"]:
        if item["last_status"] in ("failed", "blocked"):
            story = site.get(f"/api/objects/{item['type']}/{item['id']}/story")
            for trace_id in reversed(story["traces"]):
                spans = site.get(f"/api/traces/{trace_id}")["spans"]
                if failed is None and any(not s["parent_span_id"] and s["status_code"] == "Error" for s in spans):
                    failed = (trace_id, spans)
                if blocked is None and any(s["guardrail_verdict"] == "block" for s in spans) and not any(
                        s["status_code"] == "Error" for s in spans):
                    blocked = (trace_id, spans)
        if failed and blocked:
            break
    assert failed and blocked, "the fleet records failed and guardrail-blocked runs"

    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        trace_id, spans = failed
        page.goto(f"{site.ui}/trace?trace={trace_id}")
        expect(page.get_by_role("heading", name="Waterfall")).to_be_visible(timeout=60_000)
        root = next(span for span in spans if not span["parent_span_id"])
        expect(page.get_by_text("The run failed.")).to_be_visible()
        expect(page.get_by_text(root["status_message"]).first).to_be_visible()
        tokens = sum(span["input_tokens"] + span["output_tokens"] for span in spans)
        metrics = page.get_by_test_id("stMetric")
        expect(metrics.filter(has_text="Tokens")).to_contain_text(f"{tokens:,}")
        expect(metrics.filter(has_text="Cost")).to_contain_text("$")
        assert "Unset" not in page.evaluate("() => document.body.innerText")

        trace_id, spans = blocked
        page.goto(f"{site.ui}/trace?trace={trace_id}")
        expect(page.get_by_role("heading", name="Waterfall")).to_be_visible(timeout=60_000)
        guard = next(span for span in spans if span["guardrail_verdict"] == "block")
        expect(page.get_by_text("A guardrail stopped the run").first).to_be_visible()
        expect(page.get_by_text(guard["name"]).first).to_be_visible()
        blocks = sum(span["guardrail_verdict"] == "block" for span in spans)
        expect(metrics.filter(has_text="Guardrail blocks")).to_contain_text(str(blocks))
    finally:
        page.close()


def test_the_api_filters_objects_by_agent(site: Site) -> None:
    everything = site.get("/api/objects", limit=1000)["items"]
    touched = [item for item in everything if "ops-agent" in item["agents"]]
    listed = site.get("/api/objects", agent="ops-agent", limit=1000)["items"]
    assert listed == touched and len(touched) > 50
    assert [item["id"] for item in site.get("/api/objects", agent="ops-agent", limit=50)["items"]] == [
        item["id"] for item in touched[:50]], "the agent's 50 newest, not a filter of everyone's 50 newest"
    assert site.get("/api/objects", agent="no-such-agent")["items"] == []
