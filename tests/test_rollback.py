"""Rollback and kill switches (issue 5), end to end against real processes only: a ``flightrec serve``
server, a ``flightrec records`` system of record, and the simulated fleet acting on it and exporting
its spans over OTLP. Undo plans are built, approved and executed through the API; the system of
record's ``GET /state`` and ``GET /calls`` are the ground truth for "restored" and "one effect"."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import httpx
import pytest

from flightrec.demo.fleet import FleetConfig, FleetReport, run_fleet
from flightrec.sdk import ControlClient
from tests.conftest import ServerProcess, free_port
from tests.otlp_helpers import make_request, make_span
from tests.test_records import RecordsServer

pytestmark = pytest.mark.slow

Json = dict[str, Any]
AGENTS = ("support-agent", "ops-agent", "finance-agent")
ONCALL = "sre.oncall"
# Simulated clocks of the fleet runs: the first run well before the second, `BETWEEN` separating them.
NOW = datetime.now(timezone.utc).replace(microsecond=0)
FIRST_START = NOW - timedelta(hours=4)
BETWEEN = NOW - timedelta(hours=2, minutes=30)
SECOND_START = NOW - timedelta(hours=2)
HANDLER_PATHS = {"helpdesk.set_status": "status", "helpdesk.reassign": "assignee"}


def uid() -> str:
    return uuid.uuid4().hex[:8]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


class Rig:
    """A server whose undo executor reaches a records service, plus clients for both."""

    def __init__(self, server: ServerProcess, records: RecordsServer) -> None:
        self.server, self.records = server, records
        self.api = server.client()
        self.rec = records.client()

    def close(self) -> None:
        self.api.close()
        self.rec.close()

    # --- the fleet and the system of record ---------------------------------------------------

    def fleet(self, seed: int, workflows: int, start: datetime, **options: Any) -> FleetReport:
        """Run the fleet on the records service, exporting to the server; wait until all is queryable."""
        config = FleetConfig(endpoint=self.server.url, workflows=workflows, seed=seed, start=start,
                             records_url=self.records.url, api_url=self.server.url, **options)
        report = run_fleet(config)
        self.server.wait_drained()
        return report

    def state(self) -> Json:
        return ok(self.rec.get("/state"))

    def calls(self) -> list[Json]:
        return ok(self.rec.get("/calls"))["items"]

    # --- the API --------------------------------------------------------------------------------

    def actions(self, agent: str = "", performed: bool = True, since: datetime | None = None) -> list[Json]:
        items = ok(self.api.get("/api/actions", params={"agent": agent, "performed": performed, "last": 10_000}))["items"]
        return [a for a in items if since is None or datetime.fromisoformat(a["time"]) >= since]

    def plan(self, actor: str = ONCALL, **selector: Any) -> Json:
        return ok(self.api.post("/api/rollback/plans", json={**selector, "actor": actor}), 201)

    def get_plan(self, plan_id: str) -> Json:
        return ok(self.api.get(f"/api/rollback/plans/{plan_id}"))

    def execute(self, plan_id: str, actor: str = ONCALL, wait: bool = True) -> httpx.Response:
        return self.api.post(f"/api/rollback/plans/{plan_id}/execute", json={"actor": actor, "wait": wait})

    def approve(self, plan_id: str, actor: str) -> httpx.Response:
        return self.api.post(f"/api/rollback/plans/{plan_id}/approve", json={"actor": actor})

    def switch(self, agent: str, command: str, actor: str = ONCALL, **body: Any) -> Json:
        return ok(self.api.post(f"/api/controls/agents/{agent}/{command}", json={"actor": actor, "force": True, **body}))

    def audit(self, since: int = 0) -> list[Json]:
        return ok(self.api.get("/api/audit", params={"since": since}))["items"]


@pytest.fixture
def rig(make_server, tmp_path: Path) -> Iterator[Rig]:
    """A fresh records service and a server whose undo handlers call it (FLIGHTREC_RECORDS_URL)."""
    records = RecordsServer(tmp_path / "records.db").start()
    try:
        server = make_server(env={"FLIGHTREC_RECORDS_URL": records.url})
        setup = Rig(server, records)
        yield setup
        setup.close()
    finally:
        records.stop()


def only_agent_acts(rig: Rig, agent: str, seed: int, workflows: int, start: datetime) -> FleetReport:
    """A fleet run in which only `agent` works: the other agents are paused, so their workflows are refused."""
    others = [other for other in AGENTS if other != agent]
    for other in others:
        rig.switch(other, "pause", reason="isolating one agent's actions")
    report = rig.fleet(seed=seed, workflows=workflows, start=start, check_controls=True)
    for other in others:
        rig.switch(other, "resume")
    assert report.agents == [agent] and report.refused > 0, report
    return report


def call_path(step: Json) -> str:
    """The records-service path a step's undo call posts to."""
    call = step["call"]
    if call["kind"] == "http":
        return urlparse(call["target"]).path
    return f"/tickets/{call['args']['ticket_id']}/{HANDLER_PATHS[call['target']]}"


