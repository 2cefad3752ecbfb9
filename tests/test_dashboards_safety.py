"""Agent-supplied text is shown as text on every page: no Markdown, link, image, color, emoji, math or
HTML from span content. A real ``flightrec serve`` records spans whose agent, flow, tool, model, action
names, object ids, undo targets and arguments, error messages, kill-switch reasons and actors are
hostile; every page is opened under AppTest and what it sends to the browser is read as Streamlit's
frontend would (CommonMark via markdown-it, plus the GFM autolinks, directives, emoji and math that
Streamlit's renderer adds). The browser tests (tests/test_browser.py) open the story and the console
in Chromium. Also: names with ``/``, spaces and non-Latin letters reach their routes, and the ingest
health panel (status, problems, backlog, quarantine with Replay) on the triage page.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from markdown_it import MarkdownIt
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from streamlit.testing.v1 import AppTest

from flightrec.dashboards.launch import APP
from flightrec.dashboards.safe_text import code, html, md, plain_text
from flightrec.dashboards.ui import ALERTS_PAGE, GOVERNANCE_PAGE, OBJECTS_PAGE, ROLLBACK_PAGE, TRACE_PAGE, TRIAGE_PAGE
from tests.conftest import ServerProcess
from tests.http_receiver import Receiver
from tests.otlp_helpers import make_request, make_span

pytestmark = pytest.mark.slow
Json = dict[str, Any]

PAYLOADS = (
    "![x](http://evil.example/p.png)",
    "[click](http://evil.example)",
    "`x`",
    "<img src=x onerror=alert(1)>",
    "http://evil.example/bare",
    ":red[alert]",
    "$x^2$",
    "**bold**",
    "www.evil.example",
    "mail@evil.example",
    ":smile:",
    ":material/warning:",
)
EVIL = " ".join(PAYLOADS)
# Path segments (object ids, a switched agent) without "/" until the API routes accept it (issue #8, 5).
NO_SLASH = " ".join(payload for payload in PAYLOADS if "/" not in payload)
AGENT = f"agent {EVIL}"
OTHER_AGENT = f"other {EVIL}"
SWITCHED = f"switched {NO_SLASH}"
FLOW = f"flow {EVIL}"
TOOL = f"tool {EVIL}"
MODEL = f"model {EVIL}"
PROMPT = f"prompt {EVIL}"
ERROR = f"error {EVIL}"
TICKET = ("ticket", f"TCK {NO_SLASH}")
INVOICE = ("invoice", f"INV {NO_SLASH}")
# A hostile undo target: a path on the registered system (an absolute URL is refused without being quoted),
# markup in it; the planner refuses it as irreversible with a reason that quotes it (at most 80 characters).
TARGET = "/refunds/`x`![x](//evil.example/p.png)<img src=x onerror=alert(1)>**bold**/undo"
TARGET_REFUSED = f"the undo path {TARGET!r} has a segment that is not a plain id"
# The system of record the hostile agent's actions name (flightrec.action.system), registered through the API
# so its plain undo paths resolve: the console then shows real calls with hostile arguments.
SYSTEM = "billing"
SYSTEM_PATHS = ["/refunds/{id}/undo"]
ACTOR = f"actor {EVIL}"
REASON = f"reason {EVIL}"
# Redaction at intake would rewrite the e-mail address inside the hostile text; this module is about how
# the dashboards show what was stored, whatever it holds, so it is off here (tests/test_redaction.py has its own).
QUIET = {"FLIGHTREC_DETECT_INTERVAL_S": "0", "FLIGHTREC_REDACTION_ENABLED": "false"}


def ref(obj: tuple[str, str]) -> str:
    return f"{obj[0]}:{obj[1]}"


# --- the record: one run of a hostile agent, a later change by another, a kill switch ---------------

def action(name: str, obj: tuple[str, str], *, risk: str, undo: Json, start_ns: int, parent: bytes,
           trace_id: bytes) -> Any:
    attrs = {"flightrec.operation": "action", "flightrec.action.name": name, "flightrec.action.system": SYSTEM,
             "flightrec.action.risk": risk, "flightrec.mode": "auto", "flightrec.object.type": obj[0],
             "flightrec.object.id": obj[1], "flightrec.action.amount": 12.5, "flightrec.action.currency": "EUR",
             **{f"flightrec.undo.{key}": value for key, value in undo.items()}}
    return make_span(name, attrs, trace_id=trace_id, parent=parent, start_ns=start_ns)


def hostile_run(start_ns: int) -> list[Any]:
    """The hostile agent's run on the ticket: an LLM call, a looping tool that fails, four actions.

    Their undos name the registered system (see :func:`register_system`): the refund's is a plain path with
    hostile arguments (conflicted by the other agent's later change), the credit's kind is hostile, the void's
    path is hostile (irreversible, the reason quotes it), and the high refund's is reversible; no rule of the
    operator's policy names these actions, so it is high risk and needs a second person."""
    trace_id = bytes(range(16))
    root = make_span(FLOW, {"flightrec.operation": "agent", "flightrec.object.type": TICKET[0],
                            "flightrec.object.id": TICKET[1], "gen_ai.request.model": MODEL,
                            "flightrec.prompt.version": PROMPT}, trace_id=trace_id, start_ns=start_ns,
                     duration_ns=5_000_000_000)
    spans = [root, make_span("llm", {"flightrec.operation": "llm", "gen_ai.request.model": MODEL,
                                     "flightrec.prompt.version": PROMPT, "gen_ai.usage.input_tokens": 100,
                                     "gen_ai.usage.output_tokens": 20}, trace_id=trace_id,
                             parent=root.span_id, start_ns=start_ns + 1_000_000)]
    for index in range(7):  # a loop: the same call with the same arguments
        tool = make_span(TOOL, {"flightrec.operation": "tool", "gen_ai.tool.name": TOOL,
                                "gen_ai.tool.call.arguments": json.dumps({"q": EVIL})},
                         trace_id=trace_id, parent=root.span_id, start_ns=start_ns + (10 + index) * 1_000_000)
        if index == 6:
            tool.status.code = Status.STATUS_CODE_ERROR
            tool.status.message = ERROR
        spans.append(tool)
    at = start_ns + 100_000_000
    spans += [
        action(f"refund {EVIL}", TICKET, risk="low", trace_id=trace_id, parent=root.span_id, start_ns=at,
               undo={"kind": "http", "system": SYSTEM, "target": "/refunds/RF-1/undo",
                     "args": json.dumps({"note": EVIL})}),
        action(f"credit {EVIL}", TICKET, risk="low", trace_id=trace_id, parent=root.span_id, start_ns=at + 1_000,
               undo={"kind": f"kind {EVIL}", "system": SYSTEM, "target": TARGET}),
        action(f"refund-high {EVIL}", INVOICE, risk="low", trace_id=trace_id, parent=root.span_id,
               start_ns=at + 2_000, undo={"kind": "http", "system": SYSTEM, "target": "/refunds/RF-2/undo",
                                          "args": json.dumps({"amount": 12.5, "why": EVIL})}),
        action(f"void {EVIL}", TICKET, risk="low", trace_id=trace_id, parent=root.span_id, start_ns=at + 3_000,
               undo={"kind": "http", "system": SYSTEM, "target": TARGET, "args": json.dumps({"why": EVIL})}),
    ]
    return spans


def later_change(start_ns: int) -> list[Any]:
    """Another agent changes the ticket afterwards: the first refund's undo is conflicted, naming it."""
    trace_id = bytes(range(16, 32))
    return [action(f"override {EVIL}", TICKET, risk="low", trace_id=trace_id, parent=b"", start_ns=start_ns,
                   undo={})]


def register_system(server: ServerProcess, base_url: str) -> None:
    """Register the hostile agent's system of record (``SYSTEM``) on ``server``, as an operator would."""
    with server.client() as client:
        client.post("/api/systems", json={"name": SYSTEM, "actor": "sre.oncall", "base_url": base_url,
                                          "paths": SYSTEM_PATHS}).raise_for_status()


def send(server: ServerProcess, spans: list[Any], agent: str) -> None:
    with server.client() as client:
        client.post("/v1/traces", content=make_request(spans, {"service.name": agent}).SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"}).raise_for_status()


class Record:
    def __init__(self, server: ServerProcess, receiver: Receiver | None = None) -> None:
        self.server, self.receiver = server, receiver

    def get(self, path: str, **params: Any) -> Json:
        with self.server.client() as client:
            return client.get(path, params=params).raise_for_status().json()


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Record]:
    server = ServerProcess(tmp_path_factory.mktemp("hostile") / "srv", env=QUIET).start()
    receiver = Receiver()  # the system of record's address: plans are dry runs, so it must see nothing
    try:
        register_system(server, receiver.url)
        now = time.time_ns()
        send(server, hostile_run(now - 600_000_000_000), AGENT)
        send(server, later_change(now - 300_000_000_000), OTHER_AGENT)
        server.wait_drained()
        with server.client() as client:
            fired = client.post("/api/detectors/run").raise_for_status().json()["fired"]
            assert any(alert["detector"] == "loops" and alert["agent"] == AGENT for alert in fired), fired
            client.post(f"/api/controls/agents/{quote(SWITCHED, safe='')}/pause",
                        json={"actor": ACTOR, "reason": REASON, "force": True}).raise_for_status()
        yield Record(server, receiver)
    finally:
        server.stop()
        receiver.close()


# --- reading what a page sends the way Streamlit's frontend renders it ------------------------------

MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# Streamlit's renderer (frontend StreamlitMarkdown): when math is parsed, GFM literal autolinks (found in
# text after escapes are resolved), emoji shortcodes, and :name[...] directives.
_CODE_OR_ESCAPE = re.compile(r"(?m:^) {0,3}(`{3,}|~{3,})[\s\S]*?(?:\n[ \t]*\1|\Z)|(?<!`)(`+)[^`\n]+\2(?!`)|\\[\\$`]")
_BLOCK_MATH = re.compile(r"(?<!\$)\$\$+(?!\$)[\s\S]*?\$\$")
_INLINE_MATH = re.compile(r"(?<!\$)\$(?![\s$])[^$\n]*?[^\s$]\$(?!\d)")
_AUTOLINK = re.compile(r"(https?://|www(?=\.))([-.\w]+)|[-.\w+]+@[-\w]+(?:\.[-\w]+)+", re.IGNORECASE)
_SHORTCODE = re.compile(r":(?:\+1|-1|[A-Za-z][\w+-]*):")
_DIRECTIVE = re.compile(r"(?<!\\)(?:\\\\)*:([A-Za-z][\w-]*)(?=\[)")
OUR_DIRECTIVES = {f"{color}{badge}" for color in ("red", "orange", "yellow", "green", "blue", "violet", "gray",
                                                   "grey", "rainbow", "primary") for badge in ("", "-badge")}


_CODE_SPAN = re.compile(r"(?<![\\`])(`+)(?!`)[\s\S]*?(?<!`)\1(?!`)")  # CommonMark: a code span's content is literal


def streamlit_math(source: str) -> bool:
    """Streamlit's own test for "this Markdown has math" (it then renders ``$...$`` with KaTeX)."""
    stripped = _CODE_OR_ESCAPE.sub("_", source)
    return bool(_BLOCK_MATH.search(stripped) or _INLINE_MATH.search(stripped))


def live_constructs(source: str) -> list[str]:
    """What in ``source`` Streamlit would turn into a link, an image, HTML, math, an emoji or a directive
    carrying hostile text, or format a payload's words (``**bold**`` as bold, `` `x` `` as code)."""
    found = []
    tokens = MARKDOWN.parse(source)
    for token in tokens:
        if token.type == "html_block":
            found.append(f"html block {token.content!r}")
        for child in token.children or []:
            if child.type in ("link_open", "image", "html_inline"):
                found.append(f"{child.type} {child.attrs or child.content!r}")
            elif child.type == "text":
                if _AUTOLINK.search(child.content):
                    found.append(f"autolink in {child.content!r}")
                if _SHORTCODE.search(child.content):
                    found.append(f"emoji shortcode in {child.content!r}")
            elif child.type == "code_inline" and child.content == "x":
                found.append("`x` rendered as code")
        children = token.children or []
        for opener, middle in zip(children, children[1:], strict=False):
            if opener.type in ("strong_open", "em_open") and middle.content == "bold":
                found.append("**bold** rendered bold")
    outside_code = _CODE_SPAN.sub("_", source)
    if streamlit_math(outside_code):
        found.append("math")
    for match in _DIRECTIVE.finditer(outside_code):
        if match.group(1) not in OUR_DIRECTIVES:
            found.append(f"directive :{match.group(1)}[")
        if outside_code[match.end():].startswith("[alert]"):
            found.append(":red[alert] rendered in red")
    if ":material/warning:" in source:  # Streamlit rewrites it before parsing, even inside code spans
        found.append("material icon from a payload")
    return found


def markdown_sources(at: AppTest) -> list[tuple[str, str]]:
    """(where, Markdown source) of everything on the page that Streamlit renders as Markdown."""
    sources: list[tuple[str, str]] = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader"):
        sources += [(kind, element.value) for element in at.get(kind)]
    sources += [("expander label", element.label) for element in at.expander]
    sources += [("page link", element.value) for element in at.get("page_link")]
    sources += [("button", element.label) for element in at.button]
    sources += [("metric label", element.label) for element in at.metric]
    for table in at.table:
        frame = table.value
        sources += [("table header", str(column)) for column in frame.columns]
        sources += [("table cell", str(value)) for column in frame.columns for value in frame[column].tolist()]
    for widget in ("selectbox", "text_input", "toggle", "number_input", "segmented_control"):
        sources += [(f"{widget} label", element.label) for element in at.get(widget)
                    if getattr(element, "label", None)]
    return sources


def assert_text_only(at: AppTest) -> str:
    """No live Markdown anywhere on the page; answer the page's text as read (for presence checks)."""
    assert not at.exception, [error.value for error in at.exception]
    problems = [(where, source, found) for where, source in markdown_sources(at)
                for found in [live_constructs(source)] if found]
    assert not problems, "\n".join(f"{where}: {source!r}: {found}" for where, source, found in problems)
    for chart in at.get("plotly_chart"):
        spec = chart.proto.spec  # plotly reads <a href>, <b>, <br>... in its text: payloads go in escaped
        for payload in ("<img src=x", "<a ", "<b>bold", "%{x^2}"):
            assert payload not in spec, f"raw HTML {payload!r} in a chart: {spec[:300]}"
    return "\n".join(plain_text(source) for _, source in markdown_sources(at))


def assert_shown(text: str, value: str) -> None:
    """``value`` reads on the page exactly as the agent sent it (line breaks aside)."""
    assert value in text, f"{value!r} is not on the page:\n{text[:3000]}"


def dashboards(monkeypatch: pytest.MonkeyPatch, api_url: str, state: Json | None = None) -> AppTest:
    monkeypatch.setenv("FLIGHTREC_API_URL", api_url)
    monkeypatch.delenv("FLIGHTREC_API_TOKEN", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    return at


def open_page(monkeypatch: pytest.MonkeyPatch, api_url: str, view: str, state: Json | None = None,
              **params: str) -> AppTest:
    at = dashboards(monkeypatch, api_url, state)
    at.run()
    at.query_params.update(params)
    at.switch_page(view)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def shared_link(monkeypatch: pytest.MonkeyPatch, api_url: str, state: Json | None = None, **params: str) -> AppTest:
    at = dashboards(monkeypatch, api_url, state)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


# --- the helper itself ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [*PAYLOADS, EVIL, "a\n\n# heading\n- item\n1. one\n> quote\n---", "| a | b |",
                                     "&lt;b&gt;", "\\*still literal\\*", "..", "TCK-1042"])
