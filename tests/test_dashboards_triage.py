"""The triage, alerts and governance pages under Streamlit's AppTest, against a real ``flightrec serve``
that recorded the fleet's default regression (support-agent changes model and prompt halfway) and
ran a detector pass; plus the signal arithmetic on its own and an API that is down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from flightrec.dashboards import signals
from flightrec.dashboards.launch import APP
from flightrec.dashboards.safe_text import plain_text
from flightrec.dashboards.ui import ALERT_SEVERITY_COLORS, ALERTS_PAGE, GOVERNANCE_PAGE, TRIAGE_PAGE
from flightrec.demo.fleet import FleetConfig, FleetReport, run_fleet
from tests.conftest import ServerProcess, free_port

Json = dict[str, Any]
WORKFLOWS = 300
QUIET = {"FLIGHTREC_DETECT_INTERVAL_S": "0"}  # passes only when asked: what fires is the test's to see


class Fleet:
    """A server holding the fleet's runs, after one detector pass."""

    def __init__(self, server: ServerProcess, report: FleetReport, result: Json) -> None:
        self.server, self.report, self.result = server, report, result

    def get(self, path: str, **params: Any) -> Json:
        with self.server.client() as client:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response.json()

    @property
    def alert(self) -> Json:
        """The version regression the fleet injected, as the API lists it."""
        return next(alert for alert in self.get("/api/alerts", status="firing")["alerts"]
                    if alert["detector"] == "version_regression" and alert["agent"] == self.report.regression_agent)


def record(server: ServerProcess, **config: Any) -> tuple[FleetReport, Json]:
    report = run_fleet(FleetConfig(endpoint=server.url, workflows=WORKFLOWS, seed=7, **config))
    server.wait_drained()
    with server.client() as client:
        result = client.post("/api/detectors/run").raise_for_status().json()
    return report, result


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    server = ServerProcess(tmp_path_factory.mktemp("triage") / "srv", env=QUIET).start()
    try:
        report, result = record(server)
        assert report.regression_agent == "support-agent"
        assert [(alert["detector"], alert["agent"]) for alert in result["fired"]] == [
            ("version_regression", "support-agent")]
        yield Fleet(server, report, result)
    finally:
        server.stop()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [error.value for error in at.exception]
    return at