def keyed(calls: list[Json], plan_id: str) -> dict[str, list[Json]]:
    """The records calls a plan's executor made, by idempotency key (`<plan>:<action>`)."""
    out: dict[str, list[Json]] = {}
    for call in calls:
        if (call["idempotency_key"] or "").startswith(f"{plan_id}:"):
            out.setdefault(call["idempotency_key"], []).append(call)
    return out


def at(item: Json) -> datetime:
    """When an action (or plan step) happened."""
    return datetime.fromisoformat(item["time"])


def effects(calls: list[Json]) -> int:
    """Calls that took effect: answered 2xx and not replayed from an idempotency key."""
    return sum(1 for call in calls if 200 <= call["status"] < 300 and not call["replayed"])


# --- one agent's last N actions, rolled back through the API --------------------------------------


class Scenario:
    """All agents act, the state is snapshot, then only support-agent acts; its last N actions are undone."""

    agent = "support-agent"

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        rig.fleet(seed=3, workflows=60, start=FIRST_START)
        self.before = rig.state()
        self.report = only_agent_acts(rig, self.agent, seed=4, workflows=90, start=SECOND_START)
        self.after_fleet = rig.state()
        self.recent = rig.actions(since=BETWEEN)
        self.plan = rig.plan(agent=self.agent, last=len(self.recent))
        self.windowed = rig.plan(agent=self.agent, since=BETWEEN.isoformat(), last=10_000)
        self.calls_before = rig.calls()
        self.done = ok(rig.execute(self.plan["id"]))
        self.after = rig.state()
        self.calls_after = rig.calls()
        rig.server.wait_drained()  # the undo spans are queryable


@contextmanager
def module_rig(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Rig]:
    """A records service and a server for the tests of one module-scoped fixture."""
    base = tmp_path_factory.mktemp(name)
    records = RecordsServer(base / "records.db").start()
    server = ServerProcess(base / "srv", {"FLIGHTREC_RECORDS_URL": records.url})
    rig = None
    try:
        server.start()
        rig = Rig(server, records)
        yield rig
    finally:
        if rig is not None:
            rig.close()
        server.stop()
        records.stop()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with module_rig(tmp_path_factory, "rollback") as rig:
        yield Scenario(rig)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """For tests that touch only their own agents, plans and objects."""
    with module_rig(tmp_path_factory, "shared") as rig:
        yield rig


def test_rolling_back_an_agents_last_n_actions_restores_the_system_of_record(scenario: Scenario) -> None:
    s = scenario
    assert s.after_fleet != s.before, "the second run changed nothing: the test would prove nothing"
    assert {a["agent"] for a in s.recent} == {s.agent} and len(s.recent) >= 8
    # The agent's newest N performed actions are exactly those of the second run, and the plan takes them all.
    assert [a["action_id"] for a in s.rig.actions(agent=s.agent)[: len(s.recent)]] == [a["action_id"] for a in s.recent]
    steps = s.plan["steps"]
    assert [step["action_id"] for step in steps] == [a["action_id"] for a in s.recent]
    times = [datetime.fromisoformat(step["time"]) for step in steps]
    assert times == sorted(times, reverse=True), "steps must run newest first"
    assert {step["status"] for step in steps} <= {"reversible", "irreversible"}, [
        (step["status"], step["reason"]) for step in steps if step["status"] not in ("reversible", "irreversible")]
    assert s.plan["status"] == "ready" and not s.plan["requires_approval"] and s.plan["author"] == ONCALL
    # The dry run says exactly what will be called: the span's undo descriptor and a per-step key.
    by_id = {a["action_id"]: a for a in s.recent}
    for step in steps:
        action = by_id[step["action_id"]]
        if step["status"] == "reversible":
            assert step["call"] == {"kind": action["undo_kind"], "system": action["undo_system"],
                                    "target": action["undo_target"], "args": json.loads(action["undo_args"]),
                                    "idempotency_key": f"{s.plan['id']}:{step['action_id']}",
                                    "check": json.loads(action["undo_check"])}
            assert step["call"]["kind"] == "handler" or step["call"]["target"].startswith("/"), "a path, never a URL"
    # The same actions selected by time window instead of a count.
    assert [step["action_id"] for step in s.windowed["steps"]] == [step["action_id"] for step in steps]
    # Executed: every reversible step done, and the system of record is back to its state before them.
    assert s.done["status"] == "done" and s.done["error"] == ""
    assert [step["status"] for step in s.done["steps"]] == [
        "done" if step["status"] == "reversible" else step["status"] for step in steps]
    assert all(step["finished_at"] and step["attempts"] == 1 for step in s.done["steps"] if step["status"] == "done")
    assert all(step["restored"] is True for step in s.done["steps"] if step["status"] == "done"), [
        step["check_result"] for step in s.done["steps"]]
    assert s.after == s.before
    made = keyed(s.calls_after, s.plan["id"])
    assert set(made) == {step["call"]["idempotency_key"] for step in steps if step["status"] == "reversible"}
    assert all(effects(calls) == 1 == len(calls) for calls in made.values())