def test_md_reads_as_the_text_itself_and_nothing_else(payload: str) -> None:
    escaped = md(payload)
    assert not live_constructs(escaped), live_constructs(escaped)
    assert plain_text(escaped) == re.sub(r"[\r\n]+", " ", payload)
    rendered = MARKDOWN.render(escaped)
    assert rendered.count("<p>") == 1 and "<h1" not in rendered and "<li" not in rendered, rendered
    assert not live_constructs(f"**{escaped}** · :red-badge[{escaped}] · {code(payload)}")


def test_code_spans_hold_any_backticks_and_html_escapes_plotly_text() -> None:
    for text in ("`x`", "``", "a ``` b", TARGET):
        [token] = [child for child in MARKDOWN.parseInline(code(text))[0].children if child.type == "code_inline"]
        assert token.content == text
    assert html("<a href='http://evil.example'>x</a> & <b>") == "&lt;a href='http://evil.example'&gt;x&lt;/a&gt; &amp; &lt;b&gt;"


# --- every page type, seeded with hostile values ----------------------------------------------------

def test_story_page_shows_hostile_names_ids_and_errors_as_text(monkeypatch, record: Record) -> None:
    at = shared_link(monkeypatch, record.server.url, object=ref(TICKET))
    text = assert_text_only(at)
    for value in (f"Ticket {TICKET[1]}", AGENT, OTHER_AGENT):
        assert_shown(text, value)
    assert len(at.expander) >= 10, "every step narrated"
    [chart] = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    lanes = {lane for trace in chart["data"] for lane in trace["y"]}
    assert html(AGENT) in lanes and AGENT not in lanes, "agent names go into the timeline HTML-escaped"
    for step in range(len(at.expander)):  # every step's facts and raw span, opened
        at.session_state[f"step-{ref(TICKET)}-{step}"] = True
    at.run()
    text = assert_text_only(at)
    assert at.table and at.get("json")
    assert_shown(text, ERROR)