def open_page(monkeypatch: pytest.MonkeyPatch, api_url: str, view: str, **params: str) -> AppTest:
    """The dashboards opened on ``view`` with these query params, reading ``api_url``."""
    monkeypatch.setenv("FLIGHTREC_API_URL", api_url)
    monkeypatch.delenv("FLIGHTREC_API_TOKEN", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    ok(at.run())
    at.query_params.update(params)
    at.switch_page(view)
    return ok(at.run())


def shown(markdown: str) -> str:
    """Markdown as read on screen: without the escapes (and word joiners) that keep text literal."""
    return plain_text(markdown)


def texts(elements: Any) -> list[str]:
    return [shown(element.value) for element in elements]


def links(at: AppTest) -> list[str]:
    return [shown(link.value) for link in at.main.get("page_link")]


def button(at: AppTest, label: str) -> Any:
    return next(widget for widget in at.button if widget.label == label)


def charts(at: AppTest) -> list[Json]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def rollup_version(version: str) -> str:
    """``gpt-4o / support-v12 / 2.3.1`` (model / prompt / agent version) as rollups tell it: model / prompt."""
    return " / ".join(version.split(" / ")[:2])


# --- triage --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_triage_shows_the_firing_alert_with_links_to_its_stories_and_traces(monkeypatch, fleet: Fleet) -> None:
    alert = fleet.alert
    at = open_page(monkeypatch, fleet.server.url, TRIAGE_PAGE)

    assert shown(at.title[0].value) == "Triage"
    markdown = texts(at.markdown)
    assert f"**{alert['summary']}**" in markdown
    color = ALERT_SEVERITY_COLORS[alert["severity"]]
    assert any(f":{color}-badge[{alert['severity']}] :red-badge[firing] **support-agent**" in text for text in markdown)
    assert "1 firing, 0 pending. Most urgent first." in texts(at.caption)
    shown_links = links(at)
    for ref in alert["objects"]:
        kind, _, ident = ref.partition(":")
        assert f"{kind.capitalize()} {ident}" in shown_links
    for trace_id in alert["traces"]:
        assert f"Trace {trace_id[:12]}…" in shown_links
    story_links = [link for link in at.main.get("page_link") if shown(link.value).startswith("Ticket ")]
    assert story_links[0].proto.page.endswith("story") and "object=ticket" in story_links[0].proto.query_string
    assert len(charts(at)) == len(fleet.report.agents), "one row of golden signals per agent"
    assert [text for text in markdown if text.startswith("### ")][0] == "### support-agent :red-badge[1 firing]"


@pytest.mark.slow
def test_triage_marks_the_version_change_and_compares_before_and_after(monkeypatch, fleet: Fleet) -> None:
    alert = fleet.alert
    before, after = rollup_version(alert["details"]["before"]), rollup_version(alert["details"]["after"])
    rollups = fleet.get("/api/rollups", hours=24, bucket_s=900)["items"]
    rows = [row for row in rollups if row["agent"] == "support-agent"]
    first_new = min(row["bucket_ms"] for row in rows if f"{row['model']} / {row['prompt_version']}" == after)
    at = open_page(monkeypatch, fleet.server.url, TRIAGE_PAGE, agent="support-agent")

    [figure] = charts(at)
    lines = [shape for shape in figure["layout"]["shapes"] if shape["line"].get("dash") == "dash"]
    assert len(lines) == 5, "a dashed line on each of the five small multiples"
    assert {shape["x0"] for shape in lines} == {signals.bucket_time(first_new).isoformat()}
    assert {trace["name"] for trace in figure["data"]} == {before, after, "version change"}

    markdown = texts(at.markdown)
    assert any(f"` {before} ` → ` {after} `" in text and "Version change" in text for text in markdown)
    [table] = [text for text in markdown if text.startswith("| Signal | Before | After | Change |")]
    failed = next(line for line in table.splitlines() if line.startswith("| Failed runs |"))
    assert ":red[**+" in failed, "more failed runs after the change, shown as worse"
    assert any(alert["summary"] in text for text in markdown if "Version change" not in text)


@pytest.mark.slow
def test_triage_focuses_the_agent_in_the_url_and_follows_the_selection(monkeypatch, fleet: Fleet) -> None:
    at = open_page(monkeypatch, fleet.server.url, TRIAGE_PAGE, agent="support-agent")
    assert at.selectbox(key="triage_agent").value == "support-agent"
    assert len(charts(at)) == 1 and "Show every agent" in [button.label for button in at.button]
    assert any("for **support-agent**" in text for text in texts(at.caption))

    at.selectbox(key="triage_agent").select("ops-agent")
    ok(at.run())
    assert at.query_params["agent"] == "ops-agent"
    assert texts(at.success) == ["Nothing is firing or pending for ops-agent."]
    assert len(charts(at)) == 1 and not any("Version change" in text for text in texts(at.markdown))

    at.selectbox(key="triage_agent").select("All agents")
    ok(at.run())
    assert "agent" not in at.query_params
    assert len(charts(at)) == len(fleet.report.agents)

    at = open_page(monkeypatch, fleet.server.url, TRIAGE_PAGE, agent="support-agent")
    button(at, "Show every agent").click()
    ok(at.run())
    assert "agent" not in at.query_params and at.selectbox(key="triage_agent").value == "All agents"
    assert len(charts(at)) == len(fleet.report.agents)


@pytest.mark.slow
def test_run_detectors_now_shows_what_fired_and_links_the_unusual_traces(monkeypatch, make_server) -> None:
    server = make_server(env=QUIET)
    run_fleet(FleetConfig(endpoint=server.url, workflows=WORKFLOWS, seed=7, inject=["version", "outlier"]))
    server.wait_drained()
    at = open_page(monkeypatch, server.url, TRIAGE_PAGE)
    assert texts(at.success) == ["Nothing is firing or pending for any agent."], "no pass has run yet"

    button(at, "Run detectors now").click()
    ok(at.run())
    with server.client() as client:
        firing = client.get("/api/alerts", params={"status": "firing"}).raise_for_status().json()["alerts"]
    assert {alert["detector"] for alert in firing} == {"version_regression", "unusual_traces"}
    assert any(text.startswith("Detector pass over") and f"Fired {len(firing)}, resolved 0." in text
               for text in texts(at.warning))
    fired_lines = [text for text in texts(at.markdown) if text.startswith(":red[**Fired**]")]
    assert sorted(fired_lines) == sorted(
        f":red[**Fired**] :{ALERT_SEVERITY_COLORS[alert['severity']]}-badge[{alert['severity']}] :red-badge[firing] "
        f"**{alert['agent']}**: {alert['summary']}" for alert in firing)
    assert "Unusual traces" in [shown(header.value) for header in at.subheader]
    unusual = next(alert for alert in firing if alert["detector"] == "unusual_traces")
    for trace_id, reason in signals.unusual_traces(unusual):
        assert f"Trace {trace_id[:12]}…" in links(at)
        assert reason and reason in texts(at.caption)

    button(at, "Run detectors now").click()
    ok(at.run())
    assert any("Fired 0, resolved 0." in text for text in texts(at.success)), "the same findings page no one again"


# --- alerts --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_alerts_page_lists_the_alert_with_badges_times_and_links(monkeypatch, fleet: Fleet) -> None:
    alert = fleet.alert
    at = open_page(monkeypatch, fleet.server.url, ALERTS_PAGE)

    assert shown(at.title[0].value) == "Alerts"
    markdown = texts(at.markdown)
    assert alert["summary"] in markdown
    color = ALERT_SEVERITY_COLORS[alert["severity"]]
    assert f":{color}-badge[{alert['severity']}] :red-badge[firing] **support-agent** · version_regression" in markdown
    assert any(text.startswith(f"Started {alert['started_at'][:10]}") and "firing for" in text
               for text in texts(at.caption))
    assert "Triage support-agent" in links(at)
    triage = next(link for link in at.main.get("page_link") if shown(link.value) == "Triage support-agent")
    assert triage.proto.page.endswith("triage") and triage.proto.query_string == "agent=support-agent"
    assert {f"Ticket {ref.split(':', 1)[1]}" for ref in alert["objects"]} <= set(links(at))
    facts = at.table[0].value
    values = [shown(value) for value in facts["value"].tolist()]  # st.table cells are Markdown: escaped
    assert alert["dedup_key"] in values
    assert alert["details"]["after"] in values
    assert [metric.value for metric in at.metric] == ["1", "0", "0"]


@pytest.mark.slow
@pytest.mark.parametrize(("status", "listed"), [("firing", True), ("pending", False), ("resolved", False),
                                                 ("all", True)])
def test_alerts_page_filters_by_status(monkeypatch, fleet: Fleet, status: str, listed: bool) -> None:
    alert = fleet.alert
    at = open_page(monkeypatch, fleet.server.url, ALERTS_PAGE, status=status)
    assert (alert["summary"] in texts(at.markdown)) is listed
    if not listed:
        assert texts(at.info) == [f"No {status} alerts. The detectors run on the server's interval, "
                                  "or now from the Triage page."]
    assert at.query_params.get("status", "all") == status


@pytest.mark.slow
def test_alerts_page_filters_by_agent_and_detector(monkeypatch, fleet: Fleet) -> None:
    alert = fleet.alert
    at = open_page(monkeypatch, fleet.server.url, ALERTS_PAGE, agent="ops-agent")
    assert alert["summary"] not in texts(at.markdown)
    assert any("No alerts for **ops-agent**" in text for text in texts(at.info))

    at = open_page(monkeypatch, fleet.server.url, ALERTS_PAGE)
    at.selectbox(key="alerts_agent").select("support-agent")
    at.selectbox(key="alerts_detector").select("version_regression")
    ok(at.run())
    assert alert["summary"] in texts(at.markdown)
    assert at.query_params["agent"] == "support-agent"


# --- governance ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_governance_page_shows_each_flow_with_its_next_step(monkeypatch, fleet: Fleet) -> None:
    flows = fleet.get("/api/governance")["items"]
    at = open_page(monkeypatch, fleet.server.url, GOVERNANCE_PAGE)

    assert shown(at.title[0].value) == "Governance"
    markdown = texts(at.markdown)
    for flow in flows:
        assert flow["next_step"] in markdown
        assert any(text.startswith(f"**{flow['flow']}** · {flow['agent']} · now mostly **{flow['mode']}**")
                   for text in markdown)
    table = at.table[-1].value  # st.table: it wraps, so no column is cut off
    assert [shown(cell) for cell in table["Flow"]] == [flow["flow"] for flow in flows]
    assert [shown(cell) for cell in table["Human decisions"]] == [f"{flow['human_decisions']:,}" for flow in flows]
    assert [shown(cell) for cell in table["Overridden %"]] == [f"{flow['override_rate'] * 100:.1f}" for flow in flows]
    [mix] = charts(at)
    assert [trace["name"] for trace in mix["data"]] == ["observe", "assist", "auto"]
    assert at.metric[1].value == f"{sum(flow['runs'] for flow in flows):,}"
    over_bar = [flow for flow in flows if flow["mode"] == "auto" and flow["correction_rate"] > 0.05]
    assert len(at.warning) == len(over_bar), "auto flows people correct more than the bar allows are called out"


@pytest.mark.slow
def test_governance_page_shows_one_agent_from_the_url(monkeypatch, fleet: Fleet) -> None:
    flows = [flow for flow in fleet.get("/api/governance")["items"] if flow["agent"] == "support-agent"]
    at = open_page(monkeypatch, fleet.server.url, GOVERNANCE_PAGE, agent="support-agent")
    assert [shown(cell) for cell in at.table[-1].value["Flow"]] == [flow["flow"] for flow in flows]
    assert at.metric[0].value == str(len(flows))


# --- an API that is down -------------------------------------------------------------------------

@pytest.mark.parametrize("view", [TRIAGE_PAGE, ALERTS_PAGE, GOVERNANCE_PAGE])
def test_every_new_page_explains_an_api_that_is_down(monkeypatch, view: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    at = open_page(monkeypatch, down, view)
    errors = texts(at.error)
    assert errors and f"Cannot reach the Flight Recorder API at {down}" in errors[0]
    assert "flightrec serve" in errors[0]
    assert not at.get("plotly_chart")


# --- the arithmetic, without a server ------------------------------------------------------------

def row(bucket: int, model: str, prompt: str, runs: int = 10, error_rate: float = 0.0, **extra: Any) -> Json:
    base = {"agent": "a", "flow": "f", "model": model, "prompt_version": prompt, "bucket_ms": bucket * 900_000,
            "runs": runs, "error_rate": error_rate, "p50_ms": 100.0, "p95_ms": 200.0, "tokens": 1000 * runs,
            "cost_usd": 0.01 * runs, "guardrail_blocks": 0, "override_rate": 0.0, "reject_rate": 0.0,
            "tool_calls": 3 * runs, "human_decisions": runs, "observe_actions": 0, "assist_actions": 0,
            "auto_actions": runs}
    return {**base, **extra}


def test_a_version_change_is_the_first_bucket_of_a_new_version() -> None:
    rows = [row(1, "m1", "p1"), row(2, "m1", "p1"), row(3, "m1", "p1", runs=2), row(3, "m2", "p2", runs=8),
            row(4, "m2", "p2"), row(5, "m2", "p2")]
    [change] = signals.version_changes(rows, "a")
    assert (change.before, change.after, change.bucket_ms) == ("m1 / p1", "m2 / p2", 3 * 900_000)
    assert signals.current_version(rows, "a") == "m2 / p2"
    assert list(signals.series(rows, "a")) == ["m1 / p1", "m2 / p2"]
    assert signals.version_changes([row(1, "m1", "p1"), row(1, "m2", "p1")], "a") == [], "both there from the start"


def test_before_and_after_say_what_got_worse() -> None:
    rows = [row(1, "m1", "p1", error_rate=0.02), row(2, "m2", "p1", error_rate=0.30, p95_ms=200.0, cost_usd=0.05)]
    lines = {line["signal"]: line for line in signals.before_after(rows, signals.version_changes(rows, "a")[0])}
    assert lines["Failed runs"] == {"signal": "Failed runs", "before": "2.0%", "after": "30.0%", "change": "+28.0 pts",
                                    "worse": 1}
    assert lines["Latency p95"]["worse"] == 0 and lines["Latency p95"]["change"] == "same"
    assert lines["Cost per run"]["worse"] == -1 and lines["Cost per run"]["change"] == "×0.50"
    assert lines["Runs"]["worse"] == 0, "more or fewer runs is neither better nor worse"


def test_unusual_traces_pair_each_trace_with_its_reasons() -> None:
    alert = {"summary": "a ran 2 unusual trace(s): f (tokens 9, errors 3); g (spans 70)", "traces": ["t1", "t2"]}
    assert signals.unusual_traces(alert) == [("t1", "f (tokens 9, errors 3)"), ("t2", "g (spans 70)")]
    assert signals.unusual_traces({"summary": "something else", "traces": ["t1"]}) == [("t1", "")]