def test_irreversible_steps_are_skipped_with_the_reason(scenario: Scenario) -> None:
    irreversible = [step for step in scenario.done["steps"] if step["status"] == "irreversible"]
    assert irreversible, "the run should have sent at least one email (an action without undo descriptor)"
    for step in irreversible:
        assert step["action"] == "email.send" and step["call"] is None and step["attempts"] == 0
        assert step["reason"] == "email.send recorded no undo descriptor: it cannot be reversed automatically"
        assert not step["finished_at"]
    skipped = {f"{scenario.plan['id']}:{step['action_id']}" for step in irreversible}
    assert not skipped & {call["idempotency_key"] for call in scenario.calls_after}
    # Every other step of the plan is reversible and was run.
    assert {step["action"] for step in scenario.done["steps"] if step["status"] != "irreversible"} <= {
        "ticket.status", "ticket.assign", "refund.issue"}


def test_executing_a_done_plan_again_has_no_second_effect(scenario: Scenario) -> None:
    s = scenario
    again = ok(s.rig.execute(s.plan["id"]))
    assert again["status"] == "done" and again["steps"] == s.done["steps"]
    assert s.rig.calls() == s.calls_after, "executing a done plan must not call the system of record"
    assert s.rig.state() == s.before
    # Replaying a done step's call with its key is answered from the idempotency store: no second effect.
    step = next(step for step in s.done["steps"] if step["status"] == "done" and step["call"]["kind"] == "handler")
    call = step["call"]
    field = HANDLER_PATHS[call["target"]]
    body = {field: call["args"][f"previous_{field}"], f"expected_{field}": call["args"][field]}
    replay = s.rig.rec.post(call_path(step), json=body, headers={"Idempotency-Key": call["idempotency_key"]})
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert s.rig.state() == s.before
    # A new plan over the same actions knows they were undone, and running it calls nothing.
    calls = s.rig.calls()
    replan = s.rig.plan(agent=s.agent, last=len(s.recent))
    for old, new in zip(s.done["steps"], replan["steps"], strict=True):
        assert old["action_id"] == new["action_id"]
        if old["status"] == "done":
            assert (new["status"], new["reason"]) == ("already_undone", f"already undone by plan {s.plan['id']}")
        else:
            assert new["status"] == old["status"]
    assert ok(s.rig.execute(replan["id"]))["status"] == "done"
    assert s.rig.calls() == calls and s.rig.state() == s.before


def test_the_story_of_an_undone_object_says_who_undid_it_and_when(scenario: Scenario) -> None:
    step = next(step for step in scenario.done["steps"] if step["status"] == "done")
    kind, ident = step["objects"][0].split(":", 1)
    story = ok(scenario.rig.api.get(f"/api/objects/{kind}/{ident}/story"))
    trace_id, span_id = step["action_id"].split(":")
    action = next(item for item in story["steps"] if item["trace_id"] == trace_id and item["span_id"] == span_id)
    assert f"undone by {ONCALL} at " in action["sentence"], action["sentence"]
    assert re.search(rf"undone by {re.escape(ONCALL)} at \d{{4}}-\d\d-\d\d \d\d:\d\d UTC", action["sentence"])
    assert action["details"]["undone_by"] == ONCALL
    undo = [item for item in story["steps"]
            if item["kind"] == "undo" and item["details"].get("undone_action") == step["action_id"]]
    assert len(undo) == 1 and ONCALL in undo[0]["sentence"], undo


# --- several agents: per-agent plans and their conflicts -----------------------------------------------


CONFLICT = re.compile(
    r"^(?:\w+ of )?(\w+) (\S+) was changed after this action by (\S+) \(([\w.]+) at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\)$")
# A step held back by a newer step of the same plan on the same field that stays in place.
HELD = re.compile(r"^(?:\w+ of )?\w+ \S+ was changed again by \S+ \([\w.]+ at [\d :-]+ UTC\), "
                  r"a step of this plan that stays (irreversible|conflicted)$")


def test_a_per_agent_plan_names_later_changes_by_other_agents_and_leaves_them_alone(rig: Rig) -> None:
    rig.fleet(seed=4, workflows=80, start=FIRST_START)
    performed = rig.actions()
    plans = {agent: rig.plan(agent=agent, last=1000) for agent in AGENTS}
    conflicted = [(agent, step) for agent, plan in plans.items()
                  for step in plan["steps"] if step["status"] == "conflicted" and not HELD.match(step["reason"])]
    assert conflicted, "seed 4 makes agents touch the same tickets and orders"
    for agent, step in conflicted:
        kind, ident, by, name, when = CONFLICT.match(step["reason"]).groups()  # type: ignore[union-attr]
        assert f"{kind}:{ident}" in step["objects"] and by != agent
        # The change it names is real: a performed action by that agent on that object, after this one.
        assert any(a["agent"] == by and a["name"] == name and f"{kind}:{ident}" in a["objects"] and at(a) > at(step)
                   and at(a).strftime("%Y-%m-%d %H:%M:%S") == when for a in performed)
    agent = max(plans, key=lambda a: sum(1 for other, _ in conflicted if other == a))
    plan = plans[agent]
    done = ok(rig.execute(plan["id"]))
    assert done["status"] == "done"
    skipped = [step for step in done["steps"] if step["status"] == "conflicted"]
    assert skipped and all(CONFLICT.match(step["reason"]) or HELD.match(step["reason"]) for step in skipped)
    made = keyed(rig.calls(), plan["id"])
    assert not {f"{plan['id']}:{step['action_id']}" for step in skipped} & set(made)
    assert len(made) == sum(1 for step in done["steps"] if step["status"] == "done")