def test_trace_page_shows_hostile_span_names_as_text(monkeypatch, record: Record) -> None:
    at = open_page(monkeypatch, record.server.url, TRACE_PAGE, trace=bytes(range(16)).hex())
    text = assert_text_only(at)
    assert_shown(text, f"Run “{FLOW}” by {AGENT}")
    [chart] = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert any(html(TOOL) in tick for tick in chart["layout"]["yaxis"]["ticktext"])
    assert not any(TOOL in tick for tick in chart["layout"]["yaxis"]["ticktext"])
    assert TOOL in at.dataframe[0].value["span"].str.strip("\u00a0").tolist(), "dataframes show text as is"


def test_objects_page_and_search_show_hostile_ids_and_agents_as_text(monkeypatch, record: Record) -> None:
    at = shared_link(monkeypatch, record.server.url, state={"search": "TCK"})
    text = assert_text_only(at)
    assert_shown(text, f"Ticket {TICKET[1]}")
    assert_shown(text, f"Invoice {INVOICE[1]}")
    assert_shown(text, AGENT)
    at = open_page(monkeypatch, record.server.url, OBJECTS_PAGE, agent=AGENT)
    assert_shown(assert_text_only(at), f"Objects touched by agent **{AGENT}**.")


def test_rollback_console_shows_hostile_actions_targets_and_reasons_as_text(monkeypatch, record: Record) -> None:
    state = {"you_are": ACTOR}
    at = open_page(monkeypatch, record.server.url, ROLLBACK_PAGE, state=state, agent=AGENT)
    text = assert_text_only(at)
    assert_shown(text, f"refund {EVIL}")
    assert_shown(text, f"{TICKET[0]}:{TICKET[1]}")
    at.button(key="rb_build").click().run()
    text = assert_text_only(at)
    plan = record.get(f"/api/rollback/plans/{at.session_state['rb_plan']}")
    steps = {step["action"]: step for step in plan["steps"]}
    reasons = [step["reason"] for step in plan["steps"] if step["reason"]]
    assert steps[f"refund {EVIL}"]["status"] == "conflicted" and OTHER_AGENT in steps[f"refund {EVIL}"]["reason"]
    assert steps[f"credit {EVIL}"]["status"] == "irreversible" and f"kind {EVIL}" in steps[f"credit {EVIL}"]["reason"]
    void = steps[f"void {EVIL}"]
    assert void["status"] == "irreversible" and void["reason"].startswith(TARGET_REFUSED), void["reason"]
    for reason in reasons:
        assert_shown(text, reason)  # the hostile kind, agent and undo target, quoted in reasons, read as text
    assert_shown(text, f"Hand to a person: {void['reason']}")
    targets = [block.value for block in at.code]
    assert sorted(targets) == ["/refunds/RF-1/undo", "/refunds/RF-2/undo"], "each call's target, as text, in code"
    high = steps[f"refund-high {EVIL}"]
    assert (high["status"], high["risk"], high["reported_risk"]) == ("reversible", "high", "low"), high
    assert plan["requires_approval"]
    assert_shown(text, f"Approve as {ACTOR}")
    shown_args = [json.loads(element.value) for element in at.json]
    assert {"note": EVIL} in shown_args and {"amount": 12.5, "why": EVIL} in shown_args, "arguments as JSON, as is"
    assert record.receiver is not None and record.receiver.requests == [], "a dry run calls nothing"

    at = open_page(monkeypatch, record.server.url, ROLLBACK_PAGE, state=state, agent=SWITCHED)
    text = assert_text_only(at)
    assert_shown(text, f"Set by **{ACTOR}**")
    assert_shown(text, REASON)


