"""Every dashboard page under Streamlit's AppTest, reading a real ``flightrec serve`` that
recorded a real fleet; plus the clear messages for unknown objects and an API that is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from flightrec.dashboards.launch import APP, ui_command
from flightrec.dashboards.safe_text import plain_text
from flightrec.dashboards.ui import STATUS_COLORS
from flightrec.demo.fleet import FleetConfig, FleetReport, run_fleet
from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.slow


class Recorded:
    """A server holding a fleet's spans, and what its API says about them."""

    def __init__(self, server: ServerProcess, report: FleetReport) -> None:
        self.server = server
        self.report = report
        self.ticket = next(ref for ref in report.example_objects if ref.startswith("ticket:"))

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        with self.server.client() as client:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response.json()

    def story(self, ref: str) -> dict[str, Any]:
        kind, _, ident = ref.partition(":")
        return self.get(f"/api/objects/{kind}/{ident}/story")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """One server and one fleet for the module (the make_server machinery, started once)."""
    server = ServerProcess(tmp_path_factory.mktemp("dashboards") / "srv").start()
    try:
        report = run_fleet(FleetConfig(endpoint=server.url, workflows=40, seed=7))
        server.wait_drained()
        yield Recorded(server, report)
    finally:
        server.stop()


def app(
    monkeypatch: pytest.MonkeyPatch,
    api_url: str,
    token: str | None = None,
    state: dict[str, Any] | None = None,
    **params: str,
) -> AppTest:
    """The dashboards run once against ``api_url`` with these query params and widget state."""
    monkeypatch.setenv("FLIGHTREC_API_URL", api_url)
    if token:
        monkeypatch.setenv("FLIGHTREC_API_TOKEN", token)
    else:
        monkeypatch.delenv("FLIGHTREC_API_TOKEN", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(params)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def shown(markdown: str) -> str:
    """Markdown as read on screen: without the escapes (and word joiners) that keep text literal."""
    return plain_text(markdown)


def texts(elements: Any) -> list[str]:
    return [shown(element.value) for element in elements]


def test_story_page_shows_summary_outcome_and_narrated_steps(monkeypatch, recorded: Recorded) -> None:
    story = recorded.story(recorded.ticket)
    at = app(monkeypatch, recorded.server.url, object=recorded.ticket)

    assert shown(at.title[0].value).endswith(recorded.ticket.split(":", 1)[1])
    markdown = texts(at.markdown)
    assert story["summary"] in markdown
    assert any(story["status"] in text and "badge" in text for text in markdown)
    outcomes = texts([*at.success, *at.warning, *at.error, *at.info])
    assert any(story["outcome"] in text for text in outcomes)
    labels = [shown(expander.label) for expander in at.expander]
    assert len(labels) == len(story["steps"])
    for label, step in zip(labels, story["steps"], strict=True):
        assert step["sentence"] in label
    assert any(text.startswith(f"**Run 1 of {len(story['traces'])}**") for text in markdown)
    assert at.get("plotly_chart"), "the timeline across agents"
    assert [button.label for button in at.get("download_button")] == ["Download story"]


def test_story_step_opens_to_its_raw_span(monkeypatch, recorded: Recorded) -> None:
    story = recorded.story(recorded.ticket)
    at = app(monkeypatch, recorded.server.url, object=recorded.ticket)
    assert not at.get("json"), "raw spans stay closed until a step is opened"

    at.session_state[f"step-{recorded.ticket}-0"] = True
    at.run()
    assert not at.exception
    raw = [table.value for table in at.table if "field" in table.value.columns]
    assert raw and story["steps"][0]["span_id"] in raw[0]["value"].tolist()
    assert at.get("json"), "the span's attributes"
    assert any(shown(link.value) == "Open the whole trace" for link in at.get("page_link"))


def test_objects_page_lists_recent_objects_with_status_badges(monkeypatch, recorded: Recorded) -> None:
    listed = recorded.get("/api/objects", limit=50)["items"]
    at = app(monkeypatch, recorded.server.url)

    assert shown(at.title[0].value) == "Business objects"
    links = [shown(link.value) for link in at.main.get("page_link")]
    assert links == [f"{item['type'].capitalize()} {item['id']}" for item in listed]
    badges = [text for text in texts(at.markdown) if "-badge[" in text]
    assert badges == [f":{STATUS_COLORS[item['last_status']]}-badge[{item['last_status']}]" for item in listed]


def test_objects_page_filters_by_type_and_by_agent(monkeypatch, recorded: Recorded) -> None:
    at = app(monkeypatch, recorded.server.url)
    at.selectbox[0].select("invoice").run()
    links = [shown(link.value) for link in at.main.get("page_link")]
    assert links and all(link.startswith("Invoice ") for link in links)

    agent = recorded.report.agents[0]
    at = app(monkeypatch, recorded.server.url, agent=agent)
    expected = recorded.get("/api/objects", agent=agent, limit=50)["items"]  # the API filters: the agent's 50 newest
    touched = [item for item in recorded.get("/api/objects", limit=1000)["items"] if agent in item["agents"]]
    assert expected == touched[:50] and expected, "the agent's newest, not a filter of everyone's newest"
    assert [shown(link.value) for link in at.main.get("page_link")][1:] == [
        f"{item['type'].capitalize()} {item['id']}" for item in expected
    ]
    assert any(agent in text for text in texts(at.info))


def test_trace_page_shows_waterfall_and_span_table(monkeypatch, recorded: Recorded) -> None:
    trace_id = recorded.story(recorded.ticket)["traces"][0]
    spans = recorded.get(f"/api/traces/{trace_id}")["spans"]
    at = app(monkeypatch, recorded.server.url, trace=trace_id)

    assert shown(at.title[0].value).startswith("Run “")
    assert at.get("plotly_chart"), "the waterfall"
    table = at.dataframe[0].value
    assert len(table) == len(spans)
    assert sorted(name.strip("\u00a0") for name in table["span"]) == sorted(span["name"] for span in spans)
    assert recorded.ticket in [f"{shown(link.value).split()[0].lower()}:{shown(link.value).split()[1]}"
                               for link in at.main.get("page_link")]


def test_sidebar_search_links_to_story_pages(monkeypatch, recorded: Recorded) -> None:
    ident = recorded.ticket.split(":", 1)[1]
    # Set before the first run: AppTest (1.67) drops an st.navigation app's sidebar on reruns.
    at = app(monkeypatch, recorded.server.url, state={"search": ident})
    assert f"ticket {ident}" in [shown(link.value) for link in at.sidebar.get("page_link")]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"object": "ticket:NO-SUCH-TICKET"}, "nothing recorded for **ticket:NO-SUCH-TICKET**"),
        ({"object": "not-a-reference"}, "is not an object reference of the form type:id"),
        ({"trace": "f" * 32}, "has no trace"),
        ({"trace": "not-hex"}, "is not 32 hex digits"),
    ],
)
def test_unknown_objects_and_traces_get_a_clear_message(monkeypatch, recorded: Recorded, params, expected) -> None:
    at = app(monkeypatch, recorded.server.url, **params)
    assert any(expected in text for text in texts(at.warning)), texts(at.warning)
    assert not at.error and not at.get("plotly_chart")