def test_a_later_change_that_was_undone_no_longer_conflicts(rig: Rig) -> None:
    rig.fleet(seed=4, workflows=80, start=FIRST_START)
    performed = rig.actions()
    plans = {agent: rig.plan(agent=agent, last=1000) for agent in AGENTS}
    undone: set[str] = set()
    for agent in AGENTS:  # undo what every agent can undo now; conflicted steps stay
        executed = ok(rig.execute(rig.plan(agent=agent, last=1000)["id"]))
        undone |= {step["action_id"] for step in executed["steps"] if step["status"] == "done"}
    rig.server.wait_drained()
    freed: dict[str, list[Json]] = {}
    for agent, plan in plans.items():
        # Conflicted steps whose every later change on their objects was undone since (or is the agent's own).
        mine = {step["action_id"] for step in plan["steps"]}
        freed[agent] = [step for step in plan["steps"] if step["status"] == "conflicted" and all(
            a["action_id"] in undone or a["action_id"] in mine for a in performed
            if set(a["objects"]) & set(step["objects"]) and at(a) > at(step))]
    assert any(freed.values()), "precondition: undoing the agents' plans should clear some conflicts"
    for agent, steps in freed.items():
        replan = {step["action_id"]: step for step in rig.plan(agent=agent, last=1000)["steps"]}
        # No longer conflicted: reversible now, or undone already by a plan run later in the loop above.
        assert all(replan[step["action_id"]]["status"] == "reversible"
                   or (replan[step["action_id"]]["status"] == "already_undone" and step["action_id"] in undone)
                   for step in steps), [
            replan[step["action_id"]]["reason"] for step in steps]


# --- failure mid-plan, then resume ------------------------------------------------------------------------


