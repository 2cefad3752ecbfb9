"""People and agents sign in; roles decide (issue 10, first part). Every claim here is tried as
an attacker would: every route with every role, a spoofed actor, revoked and unknown tokens, an
agent asking about another agent, a control client without a token, and the stored tokens."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flightrec.auth import ROUTE_ROLES, Role
from flightrec.sdk import ControlClient
from flightrec.store import Store, StoreConfig, open_store
from flightrec.store.principals import token_hash
from tests.conftest import ServerProcess

ADMIN_TOKEN = "bootstrap-admin-token-for-tests-0123"
OPEN = {("GET", "/api/health"), ("GET", "/api/health/live")}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("auth") / "srv", env={"FLIGHTREC_API_TOKEN": ADMIN_TOKEN}).start()
    yield server
    server.stop()


def call(server: ServerProcess, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def tokens(auth_server: ServerProcess) -> dict[str, str]:
    """One principal per role (an agent principal for the agent role), created by the bootstrap admin."""
    out = {"admin": ADMIN_TOKEN}
    for role in Role:
        if role is Role.admin:
            continue
        body = {"name": f"{role.value}-1", "roles": [role.value]}
        if role is Role.agent:
            body |= {"kind": "agent", "agents": ["refund_agent"]}
        created = call(auth_server, "POST", "/api/principals", ADMIN_TOKEN, json=body)
        assert created.status_code == 201, created.text
        out[role.value] = created.json()["token"]
    return out


def api_routes(server: ServerProcess) -> list[tuple[str, str]]:
    paths = call(server, "GET", "/openapi.json").json()["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops if path.startswith("/api/"))


def test_the_route_table_covers_every_api_route(auth_server: ServerProcess) -> None:
    routes = set(api_routes(auth_server)) - OPEN
    assert routes == set(ROUTE_ROLES), (sorted(routes - set(ROUTE_ROLES)), sorted(set(ROUTE_ROLES) - routes))


def test_every_route_with_every_role(auth_server: ServerProcess, tokens: dict[str, str]) -> None:
    """Allowed: anything but 401/403 (a 404 or 422 for the placeholder ids is fine). Refused: 403, naming the roles."""
    wrong: list[str] = []
    for method, path in api_routes(auth_server):
        if (method, path) in OPEN:
            continue
        url = path.replace("{", "").replace("}", "")  # placeholder ids: type, id, plan_id, ... as literal words
        if path == "/api/controls/check":
            url += "?agent=refund_agent"
        kwargs = {"json": {}} if method in ("POST", "PUT") else {}
        assert call(auth_server, method, url, **kwargs).status_code == 401, f"{method} {path} open without a token"
        for role, token in tokens.items():
            status = call(auth_server, method, url, token, **kwargs).status_code
            may = role == "admin" or Role(role) in ROUTE_ROLES[(method, path)]
            if may and status in (401, 403) or not may and status != 403:
                wrong.append(f"{role} {method} {path}: {status}")
    assert not wrong, wrong


def test_the_actor_is_the_principal_not_the_request(auth_server: ServerProcess, tokens: dict[str, str]) -> None:
    paused = call(auth_server, "POST", "/api/controls/agents/spoof_agent/pause", tokens["sre"],
                  json={"actor": "cfo", "reason": "test", "force": True})
    assert paused.status_code == 200 and paused.json()["actor"] == "sre-1", paused.text
    entries = call(auth_server, "GET", "/api/audit", tokens["auditor"]).json()["items"]
    assert [e["actor"] for e in entries if e["subject"] == "agent:spoof_agent"] == ["sre-1"]


def test_revoked_unknown_and_missing_tokens_are_refused(auth_server: ServerProcess) -> None:
    created = call(auth_server, "POST", "/api/principals", ADMIN_TOKEN, json={"name": "temp-1", "roles": ["viewer"]})
    token = created.json()["token"]
    assert call(auth_server, "GET", "/api/stats", token).status_code == 200
    assert call(auth_server, "DELETE", "/api/principals/temp-1", ADMIN_TOKEN).json()["revoked"] is True
    assert call(auth_server, "GET", "/api/stats", token).status_code == 401
    assert call(auth_server, "GET", "/api/stats", token + "x").status_code == 401
    assert call(auth_server, "GET", "/api/stats", "").status_code == 401
    assert call(auth_server, "POST", "/api/principals", ADMIN_TOKEN,
                json={"name": "temp-1", "roles": ["viewer"]}).status_code == 201  # a new token after revoking
    assert call(auth_server, "GET", "/api/stats", token).status_code == 401  # the old one stays dead
    listed = call(auth_server, "GET", "/api/principals", ADMIN_TOKEN).text
    assert token not in listed and "token_hint" in listed


@pytest.mark.parametrize(("body", "reason"), [
    ({"name": "bad name", "roles": ["viewer"]}, "a name is letters"),
    ({"name": "admin", "roles": ["viewer"]}, "not 'local' or 'admin'"),
    ({"name": "x-bot", "kind": "agent", "roles": ["agent"]}, "names the agents"),
    ({"name": "x-bot", "kind": "agent", "roles": ["sre"], "agents": ["a"]}, "the role agent only"),
    ({"name": "x-person", "roles": ["agent"]}, "for agent principals"),
    ({"name": "x-person", "roles": ["root"]}, "Input should be"),
    ({"name": "x-person", "roles": []}, "at least 1"),
])
def test_a_bad_principal_is_refused_with_the_reason(auth_server: ServerProcess, body: dict, reason: str) -> None:
    refused = call(auth_server, "POST", "/api/principals", ADMIN_TOKEN, json=body)
    assert refused.status_code == 422 and reason in refused.text, refused.text


def test_an_existing_principal_is_not_overwritten(auth_server: ServerProcess, tokens: dict[str, str]) -> None:
    again = call(auth_server, "POST", "/api/principals", ADMIN_TOKEN, json={"name": "sre-1", "roles": ["admin"]})
    assert again.status_code == 409
    assert call(auth_server, "GET", "/api/stats", tokens["sre"]).status_code == 200


def test_an_agent_token_checks_only_its_own_agents(auth_server: ServerProcess, tokens: dict[str, str]) -> None:
    call(auth_server, "POST", "/api/controls/agents/refund_agent/pause", tokens["sre"], json={"force": True})
    own = call(auth_server, "GET", "/api/controls/check?agent=refund_agent", tokens["agent"])
    assert own.status_code == 200 and own.json()["allowed"] is False
    other = call(auth_server, "GET", "/api/controls/check?agent=billing_agent", tokens["agent"])
    assert other.status_code == 403 and "speaks for refund_agent" in other.text
    assert call(auth_server, "POST", "/api/controls/agents/refund_agent/resume", tokens["agent"], json={}).status_code == 403
    with ControlClient(auth_server.url, token=tokens["agent"], cache_s=0) as client:
        assert client.check("refund_agent").allowed is False


def test_a_control_client_without_a_token_fails_closed(auth_server: ServerProcess, tokens: dict[str, str]) -> None:
    """The README's ControlClient(..., fail_open=True) with no token used to read 401 as 'allowed'."""
    call(auth_server, "POST", "/api/controls/agents/refund_agent/pause", tokens["sre"], json={"force": True})
    with ControlClient(auth_server.url, fail_open=True, cache_s=0) as client:
        decision = client.check("refund_agent")
    assert decision.allowed is False and "HTTP 401" in decision.reason