@pytest.mark.parametrize("params", [{}, {"object": "ticket:TCK-1042"}, {"trace": "a" * 32}])
def test_every_page_explains_an_api_that_is_down(monkeypatch, params: dict[str, str]) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    at = app(monkeypatch, down, **params)
    errors = texts(at.error)
    assert errors and f"Cannot reach the Flight Recorder API at {down}" in errors[0]
    assert "flightrec serve" in errors[0]


def test_the_api_token_is_sent_and_a_wrong_one_explained(monkeypatch, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "srv", env={"FLIGHTREC_API_TOKEN": "dash-token-0123456789"}).start()
    try:
        refused = app(monkeypatch, server.url, token="wrong-token-0123456789")
        assert any("refused the token" in text and "FLIGHTREC_API_TOKEN" in text for text in texts(refused.error))
        allowed = app(monkeypatch, server.url, token="dash-token-0123456789")
        assert not allowed.error
        assert any("No business objects recorded yet" in text for text in texts(allowed.info))
    finally:
        server.stop()


def test_ui_command_runs_streamlit_headless_on_the_given_address() -> None:
    command = ui_command(port=9123, host="127.0.0.2")
    assert command[1:5] == ["-m", "streamlit", "run", str(APP)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.port"] == "9123" and options["--server.address"] == "127.0.0.2"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"


def test_people_sign_in_with_their_own_token_and_act_as_themselves(monkeypatch, tmp_path: Path) -> None:
    """With sign-in on the API, the dashboards ask for a token; a wrong one is refused with the reason;
    a principal's token signs in for this browser session and every act is recorded under its name."""
    admin = "dash-admin-token-0123456789"
    server = ServerProcess(tmp_path / "srv", env={"FLIGHTREC_API_TOKEN": admin}).start()
    try:
        created = httpx.post(f"{server.url}/api/principals", headers={"Authorization": f"Bearer {admin}"},
                             json={"name": "sam", "roles": ["sre"]}, timeout=30)
        token = created.json()["token"]
        at = app(monkeypatch, server.url)
        assert [t.label for t in at.text_input] == ["Token"] and any("Sign in" in t.value for t in at.title)
        at.text_input[0].input("frt_not-a-real-token-at-all")
        at.button[0].click().run()
        assert any("refused the token" in text for text in texts(at.error)), texts(at.error)
        at.text_input[0].input(token)
        at.button[0].click().run()
        assert not at.exception and not at.title or "Sign in" not in at.title[0].value
        assert any("Signed in as" in text and "sam" in text for text in texts(at.caption)), texts(at.caption)
        at.switch_page("views/triage.py").run()
        assert not at.exception
        assert "You are" not in [t.label for t in at.text_input]  # the principal acts, not a typed name
    finally:
        server.stop()


def test_dashboards_beyond_loopback_need_an_api_that_asks_who_acts(tmp_path: Path) -> None:
    import subprocess
    import sys

    open_server = ServerProcess(tmp_path / "open").start()
    try:
        refused = subprocess.run([sys.executable, "-m", "flightrec", "ui", "--api", open_server.url, "--host",
                                  "0.0.0.0", "--port", "1"], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "has no sign-in" in refused.stdout, refused.stdout + refused.stderr
    finally:
        open_server.stop()