def test_a_failure_mid_plan_stops_it_and_a_resume_finishes_it_without_double_effects(rig: Rig) -> None:
    agent = "ops-agent"
    rig.fleet(seed=3, workflows=40, start=FIRST_START)
    before = rig.state()
    only_agent_acts(rig, agent, seed=6, workflows=60, start=SECOND_START)
    recent = rig.actions(since=BETWEEN)
    plan = rig.plan(agent=agent, last=len(recent))
    runnable = [step for step in plan["steps"] if step["status"] == "reversible"]
    assert len(runnable) >= 6 and {step["status"] for step in plan["steps"]} <= {"reversible", "irreversible"}
    # Fail the first step at or past the middle whose path no earlier step's path contains.
    k = next(i for i in range(len(runnable) // 2, len(runnable))
             if not any(call_path(runnable[i]) in call_path(runnable[j]) for j in range(i)))
    failing = runnable[k]
    ok(rig.rec.post("/faults", json={"fail_next": 1, "path_contains": call_path(failing)}))

    failed = ok(rig.execute(plan["id"]))
    assert failed["status"] == "failed"
    assert failed["error"].startswith(f"step {failing['action_id']} ({failing['action']}) failed: ")
    assert "answered 503 to POST" in failed["error"] and "failed on its side" in failed["error"]
    assert "injected fault" not in failed["error"], "the system's answer is summarised, never echoed"
    statuses = {step["action_id"]: step for step in failed["steps"]}
    assert [statuses[step["action_id"]]["status"] for step in runnable] == ["done"] * k + ["failed"] + ["reversible"] * (
        len(runnable) - k - 1), "a failure must stop the plan: later steps are not run"
    assert "503" in statuses[failing["action_id"]]["reason"] and statuses[failing["action_id"]]["attempts"] == 1
    made = keyed(rig.calls(), plan["id"])
    assert set(made) == {step["call"]["idempotency_key"] for step in runnable[: k + 1]}
    assert [c["status"] for c in made[failing["call"]["idempotency_key"]]] == [503]
    assert rig.state() != before

    # The saga is durable: after a restart the plan is still failed and resumable.
    ok(rig.rec.delete("/faults"))
    rig.server.stop()
    rig.server.start()
    rig.api.close()
    rig.api = rig.server.client()
    assert rig.get_plan(plan["id"])["status"] == "failed"
    # Resume, twice at once: one run, each step's effect exactly once.
    first, second = rig.execute(plan["id"], wait=False), rig.execute(plan["id"], wait=False)
    assert first.status_code == second.status_code == 200
    done = ok(rig.execute(plan["id"]))
    assert done["status"] == "done" and done["error"] == ""
    ran = {step["action_id"] for step in runnable}
    assert all(step["status"] == "done" for step in done["steps"] if step["action_id"] in ran)
    by_id = {step["action_id"]: step for step in done["steps"]}
    assert by_id[failing["action_id"]]["attempts"] == 2
    assert all(by_id[step["action_id"]]["attempts"] == 1 for step in runnable if step is not failing)
    assert rig.state() == before
    made = keyed(rig.calls(), plan["id"])
    assert set(made) == {step["call"]["idempotency_key"] for step in runnable}
    assert all(effects(calls) == 1 for calls in made.values()), {k: v for k, v in made.items() if effects(v) != 1}
    assert [c["status"] for c in made[failing["call"]["idempotency_key"]]] == [503, 200]
    audit = [e for e in rig.audit() if e["act"] == "rollback.step" and e["details"]["plan"] == plan["id"]]
    results = Counter((e["subject"], e["details"]["result"]) for e in audit)
    assert results[(f"action:{failing['action_id']}", "failed")] == 1
    assert all(results[(f"action:{step['action_id']}", "undone")] == 1 for step in runnable)


def test_a_failed_undo_does_not_count_as_undone_in_a_new_plan(rig: Rig) -> None:
    agent = "ops-agent"
    only_agent_acts(rig, agent, seed=6, workflows=40, start=SECOND_START)
    plan = rig.plan(agent=agent, last=1000)
    failing = next(step for step in plan["steps"] if step["status"] == "reversible")
    ok(rig.rec.post("/faults", json={"fail_next": 1, "path_contains": call_path(failing)}))
    assert ok(rig.execute(plan["id"]))["status"] == "failed"
    rig.server.wait_drained()
    replan = rig.plan(agent=agent, last=1000)
    step = next(step for step in replan["steps"] if step["action_id"] == failing["action_id"])
    assert step["status"] == "reversible", (step["status"], step["reason"])


# --- approvals -------------------------------------------------------------------------------------------


def record_high_risk_refund(rig: Rig, agent: str, amount: float = 420.0) -> tuple[str, str]:
    """An agent issues a refund on the records service and reports it as a high-risk auto action over OTLP."""
    order = f"ORD-{uid()}"
    answer = ok(rig.rec.post("/refunds", json={"order_id": order, "amount": amount, "currency": "EUR"},
                             headers={"Idempotency-Key": f"agent-{uid()}"}), 201)
    refund = answer["refund_id"]
    span = make_span("refund.issue", {
        "flightrec.operation": "action", "gen_ai.agent.name": agent,
        "flightrec.action.name": "refund.issue", "flightrec.action.system": "billing", "flightrec.action.risk": "high",
        "flightrec.mode": "auto", "flightrec.object.type": "order", "flightrec.object.id": order,
        "flightrec.action.amount": amount, "flightrec.action.currency": "EUR",
        "flightrec.undo.kind": "http", "flightrec.undo.target": f"/refunds/{refund}/undo",
        "flightrec.undo.system": "records",
        "flightrec.undo.args": json.dumps({"refund_id": refund, "order_id": order, "amount": amount, "currency": "EUR"}),
    }, start_ns=time.time_ns() - 60 * 10**9)
    response = httpx.post(f"{rig.server.url}/v1/traces", content=make_request([span], {"service.name": agent})
                          .SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 200, response.text
    rig.server.wait_drained()
    return order, refund


def test_a_high_risk_plan_needs_a_second_person_and_everything_is_audited(shared: Rig) -> None:
    rig = shared
    agent = f"refund-bot-{uid()}"
    before = rig.state()
    order, refund = record_high_risk_refund(rig, agent)
    assert rig.state() != before
    head = rig.audit()[-1]["seq"] if rig.audit() else 0
    plan = rig.plan(actor="maria", agent=agent, last=5)
    assert plan["status"] == "awaiting_approval" and plan["requires_approval"]
    [step] = plan["steps"]
    assert (step["status"], step["risk"], step["action"], step["amount"]) == ("reversible", "high", "refund.issue",
                                                                               "420.00 EUR")
    assert step["objects"] == [f"order:{order}"]

    refused = rig.execute(plan["id"], actor="maria")
    assert refused.status_code == 409 and "needs approval" in refused.json()["detail"]
    own = rig.approve(plan["id"], "maria")
    assert own.status_code == 403
    assert own.json()["detail"] == "maria wrote this plan and cannot approve it: a second person must"
    assert rig.get_plan(plan["id"])["status"] == "awaiting_approval"
    assert not [c for c in rig.calls() if (c["idempotency_key"] or "").startswith(plan["id"])]

    approved = ok(rig.approve(plan["id"], "tom"))
    assert approved["status"] == "ready" and [a["actor"] for a in approved["approvals"]] == ["tom"]
    done = ok(rig.execute(plan["id"], actor="maria"))
    assert done["status"] == "done" and done["steps"][0]["status"] == "done"
    assert rig.state() == before
    assert ok(rig.rec.get(f"/refunds/{refund}"))["status"] == "reversed"
    late = rig.approve(plan["id"], "lena")
    assert late.status_code == 409 and "done" in late.json()["detail"]

    entries = rig.audit(since=head)
    acts = [(e["act"], e["actor"], e["subject"]) for e in entries]
    assert acts == [
        ("rollback.plan", "maria", f"plan:{plan['id']}"),
        ("rollback.approve", "tom", f"plan:{plan['id']}"),
        ("rollback.execute", "maria", f"plan:{plan['id']}"),
        ("rollback.step", "maria", f"action:{step['action_id']}"),
    ]
    assert entries[-1]["details"] == {"plan": plan["id"], "action": "refund.issue", "result": "undone", "error": "",
                                      "restored": "unchecked"}
    check = ok(rig.api.get("/api/audit/verify"))
    assert check["ok"] and check["problems"] == [] and check["entries"] == entries[-1]["seq"]


# --- kill switches --------------------------------------------------------------------------------------


class Check(NamedTuple):
    """One answer the SDK gave the fleet."""

    at: float  # time.monotonic()
    agent: str
    flow: str
    starting: bool
    allowed: bool
    state: str


class RecordingControls(ControlClient):
    """The SDK client, unchanged, noting every answer it gives the fleet."""

    log: list[Check] = []

    def check(self, agent: str, flow: str = "", starting: bool = False):  # type: ignore[override]
        decision = super().check(agent, flow, starting)
        RecordingControls.log.append(Check(time.monotonic(), agent, flow, starting, decision.allowed, decision.state))
        return decision


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Check]:
    """The fleet's kill-switch answers, in order (the fleet builds `flightrec.sdk.ControlClient`)."""
    monkeypatch.setattr("flightrec.sdk.ControlClient", RecordingControls)
    RecordingControls.log = []
    return RecordingControls.log


def ingest_latency(server: ServerProcess) -> float:
    """Seconds from acknowledging one span to reading it back through the API, on this machine, now."""
    span = make_span("probe", {"gen_ai.agent.name": "latency-probe"})
    started = time.monotonic()
    response = httpx.post(f"{server.url}/v1/traces", content=make_request([span]).SerializeToString(),
                          headers={"content-type": "application/x-protobuf"}, timeout=30)
    assert response.status_code == 200
    while httpx.get(f"{server.url}/api/traces/{span.trace_id.hex()}", timeout=30).status_code != 200:
        assert time.monotonic() - started < 60, "a probe span never became readable"
        time.sleep(0.05)
    return time.monotonic() - started


def test_pause_stops_every_fleet_process_within_the_cache_time_and_resume_restarts_it(
        rig: Rig, checks: list[Check], tmp_path: Path) -> None:
    agent, cache_s = "support-agent", 2.0  # the fleet's ControlClient keeps answers 2 s
    # Agent process 1: a paced fleet in this process (its checks are recorded). Its clock is far in the past,
    # so its spans are told apart from those of process 2, a `flightrec fleet` subprocess.
    in_process = FleetConfig(endpoint=rig.server.url, workflows=320, seed=31, records_url=rig.records.url,
                             check_controls=True, api_url=rig.server.url, pace_s=0.05, start=NOW - timedelta(hours=9))
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(report=run_fleet(in_process)), daemon=True)
    command = [sys.executable, "-m", "flightrec", "fleet", "--endpoint", rig.server.url, "--workflows", "320",
               "--seed", "32", "--records", rig.records.url, "--check-controls", "--api", rig.server.url,
               "--pace", "0.05"]
    boundary = NOW - timedelta(hours=5)  # process 2's clock starts at now - 320 * 30 s

    def performed_by_process_2() -> int:
        return len([a for a in rig.actions(agent=agent) if at(a) > boundary])

    with open(tmp_path / "fleet.log", "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not (performed_by_process_2() and any(c.agent == agent and c.allowed and not c.starting
                                                        for c in checks)):
                assert time.monotonic() < deadline and process.poll() is None, "the fleets did not start acting"
                time.sleep(0.2)
            paused_at = time.monotonic()
            rig.switch(agent, "pause", reason="refunds look wrong")
            paused = time.monotonic()
            # Process 2, seen through the API: its performed actions stop growing within 5 s (cache, export, ingest).
            counts: list[tuple[float, int]] = []
            while time.monotonic() < paused + 8:
                counts.append((time.monotonic(), performed_by_process_2()))
                time.sleep(0.25)
            settled = [n for t, n in counts if t >= paused + 5]
            assert settled and len(set(settled)) == 1, counts
            last_growth = max((t for (t, n), (_, m) in zip(counts, counts[1:]) if m > n), default=paused)
            # An action process 2 took just before its cached answer expired is seen through the API after
            # its export (0.5 s) and the server's ingest, which a loaded machine stretches: the bound is the
            # cache time plus the export delay plus the ingest latency measured now, not a fixed wall clock.
            assert last_growth - paused_at <= cache_s + 0.5 + ingest_latency(rig.server) + 1.0, counts
            assert thread.is_alive() and process.poll() is None, "the fleets ended too early to prove anything"
            assert ok(rig.api.get(f"/api/controls/agents/{agent}"))["state"] == "paused"
            resumed = time.monotonic()
            rig.switch(agent, "resume")
            grown = counts[-1][1]
            deadline = time.monotonic() + 8
            while performed_by_process_2() == grown:
                assert time.monotonic() < deadline, "process 2 did not act again after resume"
                time.sleep(0.25)
            assert thread.is_alive(), "the in-process fleet ended before resume could be observed"
            time.sleep(cache_s + 1.0)
        finally:
            thread.join(timeout=120)
            if process.poll() is None:
                process.wait(timeout=120)
    assert process.returncode == 0, (tmp_path / "fleet.log").read_text()[-2000:]
    rig.server.wait_drained()

    # Process 1, from its own checks: allowed until at most the cache time after the pause, refused after.
    mine = [c for c in checks if c.agent == agent]
    refused = [c for c in mine if not c.allowed]
    assert refused and {c.state for c in refused} == {"paused"}
    assert all(paused_at <= c.at <= resumed + cache_s + 0.5 for c in refused)
    last_allowed = max((c.at for c in mine if c.allowed and paused <= c.at < resumed), default=paused)
    assert last_allowed - paused <= cache_s + 0.5, "pause took longer than the cache time"
    # Every check once the cached answer expired is refused (a condition, not a wall-clock bound: on a
    # loaded machine the fleet's next check may come late, and when it comes it must be refused).
    expired = [c for c in mine if paused + cache_s + 0.5 < c.at < resumed]
    assert expired and not [c for c in expired if c.allowed], "a check after the cache time was allowed"
    assert any(c.allowed for c in mine if c.at > resumed + cache_s + 0.5), "resume did not take"
    assert outcome["report"].refused > 0
    # Other agents kept working throughout.
    assert any(c.allowed for c in checks if c.agent != agent and paused + cache_s < c.at < resumed)
    # Every action process 1 tried while paused is recorded as blocked, never performed.
    recorded = [a for a in rig.actions(agent=agent, performed=False) if a["status"] == "blocked" and at(a) < boundary]
    assert len(recorded) == sum(1 for c in mine if not c.allowed and not c.starting)
    assert all(not a["undo_kind"] for a in recorded)
    assert not {a["action_id"] for a in rig.actions(agent=agent)} & {a["action_id"] for a in recorded}