def test_triage_alerts_and_governance_show_hostile_agents_tools_and_versions_as_text(monkeypatch,
                                                                                    record: Record) -> None:
    at = open_page(monkeypatch, record.server.url, TRIAGE_PAGE)
    text = assert_text_only(at)
    assert_shown(text, AGENT)
    assert_shown(text, f"called {TOOL}")
    legend = {trace.get("name") for chart in at.get("plotly_chart") for trace in json.loads(chart.proto.spec)["data"]}
    assert html(f"{MODEL} / {PROMPT}") in legend, legend
    assert AGENT in at.selectbox(key="triage_agent").options, "selectbox options are plain text: as sent"

    at = open_page(monkeypatch, record.server.url, TRIAGE_PAGE, agent=AGENT)
    assert_shown(assert_text_only(at), f"{AGENT} looped")

    at = open_page(monkeypatch, record.server.url, ALERTS_PAGE)
    text = assert_text_only(at)
    assert_shown(text, AGENT)
    assert_shown(text, json.dumps({"q": EVIL}))  # the details table: tool, arguments, dedup key

    at = open_page(monkeypatch, record.server.url, GOVERNANCE_PAGE, agent=AGENT)
    text = assert_text_only(at)
    assert_shown(text, AGENT)


# --- names with "/", spaces and other scripts reach their routes --------------------------------

