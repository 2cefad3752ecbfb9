"""Names with any characters work everywhere (issue 8): agents, flows and objects called
``a/b``, ``bad agent/../x``, ``ünïcødé 代理``, ``quote"d'`` or with a line break reach the route
that names them, through the API, its HTML story (UTF-8, safe headers) and the CLI.

One real ``flightrec serve`` for the module; every path is built with ``flightrec.sdk.api_path``,
the one encoder the clients share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest

from flightrec.api.objects import content_disposition
from flightrec.sdk import api_path, path_segment
from tests.conftest import ServerProcess
from tests.otlp_helpers import make_request, make_span
from tests.test_cli import run_cli

pytestmark = pytest.mark.slow

AGENTS = ["bad agent/../x", "a/b", "ünïcødé 代理", "quote\"d'", "x/pause", ".."]
OBJECTS = [("ticket", "TCK/42"), ("ticket", "ünïcødé 代理-7"), ("ticket", "line\nbreak"), ("my/type", "a/b")]
ACTOR = "sre.oncall"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose store holds one trace for each object in OBJECTS."""
    started = ServerProcess(tmp_path_factory.mktemp("names")).start()
    try:
        spans = [
            make_span("invoke_agent", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "names-agent",
                                       "flightrec.object.type": kind, "flightrec.object.id": ident})
            for kind, ident in OBJECTS
        ]
        with started.client() as client:
            response = client.post("/v1/traces", content=make_request(spans).SerializeToString(),
                                   headers={"Content-Type": "application/x-protobuf"})
            assert response.status_code == 200, response.text
        started.wait_drained()
        yield started
    finally:
        started.stop()


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def switch(api: httpx.Client, agent: str, command: str) -> dict:
    response = api.post(api_path("controls", "agents", agent, command), json={"actor": ACTOR, "reason": "names test",
                                                                            "force": True})
    assert response.status_code == 200, response.text
    return response.json()


def state(api: httpx.Client, agent: str) -> str:
    response = api.get(api_path("controls", "agents", agent))
    assert response.status_code == 200, response.text
    assert response.json()["agent"] == agent
    return response.json()["state"]


def set_names(api: httpx.Client) -> set[str]:
    """Every agent whose switch was ever set."""
    return {item["agent"] for item in api.get("/api/controls").json()["items"] if item["agent"] is not None}


def test_path_segment_encodes_every_separator_and_dot_segment() -> None:
    assert path_segment("bad agent/../x") == "bad%20agent%2F..%2Fx"
    assert path_segment("..") == "%2E%2E" and path_segment(".") == "%2E"
    assert path_segment("a.b") == "a.b"
    assert api_path("controls", "agents", "l\nb?#%", "pause") == "/api/controls/agents/l%0Ab%3F%23%25/pause"
    for name in AGENTS:
        assert unquote(path_segment(name)) == name and "/" not in path_segment(name)


@pytest.mark.parametrize("agent", AGENTS)
def test_an_agent_with_any_name_is_paused_read_and_resumed(api: httpx.Client, agent: str) -> None:
    before = set_names(api)
    paused = switch(api, agent, "pause")
    assert paused["agent"] == agent and paused["state"] == "paused"
    assert state(api, agent) == "paused"
    decision = api.get("/api/controls/check", params={"agent": agent}).json()
    assert decision["allowed"] is False
    # only that agent's switch was set: not x, a, pause or an agent named after a path step
    assert set_names(api) - before <= {agent}
    assert agent in set_names(api)
    assert switch(api, agent, "resume")["state"] == "running"
    assert state(api, agent) == "running"


def test_names_that_look_like_paths_reach_no_other_agent(api: httpx.Client) -> None:
    switch(api, "a/b", "pause")
    switch(api, "bad agent/../x", "pause")
    assert state(api, "a") == "running" and state(api, "x") == "running" and state(api, "b") == "running"
    assert not {"a", "x", "b", "bad agent", "pause"} & set_names(api)
    # "x/pause" is a name; GET reads it, POST .../resume flips it
    switch(api, "x/pause", "resume")
    assert state(api, "x/pause") == "running"