def test_a_control_client_with_a_wrong_token_fails_closed_and_says_why(auth_server: ServerProcess,
                                                                       tokens: dict[str, str]) -> None:
    """A mistyped agent token holds the agent even while it runs (fail_open covers an unreachable server, not a
    refusal); the same client with the right token is allowed, then refused once the agent is paused."""
    call(auth_server, "POST", "/api/controls/agents/refund_agent/resume", tokens["sre"], json={"force": True})
    for fail_open in (True, False):
        with ControlClient(auth_server.url, token=tokens["agent"] + "x", fail_open=fail_open, cache_s=0) as client:
            decision = client.check("refund_agent")
        assert decision.allowed is False and decision.state == "refused", decision
        assert "HTTP 401" in decision.reason and "agent token for refund_agent" in decision.reason, decision.reason
    with ControlClient(auth_server.url, token=tokens["agent"], cache_s=0) as client:
        assert client.check("refund_agent").allowed is True
        call(auth_server, "POST", "/api/controls/agents/refund_agent/pause", tokens["sre"], json={"force": True})
        paused = client.check("refund_agent")
    assert paused.allowed is False and paused.state == "paused", paused


def test_tokens_are_stored_as_hashes_only(chdb_dir: Path) -> None:
    store: Store = open_store(StoreConfig(dsn=f"chdb://{chdb_dir}", database=f"t_{uuid.uuid4().hex[:10]}"))
    try:
        principal, token = store.principals.create(name="pat", kind="person", roles=["viewer"], agents=[],
                                                   created_by="test")
        rows = store.engine.query("t", f"SELECT * FROM {store.db}.principals")
        assert rows and all(token not in str(value) for row in rows for value in row)
        assert token_hash(token) in [value for row in rows for value in row]
        assert store.principals.by_token(token=token).name == "pat"
        assert store.principals.by_token(token=token[:-1]) is None
        store.principals.revoke(name="pat")
        assert store.principals.by_token(token=token) is None and store.principals.get(name="pat").revoked
    finally:
        store.engine.command("t", f"DROP DATABASE IF EXISTS {store.db}")
        store.close()


