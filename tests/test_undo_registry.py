"""Undo calls only what an operator registered (issue 12), against real processes: a ``flightrec serve``
server, a ``flightrec records`` system of record and a local HTTP receiver standing for any other host.

Each SSRF attempt is an action span an agent sends over OTLP with a hostile undo descriptor; the plan
must mark it irreversible with the reason, executing must call nothing, and the receiver (which
records every request of any method) proves no request reached it. The positive controls — the
same receiver registered through the API, a path it allows — prove the receiver would have seen one.
Then: the operator's risk policy, summarised answers, per-field conflicts, scopes, and the demo fleet
undone for all agents leaving the system of record as it was before the fleet.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from flightrec.demo.fleet import FleetConfig, run_fleet
from tests.conftest import ServerProcess
from tests.http_receiver import Receiver, Recorded, Reply
from tests.otlp_helpers import make_request, make_span
from tests.test_records import RecordsServer

pytestmark = pytest.mark.slow

Json = dict[str, Any]
ONCALL = "sre.oncall"
TOKEN_ENV = "RECEIVER_UNDO_TOKEN"
TOKEN = f"tok-{uuid.uuid4().hex}"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def uid() -> str:
    return uuid.uuid4().hex[:8]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def recording_every_method(receiver: Receiver) -> Receiver:
    """The receiver records POSTs; make it record any other method too (a GET check, a PUT, ...)."""
    handler = receiver.server.RequestHandlerClass

    def record(self) -> None:  # http.server's handler
        length = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(length) if length else b""
        with receiver.lock:
            receiver.requests.append(Recorded(self.path, dict(self.headers), raw.decode(errors="replace")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    for method in ("GET", "PUT", "DELETE", "PATCH", "HEAD"):
        setattr(handler, f"do_{method}", record)
    return receiver


class World:
    """A server (demo system of record registered from records_url, plus a settings-defined system
    pointing at the server itself), the records service, and a receiver for everything else."""

    def __init__(self, base: Any) -> None:
        self.receiver = recording_every_method(Receiver())
        self.records = RecordsServer(base / "records.db").start()
        self.server = ServerProcess(base / "srv")
        self.server.env.update({
            "FLIGHTREC_RECORDS_URL": self.records.url,
            TOKEN_ENV: TOKEN,
            # An operator's mistake in the settings: a system that is this server. Never called.
            "FLIGHTREC_SYSTEMS": json.dumps({"loopback-api": {
                "base_url": f"http://localhost:{self.server.http_port}",
                "paths": ["/api/controls/agents/{agent}/resume"]}}),
        })
        self.server.start()
        self.api = self.server.client()
        self.rec = self.records.client()

    def close(self) -> None:
        self.api.close()
        self.rec.close()
        self.server.stop()
        self.records.stop()
        self.receiver.close()

    def send(self, agent: str, name: str, attrs: Json, ago_s: float = 60, amount: float = 0.0,
             obj: tuple[str, str] = ("ticket", "TCK-x"), risk: str = "low") -> str:
        """One performed action span over OTLP; answers its action id."""
        span = make_span(name, {
            "flightrec.operation": "action", "gen_ai.agent.name": agent, "flightrec.action.name": name,
            "flightrec.action.system": "billing", "flightrec.action.risk": risk, "flightrec.mode": "auto",
            "flightrec.object.type": obj[0], "flightrec.object.id": obj[1],
            **({"flightrec.action.amount": amount, "flightrec.action.currency": "EUR"} if amount else {}),
            **attrs,
        }, start_ns=time.time_ns() - int(ago_s * 1e9))
        response = httpx.post(f"{self.server.url}/v1/traces", headers={"Content-Type": "application/x-protobuf"},
                              content=make_request([span], {"service.name": agent}).SerializeToString())
        assert response.status_code == 200, response.text
        self.server.wait_drained()
        return f"{span.trace_id.hex()}:{span.span_id.hex()}"

    def plan(self, actor: str = ONCALL, **selector: Any) -> Json:
        return ok(self.api.post("/api/rollback/plans", json={**selector, "actor": actor}), 201)

    def execute(self, plan_id: str, actor: str = ONCALL) -> Json:
        return ok(self.api.post(f"/api/rollback/plans/{plan_id}/execute", json={"actor": actor, "wait": True}))

    def state(self) -> Json:
        return ok(self.rec.get("/state"))

    def audit(self) -> list[Json]:
        return ok(self.api.get("/api/audit", params={"since": 0}))["items"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    setup = World(tmp_path_factory.mktemp("undo-registry"))
    try:
        yield setup
    finally:
        setup.close()


def http_undo(target: str, system: str = "", args: Json | None = None, **more: str) -> Json:
    attrs = {"flightrec.undo.kind": "http", "flightrec.undo.target": target,
             "flightrec.undo.args": json.dumps(args or {"ok": True}), **more}
    if system:
        attrs["flightrec.undo.system"] = system
    return attrs


# --- SSRF: every hostile descriptor is refused, and nothing is called -----------------------------


def test_every_hostile_undo_descriptor_is_irreversible_and_nothing_is_called(world: World) -> None:
    w = world
    agent = f"hostile-{uid()}"
    own = world.server.url
    ok(w.api.post(f"/api/controls/agents/{agent}/pause", json={"actor": "cfo", "reason": "investigating", "force": True}))
    attempts = {
        "own API (absolute URL)": (http_undo(f"{own}/api/controls/agents/{agent}/resume"),
                                   "absolute URL"),
        "outside URL": (http_undo(f"{w.receiver.url}/hook", system="records"), "absolute URL"),
        "scheme-relative URL": (http_undo(f"//127.0.0.1:{w.receiver.server.server_address[1]}/hook",
                                          system="records"), "absolute URL"),
        "userinfo in the URL": (http_undo(f"http://cfo:secret@127.0.0.1:{w.receiver.server.server_address[1]}/x"),
                                "absolute URL"),
        "userinfo in the path": (http_undo("/refunds/cfo:secret@evil/undo", system="records"), "user information"),
        "unknown system": (http_undo("/refunds/RF-1/undo", system="nope"), "'nope', which no operator registered"),
        "no system": (http_undo("/refunds/RF-1/undo"), "'billing', which no operator registered"),
        "path outside the allowed list": (http_undo("/faults", system="records"),
                                          "/faults is not among the undo paths allowed on system records"),
        "path traversal": (http_undo("/refunds/../faults", system="records"), "not a plain id"),
        "encoded traversal": (http_undo("/refunds/%2e%2e/undo", system="records"), "not a plain id"),
        "handler not allowed on the system": ({"flightrec.undo.kind": "handler", "flightrec.undo.target": "evil.run",
                                               "flightrec.undo.system": "records",
                                               "flightrec.undo.args": "{}"}, "'evil.run' is not allowed"),
    }
    ids = {label: w.send(agent, "ticket.status", attrs, ago_s=60 + k) for k, (label, (attrs, _)) in
           enumerate(attempts.items())}
    calls_before = ok(w.rec.get("/calls"))["count"]
    plan = w.plan(agent=agent, last=100)
    steps = {step["action_id"]: step for step in plan["steps"]}
    for label, (_, needle) in attempts.items():
        step = steps[ids[label]]
        assert step["status"] == "irreversible" and step["call"] is None, (label, step)
        assert needle in step["reason"], (label, step["reason"])
    done = w.execute(plan["id"])
    assert done["status"] == "done" and all(step["status"] == "irreversible" for step in done["steps"])
    # Nothing reached the receiver, the records service or the server's own controls.
    assert w.receiver.requests == []
    assert ok(w.rec.get("/calls"))["count"] == calls_before
    control = ok(w.api.get(f"/api/controls/agents/{agent}"))
    assert (control["state"], control["actor"], control["reason"]) == ("paused", "cfo", "investigating")
    assert not [e for e in w.audit() if e["act"] == "resume" and e["subject"] == f"agent:{agent}"]


def test_a_system_at_the_servers_own_address_is_never_called(world: World) -> None:
    w = world
    agent = f"self-caller-{uid()}"
    ok(w.api.post(f"/api/controls/agents/{agent}/pause", json={"actor": "cfo", "reason": "keep paused", "force": True}))
    # Registering the server itself through the API is refused, under any name for its host.
    for host in ("127.0.0.1", "localhost", "0.0.0.0"):
        refused = w.api.post("/api/systems", json={"name": f"me-{uid()}", "actor": ONCALL,
                                                   "base_url": f"http://{host}:{w.server.http_port}",
                                                   "paths": ["/api/controls/agents/{a}/resume"]})
        assert refused.status_code == 400 and "own address" in refused.json()["detail"], refused.text
    grpc = w.api.post("/api/systems", json={"name": "me-grpc", "actor": ONCALL,
                                            "base_url": f"http://127.0.0.1:{w.server.grpc_port}", "paths": ["/x"]})
    assert grpc.status_code == 400
    # A system the settings define at the server's own address: planned, but refused right before the call.
    w.send(agent, "ticket.status", http_undo(f"/api/controls/agents/{agent}/resume", system="loopback-api"))
    plan = w.plan(agent=agent, last=5)
    [step] = plan["steps"]
    assert step["status"] == "reversible" and step["call"]["system"] == "loopback-api"
    done = w.execute(plan["id"])
    assert done["status"] == "failed" and "own address" in done["error"], done["error"]
    assert ok(w.api.get(f"/api/controls/agents/{agent}"))["state"] == "paused"
    assert not [e for e in w.audit() if e["act"] == "resume" and e["subject"] == f"agent:{agent}"]


def test_registered_system_paths_are_the_only_ones_called_with_credentials_from_the_environment(world: World) -> None:
    w = world
    name = f"recv-{uid()}"
    bad = [
        ({"base_url": f"http://user:pw@127.0.0.1:{w.receiver.server.server_address[1]}"}, 422),
        ({"base_url": "ftp://127.0.0.1/x"}, 422),
        ({"base_url": w.receiver.url, "credentials_env": "not a name"}, 422),
        ({"base_url": w.receiver.url, "paths": ["/undo/../x"]}, 422),
        ({"base_url": w.receiver.url, "paths": ["/undo/{id}"], "actor": " "}, 400),
    ]
    for body, code in bad:
        response = w.api.post("/api/systems", json={"name": name, "actor": ONCALL, **body})
        assert response.status_code == code, (body, response.text)
    demo = w.api.post("/api/systems", json={"name": "records", "actor": ONCALL, "base_url": w.receiver.url})
    assert demo.status_code == 409, "the demo system comes from the settings; the API cannot redirect it"
    registered = ok(w.api.post("/api/systems", json={
        "name": name, "actor": "ops.lead", "base_url": w.receiver.url, "auth": "bearer", "credentials_env": TOKEN_ENV,
        "paths": ["/undo/{id}"], "read_paths": ["/items/{id}"]}), 201)
    assert registered["source"] == "api" and registered["credentials_present"] is True
    listed = ok(w.api.get("/api/systems"))
    by_name = {item["name"]: item for item in listed["items"]}
    assert by_name[name]["registered_by"] == "ops.lead" and by_name["records"]["source"] == "demo"
    assert by_name["loopback-api"]["source"] == "settings"
    assert TOKEN not in json.dumps(listed), "credentials are named, never stored or shown"
    entry = [e for e in w.audit() if e["act"] == "system.register" and e["subject"] == f"system:{name}"]
    assert len(entry) == 1 and entry[0]["actor"] == "ops.lead" and TOKEN not in json.dumps(entry)
    assert ok(w.api.get("/api/audit/verify"))["ok"]

    agent = f"recv-agent-{uid()}"
    outside = w.send(agent, "ticket.status", http_undo("/admin/drop", system=name), ago_s=70)
    allowed = w.send(agent, "ticket.status", http_undo("/undo/A-1", system=name, args={"id": "A-1"},
                                                       **{"flightrec.undo.check": json.dumps(
                                                           {"path": "/items/A-1", "expect": {"ok": True}})}),
                     ago_s=60)
    plan = w.plan(agent=agent, last=5)
    steps = {step["action_id"]: step for step in plan["steps"]}
    assert steps[outside]["status"] == "irreversible" and "/admin/drop is not among" in steps[outside]["reason"]
    assert steps[allowed]["status"] == "reversible"
    done = w.execute(plan["id"])
    assert done["status"] == "done"
    posts = w.receiver.at("/undo/A-1")
    assert [r.body for r in posts] == [{"id": "A-1"}] and not w.receiver.at("/admin/drop")
    assert posts[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert posts[0].headers["Idempotency-Key"] == f"{plan['id']}:{allowed}"
    # The read-back: the receiver answered {} to GET /items/A-1, so the undo is reported not restored.
    step = next(step for step in done["steps"] if step["action_id"] == allowed)
    assert w.receiver.at("/items/A-1") and step["restored"] is False and "not restored" in step["check_result"]


def test_the_targets_answer_is_summarised_never_echoed(world: World) -> None:
    w = world
    name, agent = f"leaky-{uid()}", f"leaky-agent-{uid()}"
    ok(w.api.post("/api/systems", json={"name": name, "actor": ONCALL, "base_url": w.receiver.url,
                                        "paths": ["/undo/{id}"]}), 201)
    secret = f"SECRET-{uid()}"
    w.receiver.queue(Reply(500, {"detail": secret, "trace": "x" * 2000}), path="/undo/B-1")
    w.send(agent, "ticket.status", http_undo("/undo/B-1", system=name))
    plan = w.plan(agent=agent, last=5)
    failed = w.execute(plan["id"])
    assert failed["status"] == "failed"
    assert f"{name} answered 500 to POST /undo/B-1: failed on its side" in failed["error"]
    assert secret not in json.dumps(failed) and secret not in json.dumps(w.audit())
    w.server.wait_drained()
    story = ok(w.api.get("/api/objects/ticket/TCK-x/story"))
    assert secret not in json.dumps(story)


def test_approval_follows_the_operators_policy_not_the_spans_risk(world: World) -> None:
    w = world
    agent = f"lowballer-{uid()}"
    order = f"ORD-{uid()}"
    refund = ok(w.rec.post("/refunds", json={"order_id": order, "amount": 420.0, "currency": "EUR"}), 201)["refund_id"]
    args = {"refund_id": refund, "order_id": order, "amount": 420.0, "currency": "EUR"}
    # The span claims low risk and reports no amount; the undo moves 420 EUR: policy says high.
    w.send(agent, "refund.issue", http_undo(f"/refunds/{refund}/undo", system="records", args=args), obj=("order", order))
    plan = w.plan(actor="maria", agent=agent, last=5)
    [step] = plan["steps"]
    assert (step["risk"], step["reported_risk"]) == ("high", "low") and "operator policy" in step["risk_reason"]
    assert plan["status"] == "awaiting_approval" and plan["requires_approval"]
    refused = w.api.post(f"/api/rollback/plans/{plan['id']}/execute", json={"actor": "maria", "wait": True})
    assert refused.status_code == 409
    # A small refund of a known action is medium by the same policy: no approval needed.
    small = ok(w.rec.post("/refunds", json={"order_id": order, "amount": 12.0, "currency": "EUR"}), 201)["refund_id"]
    other = f"small-{uid()}"
    w.send(other, "refund.issue", http_undo(f"/refunds/{small}/undo", system="records", args={
        "refund_id": small, "order_id": order, "amount": 12.0, "currency": "EUR"}), amount=12.0, risk="high",
        obj=("order", order))
    small_plan = w.plan(agent=other, last=5)
    assert small_plan["steps"][0]["risk"] == "medium" and small_plan["status"] == "ready"
    # An action no rule names is high risk by default.
    unknown = f"unknown-{uid()}"
    w.send(unknown, "ledger.rewrite", http_undo("/refunds/RF-9/undo", system="records"))
    assert w.plan(agent=unknown, last=5)["requires_approval"]


# --- per-field conflicts --------------------------------------------------------------------------


def ticket_action(w: World, agent: str, ticket: str, field: str, value: str, ago_s: float,
                  declare: bool = True, system: str = "records") -> str:
    """Really set a ticket field on the records service, and report it as the fleet does."""
    answer = ok(w.rec.post(f"/tickets/{ticket}/{field}", json={field: value}))
    previous = answer[f"previous_{field}"]
    handler = {"status": "helpdesk.set_status", "assignee": "helpdesk.reassign"}[field]
    attrs = {"flightrec.undo.kind": "handler", "flightrec.undo.target": handler, "flightrec.undo.system": system,
             "flightrec.undo.args": json.dumps({"ticket_id": ticket, field: value, f"previous_{field}": previous}),
             "flightrec.undo.check": json.dumps({"path": f"/tickets/{ticket}", "expect": {field: previous}})}
    if declare:
        attrs["flightrec.action.fields"] = [f"ticket:{ticket}#{field}"]
    name = "ticket.status" if field == "status" else "ticket.assign"
    return w.send(agent, name, attrs, ago_s=ago_s, obj=("ticket", ticket))


def test_conflicts_are_per_field_and_a_plans_own_later_steps_are_none(world: World) -> None:
    w = world
    a, b, c = (f"{role}-{uid()}" for role in ("alpha", "beta", "gamma"))
    t1, t2, t3 = (f"TCK-{uid()}" for _ in range(3))
    # t1: alpha sets the status twice, beta the assignee in between: alpha's plan restores both statuses.
    first = ticket_action(w, a, t1, "status", "open", ago_s=300)
    ticket_action(w, b, t1, "assignee", "mei.wong", ago_s=290)
    second = ticket_action(w, a, t1, "status", "solved", ago_s=280)
    # t2: alpha's newer status change cannot be undone (its system is unknown): the older one on the same
    # field is held back with it, the assignee change (another field) is not.
    older = ticket_action(w, a, t2, "status", "open", ago_s=270)
    assigned = ticket_action(w, a, t2, "assignee", "alex.kim", ago_s=265)
    stuck = ticket_action(w, a, t2, "status", "pending", ago_s=260, system="nope")
    # t3: gamma changes the status after alpha: conflicted, named by field, agent, action and time.
    opened = ticket_action(w, a, t3, "status", "open", ago_s=255)
    ticket_action(w, c, t3, "status", "solved", ago_s=250)
    plan = w.plan(agent=a, last=100)
    steps = {step["action_id"]: step for step in plan["steps"]}
    order = [step["action_id"] for step in plan["steps"]]
    assert order == [opened, stuck, assigned, older, second, first], "newest first across the plan"
    assert steps[second]["status"] == steps[first]["status"] == "reversible", (steps[first]["reason"],
                                                                                steps[second]["reason"])
    assert steps[stuck]["status"] == "irreversible"
    assert steps[older]["status"] == "conflicted"
    assert steps[older]["reason"].startswith(f"status of ticket {t2} was changed again by {a} (ticket.status at ")
    assert steps[older]["reason"].endswith("a step of this plan that stays irreversible")
    assert steps[assigned]["status"] == "reversible", steps[assigned]["reason"]
    assert steps[opened]["status"] == "conflicted"
    assert steps[opened]["reason"].startswith(f"status of ticket {t3} was changed after this action by {c} "
                                              "(ticket.status at ")
    done = w.execute(plan["id"])
    assert done["status"] == "done"
    ran = [s for s in done["steps"] if s["status"] == "done"]
    assert {s["action_id"] for s in ran} == {first, second, assigned}
    assert all(s["restored"] is True and s["check_result"].startswith("restored") for s in ran), [
        s["check_result"] for s in ran]
    assert ok(w.rec.get(f"/tickets/{t1}")) == {"id": t1, "status": "new", "assignee": "mei.wong"}
    assert ok(w.rec.get(f"/tickets/{t2}")) == {"id": t2, "status": "pending", "assignee": "unassigned"}
    # Once gamma's change is undone, alpha's step on t3 is free and restores the ticket.
    assert w.execute(w.plan(agent=c, last=10)["id"])["status"] == "done"
    assert ok(w.rec.get(f"/tickets/{t3}"))["status"] == "open"
    replan = {step["action_id"]: step for step in w.plan(agent=a, last=100)["steps"]}
    assert replan[opened]["status"] == "reversible", replan[opened]["reason"]
    assert replan[first]["status"] == "already_undone" and replan[older]["status"] == "conflicted"


def test_an_action_that_declares_no_fields_conflicts_on_the_whole_object(world: World) -> None:
    w = world
    a, d = f"alpha-{uid()}", f"delta-{uid()}"
    ticket = f"TCK-{uid()}"
    mine = ticket_action(w, a, ticket, "status", "open", ago_s=200)
    ticket_action(w, d, ticket, "assignee", "noah.berg", ago_s=190, declare=False)
    [step] = [s for s in w.plan(agent=a, last=10)["steps"] if s["action_id"] == mine]
    assert step["status"] == "conflicted" and step["reason"].startswith(f"ticket {ticket} was changed after")


# --- scopes ---------------------------------------------------------------------------------------


def actions(w: World, **params: Any) -> list[Json]:
    return ok(w.api.get("/api/actions", params={"performed": True, "last": 10_000, **params}))["items"]


def at(item: Json) -> datetime:
    return datetime.fromisoformat(item["time"])


def fleet(w: World, seed: int, workflows: int, start: datetime) -> None:
    run_fleet(FleetConfig(endpoint=w.server.url, workflows=workflows, seed=seed, start=start,
                          records_url=w.records.url, api_url=w.server.url))
    w.server.wait_drained()


def test_plans_by_agent_flow_object_and_time_window_each_take_the_last_n(world: World) -> None:
    w = world
    start = NOW - timedelta(days=3)
    fleet(w, seed=21, workflows=40, start=start)
    end = start + timedelta(seconds=40 * 30)
    everything = [a for a in actions(w) if start <= at(a) <= end]
    assert len({a["agent"] for a in everything}) == 3 and len(everything) >= 15
    newest_first = sorted(everything, key=lambda a: (at(a), a["action_id"]), reverse=True)

    window = w.plan(since=start.isoformat(), until=end.isoformat(), last=10_000)
    assert [s["action_id"] for s in window["steps"]] == [a["action_id"] for a in newest_first]
    limited = w.plan(since=start.isoformat(), until=end.isoformat(), last=5)
    assert [s["action_id"] for s in limited["steps"]] == [a["action_id"] for a in newest_first[:5]]
    middle = at(newest_first[len(newest_first) // 2])
    half = w.plan(since=middle.isoformat(), until=end.isoformat(), last=10_000)
    assert [s["action_id"] for s in half["steps"]] == [a["action_id"] for a in newest_first if at(a) >= middle]

    agent = "ops-agent"
    mine = [a for a in newest_first if a["agent"] == agent]
    by_agent = w.plan(agent=agent, since=start.isoformat(), until=end.isoformat(), last=3)
    assert [s["action_id"] for s in by_agent["steps"]] == [a["action_id"] for a in mine[:3]]

    flows = {a["flow"] for a in everything}
    flow = sorted(flows)[0]
    by_flow = w.plan(flow=flow, since=start.isoformat(), until=end.isoformat(), last=10_000)
    assert [s["action_id"] for s in by_flow["steps"]] == [a["action_id"] for a in newest_first if a["flow"] == flow]

    # An object every agent may touch: all agents' actions on it, newest first, and the last N of them.
    counts: dict[str, int] = {}
    for a in everything:
        for ref in a["objects"]:
            counts[ref] = counts.get(ref, 0) + 1
    ref = max(counts, key=lambda r: (counts[r], r))
    on_it = [a for a in newest_first if ref in a["objects"]]
    by_object = w.plan(object=ref, since=start.isoformat(), until=end.isoformat(), last=10_000)
    assert [s["action_id"] for s in by_object["steps"]] == [a["action_id"] for a in on_it]
    assert [s["action_id"] for s in w.plan(object=ref, since=start.isoformat(), until=end.isoformat(),
                                           last=1)["steps"]] == [on_it[0]["action_id"]]

    nothing = w.api.post("/api/rollback/plans", json={"actor": ONCALL, "last": 5})
    assert nothing.status_code == 400 and "time window" in nothing.json()["detail"]
    backwards = w.api.post("/api/rollback/plans", json={"actor": ONCALL, "since": end.isoformat(),
                                                        "until": start.isoformat()})
    assert backwards.status_code == 400 and "until is before since" in backwards.json()["detail"]


# --- the demo fleet, undone for all agents, leaves the system of record as it was ------------------

AGENTS = ("support-agent", "ops-agent", "finance-agent")


def assert_only_irreversible_left(plan: Json) -> None:
    """Every step is undone, or irreversible with a reason (the fleet's emails)."""
    left = [(s["action"], s["status"], s["reason"]) for s in plan["steps"] if s["status"] != "already_undone"]
    assert all(status == "irreversible" and reason for _, status, reason in left), left
    assert {action for action, _, _ in left} <= {"email.send"}, left


def test_undoing_every_agents_plans_restores_the_system_of_record(world: World) -> None:
    w = world
    start, workflows = NOW - timedelta(days=2), 60
    end = start + timedelta(seconds=workflows * 30)
    window = {"since": start.isoformat(), "until": end.isoformat(), "last": 10_000}
    before = w.state()
    fleet(w, seed=5, workflows=workflows, start=start)
    assert w.state() != before
    plans = {agent: w.plan(agent=agent, **window) for agent in AGENTS}
    assert all(plan["steps"] for plan in plans.values())
    # As an SRE would: each agent's plan, executed; where another agent's later change stands in the way,
    # that agent's plan undoes it, and the next round frees the step. A few rounds at most.
    for _ in range(len(AGENTS) + 1):
        runnable = False
        for agent in AGENTS:
            plan = w.plan(agent=agent, **window)
            assert not plan["requires_approval"], [s for s in plan["steps"] if s["risk"] == "high"]
            if any(step["status"] == "reversible" for step in plan["steps"]):
                runnable = True
                done = w.execute(plan["id"])
                assert done["status"] == "done", done["error"]
                ran = [s for s in done["steps"] if s["status"] == "done"]
                assert ran and all(s["restored"] is True for s in ran), [s["check_result"] for s in ran]
        if not runnable:
            break
    for agent in AGENTS:
        assert_only_irreversible_left(w.plan(agent=agent, **window))
    assert w.state() == before


def test_one_plan_across_all_agents_by_time_window_restores_the_system_of_record(world: World) -> None:
    w = world
    start, workflows = NOW - timedelta(days=1), 60
    end = start + timedelta(seconds=workflows * 30)
    before = w.state()
    fleet(w, seed=9, workflows=workflows, start=start)
    assert w.state() != before
    plan = w.plan(since=start.isoformat(), until=end.isoformat(), last=10_000)
    assert {s["agent"] for s in plan["steps"]} == set(AGENTS)
    assert {s["status"] for s in plan["steps"]} <= {"reversible", "irreversible"}, [
        (s["status"], s["reason"]) for s in plan["steps"] if s["status"] not in ("reversible", "irreversible")]
    done = w.execute(plan["id"])
    assert done["status"] == "done", done["error"]
    assert all(s["restored"] is True for s in done["steps"] if s["status"] == "done")
    assert w.state() == before
    assert_only_irreversible_left(w.plan(since=start.isoformat(), until=end.isoformat(), last=10_000))
    # The story of a restored object counts and narrates the undo in its summary.
    w.server.wait_drained()
    step = next(s for s in done["steps"] if s["status"] == "done" and s["action"] == "ticket.status")
    kind, ident = step["objects"][0].split(":", 1)
    story = ok(w.api.get(f"/api/objects/{kind}/{ident}/story"))
    undos = [s for s in story["steps"] if s["kind"] == "undo" and s["severity"] != "critical"]
    marked = [s for s in story["steps"] if s["kind"] == "action" and s["details"].get("undone_by") == ONCALL]
    assert len(undos) == len(marked) >= 1
    assert f"Rollback: {ONCALL} undid {len(undos)} action" in story["summary"], story["summary"]
    assert plan["id"] in story["summary"].split("Rollback: ", 1)[1]