def test_the_cli_pauses_exactly_the_agent_it_names(server: ServerProcess, api: httpx.Client) -> None:
    agent = "bad agent/../x"
    for command, expected in (("resume", "running"), ("pause", "paused")):
        done = run_cli(command, agent, "--actor", ACTOR, "--api", server.url, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{agent}: {expected}" in done.stdout
        assert state(api, agent) == expected
    assert state(api, "x") == "running"
    assert "x" not in set_names(api)
    audit = api.get("/api/audit").json()["items"]
    assert {"agent:x", "agent:bad agent/x"}.isdisjoint(entry["subject"] for entry in audit)


def test_a_markup_like_agent_name_prints_as_text(server: ServerProcess) -> None:
    agent = "[bold]a[/b] [/]"
    done = run_cli("pause", agent, "--force", "--actor", ACTOR, "--api", server.url, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{agent}: paused" in done.stdout


@pytest.mark.parametrize(("kind", "ident"), OBJECTS)
def test_story_and_spans_of_an_object_with_any_id(api: httpx.Client, kind: str, ident: str) -> None:
    spans = api.get(api_path("objects", kind, ident, "spans"))
    assert spans.status_code == 200, spans.text
    assert spans.json()["object"] == {"type": kind, "id": ident}
    assert len(spans.json()["spans"]) == 1
    story = api.get(api_path("objects", kind, ident, "story"))
    assert story.status_code == 200, story.text
    assert story.json()["object"] == {"type": kind, "id": ident}


@pytest.mark.parametrize(("kind", "ident"), OBJECTS)
def test_story_html_is_utf8_with_a_safe_content_disposition(api: httpx.Client, kind: str, ident: str) -> None:
    response = api.get(api_path("objects", kind, ident, "story.html"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert ident.split("\n")[0] in response.content.decode("utf-8")
    header = response.headers["content-disposition"]
    assert header.isascii() and "\r" not in header and "\n" not in header
    encoded = re.search(r"filename\*=UTF-8''(\S+)$", header)
    assert encoded and unquote(encoded.group(1)) == f"story-{kind}-{ident}.html"
    fallback = re.search(r'filename="([^"]*)"', header)
    assert fallback and "/" not in fallback.group(1)
    exported = [e for e in api.get("/api/audit", params={"limit": 100_000}).json()["items"] if e["act"] == "story.export"]
    assert exported[-1]["subject"] == f"{kind}:{ident}" and exported[-1]["actor"] == "local"  # an evidence read, audited
    # the connection survived: the next request on it is answered
    assert api.get("/api/stats").status_code == 200


def test_unknown_objects_and_odd_ids_get_a_clear_answer(api: httpx.Client) -> None:
    missing = api.get(api_path("objects", "ticket", "no such/ticket", "story.html"))
    assert missing.status_code == 404 and "no spans linked to ticket:no such/ticket" in missing.json()["detail"]
    trace = api.get(api_path("traces", "../stats"))
    assert trace.status_code == 400 and "not 32 hex digits" in trace.json()["detail"]
    plan = api.get(api_path("rollback", "plans", "a/b\nc"))
    assert plan.status_code == 404, plan.text


def test_the_cli_tells_the_story_of_an_object_whose_id_has_a_slash(server: ServerProcess) -> None:
    done = run_cli("story", "ticket:TCK/42", "--api", server.url, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ticket TCK/42" in done.stdout and "Outcome." in done.stdout


def test_content_disposition_keeps_any_name_out_of_the_header_syntax() -> None:
    for name in ("story-ticket-line\r\nSet-Cookie: x=1.html", 'story-a"b\\c/d.html', "story-代理.html"):
        header = content_disposition("inline", name)
        assert header.isascii() and "\r" not in header and "\n" not in header
        assert header.count('"') == 2
        assert unquote(header.split("filename*=UTF-8''", 1)[1]) == name