ODD_NAMES = ("bad agent/../x", "a/b", "代理 ü")


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Record]:
    server = ServerProcess(tmp_path_factory.mktemp("odd-names") / "srv", env=QUIET).start()
    try:
        for index, name in enumerate(ODD_NAMES):
            trace_id = bytes([index + 1]) * 16
            root = make_span(f"flow {name}", {"flightrec.operation": "agent", "flightrec.object.type": "ticket",
                                              "flightrec.object.id": name}, trace_id=trace_id,
                             start_ns=time.time_ns() - 60_000_000_000)
            send(server, [root, action(f"refund {name}", ("ticket", name), risk="low", trace_id=trace_id,
                                       parent=root.span_id, start_ns=root.start_time_unix_nano + 1000,
                                       undo={})], name)
        server.wait_drained()
        yield Record(server)
    finally:
        server.stop()


@pytest.mark.parametrize("name", ODD_NAMES)
def test_the_story_of_an_object_whose_id_has_slashes_spaces_or_other_scripts(monkeypatch, odd: Record,
                                                                             name: str) -> None:
    at = shared_link(monkeypatch, odd.server.url, object=f"ticket:{name}")
    assert not at.warning and not at.error, [plain_text(element.value) for element in [*at.warning, *at.error]]
    assert plain_text(at.title[0].value) == f"Ticket {name}"
    labels = [plain_text(expander.label) for expander in at.expander]
    assert any(f"started “flow {name}” on ticket {name}." in label for label in labels), labels
    assert at.get("download_button"), "the story's HTML downloaded too"