def test_without_auth_the_local_principal_is_named_by_the_request(server: ServerProcess) -> None:
    assert call(server, "POST", "/api/controls/agents/a1/pause", json={}).status_code == 400
    named = call(server, "POST", "/api/controls/agents/a1/pause", json={"actor": "maria", "force": True})
    assert named.status_code == 200 and named.json()["actor"] == "maria"
    assert call(server, "GET", "/api/stats", "not-a-token").status_code == 401  # a token sent is always checked


@pytest.mark.parametrize("token", ["", "   ", "short-token"])
def test_an_empty_or_short_api_token_is_refused_at_start_up(tmp_path: Path, token: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "FLIGHTREC_API_TOKEN": token, "FLIGHTREC_DATA": str(tmp_path)}
    started = subprocess.run([sys.executable, "-m", "flightrec", "serve", "--http-port", "1", "--grpc-port", "2"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 2, started.stdout + started.stderr
    assert "at least 16 characters" in started.stdout + started.stderr


def test_a_switch_for_an_agent_never_seen_is_refused_unless_forced(server: ServerProcess) -> None:
    from tests.otlp_helpers import make_request, make_span

    body = make_request([make_span("run", {"gen_ai.agent.name": "support-agent"})], {"service.name": "svc"})
    assert httpx.post(server.url + "/v1/traces", content=body.SerializeToString(), timeout=30,
                      headers={"content-type": "application/x-protobuf"}).status_code == 200
    server.wait_drained()
    typo = call(server, "POST", "/api/controls/agents/suport-agent/pause", json={"actor": "maria"})
    assert typo.status_code == 404 and "no agent named 'suport-agent' has sent spans" in typo.text
    assert "'support-agent'" in typo.text and "nothing was changed" in typo.text
    assert call(server, "GET", "/api/controls/agents/suport-agent").json()["updated_at"] is None
    forced = call(server, "POST", "/api/controls/agents/suport-agent/pause", json={"actor": "maria", "force": True}).json()
    assert forced["state"] == "paused" and "applies when it does" in forced["note"]
    resumed = call(server, "POST", "/api/controls/agents/suport-agent/resume", json={"actor": "maria"})
    assert resumed.status_code == 200, "a switch once set is known: resuming it needs no force"
    known = call(server, "POST", "/api/controls/agents/support-agent/pause", json={"actor": "maria"}).json()
    assert known["note"] == ""
    from typer.testing import CliRunner

    from flightrec.cli import app

    said = CliRunner().invoke(app, ["pause", "other-typo", "--actor", "maria", "--api", server.url])
    assert said.exit_code == 1 and "no agent named 'other-typo' has sent spans" in " ".join(said.output.split())
    said = CliRunner().invoke(app, ["pause", "other-typo", "--force", "--actor", "maria", "--api", server.url])
    assert said.exit_code == 0 and "warning: no agent named 'other-typo'" in " ".join(said.output.split())


def test_tokens_create_prints_the_token_on_its_last_line(auth_server: ServerProcess) -> None:
    from typer.testing import CliRunner

    from flightrec.cli import app

    env = {"FLIGHTREC_API_TOKEN": ADMIN_TOKEN}
    made = CliRunner().invoke(app, ["tokens", "create", "--name", "cli-bot", "--role", "agent", "--agents", "a1,a2",
                                    "--services", "svc-1", "--api", auth_server.url], env=env)
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    assert token.startswith("frt_") and "agents a1, a2; services svc-1" in made.output
    who = call(auth_server, "GET", "/api/whoami", token).json()
    assert who == {"name": "cli-bot", "role": "agent", "roles": ["agent"], "kind": "agent", "agents": ["a1", "a2"]}
    listed = CliRunner().invoke(app, ["tokens", "list", "--api", auth_server.url], env={**env, "COLUMNS": "200"})
    assert listed.exit_code == 0 and "cli-bot" in listed.output and token not in listed.output
    person = CliRunner().invoke(app, ["tokens", "create", "--name", "cli-person", "--role", "agent", "--kind", "person",
                                      "--api", auth_server.url], env=env)
    assert person.exit_code == 1 and "for agent principals" in " ".join(person.output.split())
    gone = CliRunner().invoke(app, ["tokens", "revoke", "cli-bot", "--api", auth_server.url], env=env)
    assert gone.exit_code == 0 and call(auth_server, "GET", "/api/whoami", token).status_code == 401


def test_a_tenant_scoped_person_reads_only_that_tenant(auth_server: ServerProcess) -> None:
    """Reads that filter by tenant answer with that tenant's spans only; every fleet-wide route is refused."""
    import os
    import time

    from tests.otlp_helpers import make_request, make_span

    start = time.time_ns() - 60_000_000_000
    traces = {}
    for name, tenant, ticket in (("acme-run", "acme", "TEN-A"), ("globex-run", "globex", "TEN-G"),
                                 ("acme-shared", "acme", "TEN-X"), ("globex-shared", "globex", "TEN-X")):
        trace_id = os.urandom(16)
        traces[name] = trace_id.hex()
        span = make_span(name, {"gen_ai.agent.name": "refund_agent", "tenant.id": tenant, "ticket.id": ticket},
                         trace_id=trace_id, start_ns=start)
        sent = httpx.post(auth_server.url + "/v1/traces", content=make_request([span]).SerializeToString(),
                          headers={"content-type": "application/x-protobuf"}, timeout=30)
        assert sent.status_code == 200
    auth_server.wait_drained()
    made = call(auth_server, "POST", "/api/principals", ADMIN_TOKEN,
                json={"name": "acme-auditor", "roles": ["auditor"], "tenant": "acme"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]

    listed = {item["id"] for item in call(auth_server, "GET", "/api/objects?q=TEN-", token).json()["items"]}
    assert listed == {"TEN-A", "TEN-X"}
    assert call(auth_server, "GET", "/api/objects/ticket/TEN-G/story", token).status_code == 404
    shared = call(auth_server, "GET", "/api/objects/ticket/TEN-X/spans", token).json()["spans"]
    assert [span["name"] for span in shared] == ["acme-shared"]
    story = call(auth_server, "GET", "/api/objects/ticket/TEN-X/story", token).json()
    assert story["traces"] == [traces["acme-shared"]] and story["runs_total"] == 1
    assert call(auth_server, "GET", f"/api/traces/{traces['globex-run']}", token).status_code == 404
    assert call(auth_server, "GET", f"/api/traces/{traces['acme-run']}", token).status_code == 200
    for path in ("/api/stats", "/api/audit", "/api/search?q=TEN", "/api/alerts", "/api/actions"):
        refused = call(auth_server, "GET", path, token)
        assert refused.status_code == 403 and "reads tenant acme only" in refused.text, path
    admin = call(auth_server, "POST", "/api/principals", ADMIN_TOKEN,
                 json={"name": "acme-admin", "roles": ["admin"], "tenant": "acme"})
    assert admin.status_code == 422 and "spans every tenant" in admin.text