def test_a_throttled_agents_refused_actions_are_recorded_as_blocked(rig: Rig, checks: list[Check]) -> None:
    agent = "ops-agent"
    rig.switch(agent, "throttle", max_per_minute=2)
    calls_before = len(rig.calls())
    rig.fleet(seed=8, workflows=40, start=SECOND_START, check_controls=True)
    actions = [c for c in checks if c.agent == agent and not c.starting]
    refused = [c for c in actions if not c.allowed]
    assert refused and {c.state for c in refused} == {"throttled"}
    assert all(c.allowed for c in checks if c.agent == agent and c.starting), "throttling does not refuse new work"
    per_flow = Counter(c.flow for c in actions if c.allowed)
    assert per_flow and max(per_flow.values()) <= 2, per_flow
    mine = rig.actions(agent=agent, performed=False)
    blocked = [a for a in mine if a["status"] == "blocked"]
    assert len(blocked) == len(refused) and all(not a["undo_kind"] for a in blocked)
    assert len(mine) == len(actions), "every action the agent tried is in the registry"
    # Only performed actions reached the system of record: one call each, none for a blocked one.
    assert len(rig.calls()) - calls_before == sum(1 for a in rig.actions() if a["undo_kind"])


def test_an_agent_throttle_limits_all_its_flows_together(rig: Rig, checks: list[Check]) -> None:
    agent = "ops-agent"
    rig.switch(agent, "throttle", max_per_minute=2)
    rig.fleet(seed=8, workflows=40, start=SECOND_START, check_controls=True)
    allowed = [c for c in checks if c.agent == agent and not c.starting and c.allowed]
    assert len({c.flow for c in checks if c.agent == agent}) > 1, "precondition: the agent works several flows"
    assert len(allowed) <= 2, Counter(c.flow for c in allowed)