@pytest.mark.parametrize("name", ODD_NAMES)
def test_the_kill_switch_of_an_agent_whose_name_has_slashes_spaces_or_other_scripts(monkeypatch, odd: Record,
                                                                                    name: str) -> None:
    at = open_page(monkeypatch, odd.server.url, ROLLBACK_PAGE, state={"you_are": "erin"}, agent=name)
    assert not at.error, [plain_text(element.value) for element in at.error]
    assert any(f"refund {name}" in plain_text(element.value) for element in at.markdown)
    at.button(key="rb_pause").click().run()
    with odd.server.client() as client:
        control = client.get(f"/api/controls/agents/{quote(name, safe='')}").raise_for_status().json()
        assert (control["agent"], control["state"], control["actor"]) == (name, "paused", "erin")
        assert client.get("/api/controls/check", params={"agent": name}).json()["allowed"] is False
        others = {item["agent"] for item in client.get("/api/controls").json()["items"] if item["state"] == "paused"}
    assert others == {name}, "only that agent was paused (not x, not b)"
    assert any(f"{name} is now paused" in plain_text(element.value) for element in at.success)
    at.button(key="rb_resume").click().run()
    assert not at.error


# --- ingest health on the triage page -------------------------------------------------------------

def test_triage_shows_a_healthy_ingest_in_one_line(monkeypatch, odd: Record) -> None:
    at = open_page(monkeypatch, odd.server.url, TRIAGE_PAGE)
    health = odd.get("/api/health")
    assert health["status"] == "ok"
    line = next(plain_text(text.value) for text in at.caption if "ingest ok" in plain_text(text.value))
    assert "Backlog 0 span(s)" in line and "nothing quarantined" in line
    assert not at.error and not any("Ingest health" in plain_text(text.value) for text in at.markdown)