def test_the_sdk_check_honours_pause_throttle_drain_and_the_api_being_down(shared: Rig) -> None:
    rig = shared
    agent = f"sdk-agent-{uid()}"
    client = ControlClient(rig.server.url, cache_s=0.5)
    try:
        first = client.check(agent)
        fetched = time.monotonic()
        assert first.allowed and first.state == "running"
        rig.switch(agent, "pause", reason="investigating")
        paused = time.monotonic()
        if paused - fetched < 0.4:
            assert client.check(agent).allowed, "a fresh cached answer is used for cache_s"
        while client.check(agent).allowed:
            assert time.monotonic() - paused < 0.5 + 0.5, "pause not seen within cache_s + one request"
            time.sleep(0.01)
        decision = client.check(agent)
        assert (decision.allowed, decision.state, decision.reason) == (
            False, "paused", f"agent {agent} is paused: investigating")
        view = ok(rig.api.get(f"/api/controls/agents/{agent}"))
        assert (view["agent"], view["state"], view["actor"], view["reason"]) == (agent, "paused", ONCALL, "investigating")

        rig.switch(agent, "throttle", max_per_minute=3)
        throttled = ControlClient(rig.server.url, cache_s=0.5)
        answers = [throttled.check(agent) for _ in range(4)]
        assert [a.allowed for a in answers] == [True, True, True, False]
        assert (answers[-1].state, answers[-1].max_per_minute) == ("throttled", 3)
        assert answers[-1].reason == "throttled to 3 actions a minute"
        assert throttled.check(agent, starting=True).allowed, "starting new work is not an action"
        throttled.close()

        rig.switch(agent, "drain")
        draining = ControlClient(rig.server.url, cache_s=0.5)
        start = draining.check(agent, starting=True)
        assert (start.allowed, start.state) == (False, "draining") and "no new work" in start.reason
        assert draining.check(agent).allowed, "in-flight work may finish while draining"
        draining.close()

        rig.switch(agent, "resume")
        flow = f"flow-{uid()}"
        ok(rig.api.post(f"/api/controls/flows/{flow}/pause", json={"actor": ONCALL}))
        fresh = ControlClient(rig.server.url, cache_s=0.5)
        assert not fresh.check(agent, flow=flow).allowed and fresh.check(agent, flow="other").allowed
        assert fresh.check(agent).allowed
        fresh.close()
    finally:
        client.close()

    down = f"http://127.0.0.1:{free_port()}"
    open_client, closed_client = ControlClient(down, fail_open=True), ControlClient(down, fail_open=False)
    try:
        yes, no = open_client.check(agent), closed_client.check(agent)
        assert (yes.allowed, yes.state) == (True, "running") and "controls unreachable" in yes.reason
        assert (no.allowed, no.state) == (False, "paused") and "controls unreachable" in no.reason
    finally:
        open_client.close()
        closed_client.close()
    acts = [(e["act"], e["subject"]) for e in rig.audit() if e["subject"] == f"agent:{agent}"]
    assert acts == [("pause", f"agent:{agent}"), ("throttle", f"agent:{agent}"), ("drain", f"agent:{agent}"),
                    ("resume", f"agent:{agent}")]
    assert ok(rig.api.get("/api/audit/verify"))["ok"]