class UnhealthyServer(ServerProcess):
    """A server that may answer 503 on /api/health from the start (conftest's ``start`` waits for 200)."""

    def start(self, timeout_s: float = 60) -> "UnhealthyServer":
        self.data.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "flightrec", "serve", "--data", str(self.data), "--http-port",
                   str(self.http_port), "--grpc-port", str(self.grpc_port), "--log-level", "warning", *self.args]
        self.proc = subprocess.Popen(command, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")


def poisoned_wal(data: Path) -> None:
    """An acknowledged batch the store can never hold (a span ending past 2^63 ns), left in the WAL as a
    crash would leave it: intake validation never sees it, the writer must quarantine it."""
    from flightrec.collector.wal import encode_record

    span = make_span("poison", {"flightrec.operation": "tool"}, start_ns=2**63 + 5, duration_ns=1)
    wal = data / "wal"
    wal.mkdir(parents=True, exist_ok=True)
    (wal / "0-poisoned.wal").write_bytes(encode_record(make_request([span]).SerializeToString(), 1))


def wait_for(condition: Callable[[], Any], timeout_s: float = 60, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s} s: {condition.__doc__ or condition}")


def test_triage_shows_an_unhealthy_ingest_its_quarantine_and_replays_a_segment(monkeypatch, tmp_path: Path) -> None:
    server = UnhealthyServer(tmp_path / "srv", env=QUIET)
    poisoned_wal(server.data)
    server.start()
    try:
        def quarantined() -> list[Json]:
            """the poisoned segment is quarantined"""
            with server.client() as client:
                answer = client.get("/api/quarantine")
                return answer.json()["items"] if answer.status_code == 200 else []

        [item] = wait_for(quarantined)
        with server.client() as client:
            answer = client.get("/api/health")
        health = answer.json()
        assert health["quarantine"]["segments"] == 1

        at = open_page(monkeypatch, server.url, TRIAGE_PAGE)
        page = "\n".join(plain_text(element.value) for element in [*at.markdown, *at.caption, *at.error])
        assert "Cannot reach" not in page, "a 503 from /api/health is a health answer"
        assert "**Ingest health**" in page and f"-badge[ingest {health['status']}]" in page
        if answer.status_code == 503:
            assert "the server answers 503" in page
        for problem in health["problems"]:
            assert problem in page
        assert [metric.value for metric in at.metric][:2] == [f"{health['backlog_spans']:,}", "1"]
        assert item["reason"] in [block.value for block in at.code], "why the store refused it, as text"
        assert item["segment"] in page
        replay = at.button(key=f"replay-{item['segment']}")
        assert replay.disabled, "nobody replays before saying who they are"

        at = open_page(monkeypatch, server.url, TRIAGE_PAGE, state={"you_are": "olga"})
        at.button(key=f"replay-{item['segment']}").click().run()
        assert not at.exception
        assert any(f"Segment {item['segment']} is back in line" in plain_text(element.value) and "olga" in
                   plain_text(element.value) for element in at.success), [e.value for e in [*at.success, *at.error]]

        def requarantined() -> bool:
            """the replayed segment was tried again (and, still poisoned, set aside again)"""
            items = quarantined()
            return bool(items) and items[0]["quarantined_at"] > item["quarantined_at"]

        wait_for(requarantined)
    finally:
        server.stop()