# --- bad inputs ----------------------------------------------------------------------------------------


def test_bad_inputs_are_refused_with_a_reason(shared: Rig) -> None:
    rig = shared
    api = rig.api
    no_selector = api.post("/api/rollback/plans", json={"last": 5, "actor": ONCALL})
    assert no_selector.status_code == 400 and "agent" in no_selector.json()["detail"]
    no_actor = api.post("/api/rollback/plans", json={"agent": "ops-agent"})  # without sign-in, who acts must be said
    assert no_actor.status_code == 400 and "actor is required" in no_actor.json()["detail"]
    blank = api.post("/api/rollback/plans", json={"agent": "ops-agent", "actor": " "})
    assert blank.status_code == 400 and "actor" in blank.json()["detail"]
    assert api.post("/api/rollback/plans", json={"agent": "ops-agent", "last": 0, "actor": ONCALL}).status_code == 422
    for method, path in (("GET", "/api/rollback/plans/nope"), ("POST", "/api/rollback/plans/nope/approve"),
                         ("POST", "/api/rollback/plans/nope/execute")):
        response = api.request(method, path, json={"actor": ONCALL} if method == "POST" else None)
        assert response.status_code == 404 and "no rollback plan nope" in response.json()["detail"], path
    plan = rig.plan(agent="nobody-acted")
    assert plan["steps"] == [] and plan["status"] == "ready"
    for verb in ("approve", "execute"):
        unnamed = api.post(f"/api/rollback/plans/{plan['id']}/{verb}", json={})
        assert unnamed.status_code == 400 and "actor is required" in unnamed.json()["detail"]
        blank = api.post(f"/api/rollback/plans/{plan['id']}/{verb}", json={"actor": ""})
        assert blank.status_code == 400 and "actor is required" in blank.json()["detail"], verb
    zero = api.post("/api/controls/agents/ops-agent/throttle", json={"actor": ONCALL, "max_per_minute": 0, "force": True})
    assert zero.status_code == 400 and "max_per_minute" in zero.json()["detail"]
    assert api.post("/api/controls/agents/ops-agent/pause", json={"actor": ""}).status_code == 400
    assert api.post("/api/controls/agents/ops-agent/explode", json={"actor": ONCALL}).status_code == 422
    assert ok(api.get("/api/controls/agents/ops-agent"))["state"] == "running"
