"""The rollback console under Streamlit's AppTest, against a real ``flightrec serve`` whose fleet
really acted on a real demo system of record (``flightrec records``): the runbook, an agent's
last actions, a plan's steps, the author refused as approver, execution to done with progress,
a failure then resume, pause through the kill switch, and an API that is down."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from flightrec.dashboards.launch import APP
from flightrec.dashboards.safe_text import plain_text
from flightrec.dashboards.ui import ROLLBACK_PAGE
from flightrec.demo.fleet import FleetConfig, FleetReport, run_fleet
from flightrec.demo.fleet_catalog import RECORDS_SYSTEM
from tests.conftest import ServerProcess, free_port
from tests.otlp_helpers import make_request, make_span
from tests.test_records import RecordsServer

pytestmark = pytest.mark.slow
Json = dict[str, Any]


class Console:
    """A server with a fleet's actions performed on a records service, plus agents acting on purpose."""

    def __init__(self, server: ServerProcess, records: RecordsServer, report: FleetReport) -> None:
        self.server, self.records, self.report = server, records, report

    def get(self, path: str, **params: Any) -> Json:
        with self.server.client() as client:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response.json()

    def post(self, path: str, body: Json) -> Json:
        with self.server.client() as client:
            response = client.post(path, json=body)
            response.raise_for_status()
            return response.json()

    def record(self, kind: str, ident: str) -> Json:
        with self.records.client() as client:
            return client.get(f"/{kind}/{ident}").raise_for_status().json()

    def fault(self, rule: Json | None) -> None:
        """Make the records service fail matching calls (``None`` clears it)."""
        with self.records.client() as client:
            (client.post("/faults", json=rule) if rule else client.delete("/faults")).raise_for_status()

    def act(self, agent: str, name: str, risk: str, path: str, body: Json, undo: str, ref: tuple[str, str]) -> Json:
        """Perform an action on the records service and record it as the action span an agent would send.

        The undo names the registered demo system (``records``, from the server's FLIGHTREC_RECORDS_URL)
        and a path on it; ``risk`` is only what the span reports: approval follows the operator's policy
        (by action name and amount)."""
        with self.records.client() as client:
            answer = client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
            answer.raise_for_status()
        done = answer.json()
        id_key = "refund_id" if "refund_id" in done else "credit_id"
        span = make_span(name, {
            "flightrec.operation": "action", "flightrec.action.name": name, "flightrec.action.system": "billing",
            "flightrec.action.risk": risk, "flightrec.mode": "auto", "flightrec.object.type": ref[0],
            "flightrec.object.id": ref[1], "flightrec.action.amount": body["amount"],
            "flightrec.action.currency": body["currency"], "flightrec.undo.kind": "http",
            "flightrec.undo.system": RECORDS_SYSTEM, "flightrec.undo.target": undo.format(id=done[id_key]),
            "flightrec.undo.args": json.dumps({id_key: done[id_key], **body}),
        }, start_ns=time.time_ns() - 60_000_000_000)
        with self.server.client() as client:
            client.post("/v1/traces", content=make_request([span], {"service.name": agent}).SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf"}).raise_for_status()
        self.server.wait_drained()
        return done


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    base = tmp_path_factory.mktemp("rollback-console")
    records = RecordsServer(base / "records.db").start()
    server = ServerProcess(base / "srv", env={"FLIGHTREC_RECORDS_URL": records.url})
    try:
        server.start()
        report = run_fleet(FleetConfig(endpoint=server.url, workflows=40, seed=7, records_url=records.url))
        server.wait_drained()
        yield Console(server, records, report)
    finally:
        server.stop()
        records.stop()


def dashboards(monkeypatch: pytest.MonkeyPatch, api_url: str, actor: str) -> AppTest:
    monkeypatch.setenv("FLIGHTREC_API_URL", api_url)
    monkeypatch.delenv("FLIGHTREC_API_TOKEN", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["you_are"] = actor
    return at


def console_page(monkeypatch: pytest.MonkeyPatch, api_url: str, actor: str = "", **params: str) -> AppTest:
    """The dashboards opened on the rollback console, as ``actor`` (the sidebar's "You are")."""
    at = dashboards(monkeypatch, api_url, actor)
    at.run()
    at.query_params.update(params)
    at.switch_page(ROLLBACK_PAGE)
    return ok(at.run())


def shared_plan_link(monkeypatch: pytest.MonkeyPatch, api_url: str, actor: str, plan_id: str) -> AppTest:
    """What ``/?plan=<id>`` opens: the link a plan's author sends to the person who approves it."""
    at = dashboards(monkeypatch, api_url, actor)
    at.query_params["plan"] = plan_id
    return ok(at.run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [error.value for error in at.exception]
    return at


def click(at: AppTest, key: str) -> AppTest:
    return ok(at.button(key=key).click().run())


def shown(markdown: str) -> str:
    """Markdown as read on screen: without the escapes (and word joiners) that keep text literal."""
    return plain_text(markdown)


def texts(elements: Any) -> list[str]:
    return [shown(element.value) for element in elements]


def everything(at: AppTest) -> str:
    return "\n".join(texts([*at.markdown, *at.caption, *at.info, *at.success, *at.warning, *at.error]))


def runbook(at: AppTest) -> str:
    """The runbook as written on the page (a numbered Markdown list from pause to hand-back)."""
    return next((text for text in texts(at.markdown) if text.startswith("1. **Pause the agent**")), "")


def open_plan(at: AppTest) -> str:
    """The id of the plan the page has open (after Build the plan)."""
    plan_id = at.session_state["rb_plan"]
    assert plan_id, everything(at)
    return plan_id


def test_the_console_shows_the_runbook_and_asks_who_you_are(monkeypatch, console: Console) -> None:
    at = console_page(monkeypatch, console.server.url)

    assert shown(at.title[0].value) == "Rollback console"
    steps = [line.split(". ", 1)[0] for line in runbook(at).splitlines() if line[:1].isdigit()]
    assert steps == [str(number) for number in range(1, 8)]
    for words in ("Drain", "Build the plan", "Irreversible", "Conflicted", "second person", "Resume",
                  "idempotency key", "stories", "Hand the work back to humans"):
        assert words in runbook(at)
    assert any("You are" in text and "recorded" in text for text in texts(at.warning))
    assert at.button(key="rb_build").disabled, "nobody may act before saying who they are"


def actions_rows(at: AppTest) -> list[str]:
    table = next(text for text in texts(at.markdown) if text.startswith("| Time (UTC) | Action | Object |"))
    return table.splitlines()[2:]


def test_an_agents_last_actions_are_the_ones_a_plan_would_undo(monkeypatch, console: Console) -> None:
    agent = "ops-agent"
    expected = console.get("/api/actions", agent=agent, last=10, performed=True)["items"]
    at = console_page(monkeypatch, console.server.url, actor="alice", agent=agent)

    rows = actions_rows(at)
    assert len(rows) == len(expected) == 10
    for row, action in zip(rows, expected, strict=True):
        assert "-badge[performed]" in row and action["name"] in row
        assert ", ".join(action["objects"]) in row
        if action["amount"]:
            assert f"{action['amount']:,.2f}" in row
    assert not at.get("toggle"), "no filter: the list is what a plan considers"
    story_links = {shown(link.value) for link in at.main.get("page_link")}
    assert any(ref.split(":", 1)[1] in label for ref in expected[0]["objects"] for label in story_links)
    control = console.get(f"/api/controls/agents/{agent}")
    assert control["state"] == "running" and "RUNNING" in everything(at)


def test_with_a_plan_open_the_last_actions_are_exactly_its_steps(monkeypatch, console: Console) -> None:
    at = console_page(monkeypatch, console.server.url, actor="alice", agent="support-agent")
    click(at, "rb_build")
    plan = console.get(f"/api/rollback/plans/{open_plan(at)}")

    rows = actions_rows(at)
    assert len(rows) == len(plan["steps"]) > 0
    for row, step in zip(rows, plan["steps"], strict=True):
        assert step["action"] in row and ", ".join(step["objects"]) in row and step["amount"] in row
        assert f"-badge[{step['status'].replace('_', ' ')}]" in row or f"-badge[{step['status']}]" in row


def test_an_objects_last_actions_and_the_switches_of_its_agents(monkeypatch, console: Console) -> None:
    ref = next(ref for ref in console.report.example_objects if ref.startswith("ticket:"))
    expected = console.get("/api/actions", object=ref, last=10, performed=True)["items"]
    at = console_page(monkeypatch, console.server.url, actor="alice", object=ref)

    assert at.session_state["rb_by"] == "Object (type:id)" and at.text_input(key="rb_object").value == ref
    assert len(actions_rows(at)) == len(expected) > 0
    agents = list(dict.fromkeys(action["agent"] for action in expected))
    shown_text = everything(at)
    assert f"{agents[0]} is" in shown_text and "RUNNING" in shown_text


def test_building_a_plan_shows_every_step_and_what_it_would_call(monkeypatch, console: Console) -> None:
    at = console_page(monkeypatch, console.server.url, actor="alice", agent="support-agent")
    click(at, "rb_build")

    plan = console.get(f"/api/rollback/plans/{open_plan(at)}")
    statuses = {step["status"] for step in plan["steps"]}
    assert {"reversible", "irreversible"} <= statuses and plan["status"] == "ready"
    shown_text = everything(at)
    assert f"Plan {plan['id']}" in [shown(header.value) for header in at.subheader]
    assert "a dry run, nothing was called" in shown_text
    for step in plan["steps"]:
        assert step["action"] in shown_text
        if step["status"] == "irreversible":
            assert f"Hand to a person: {step['reason']}" in shown_text
    badges = [text for text in texts(at.markdown) if text.startswith((":blue-badge[reversible]",
                                                                      ":orange-badge[irreversible]"))]
    assert len(badges) == len(plan["steps"])
    calls = [expander for expander in at.expander if expander.label == "What will be called"]
    assert len(calls) == len(plan["steps"])
    targets = [step["call"]["target"] for step in plan["steps"] if step["call"]]
    assert sorted(targets) == sorted(block.value for block in at.code), "each target as text, exactly as it will be called"
    assert len(at.json) == len(targets), "each reversible step's arguments, as they will be sent"
    assert not at.get("progress"), "nothing runs before Execute"


def test_a_high_risk_plan_needs_a_second_person_and_the_author_is_refused(monkeypatch, console: Console) -> None:
    invoice = f"INV-{uuid.uuid4().hex[:6]}"
    # The span reports low risk; the operator's policy makes a 250 EUR refund high risk (above 150).
    console.act("refund-bot", "refund.issue", "low", "/refunds",
                {"invoice_id": invoice, "amount": 250.0, "currency": "EUR"}, "/refunds/{id}/undo", ("invoice", invoice))
    assert console.record("invoices", invoice)["refunded_total"] == 250.0
    at = console_page(monkeypatch, console.server.url, actor="alice", agent="refund-bot")
    click(at, "rb_build")
    plan_id = open_plan(at)
    [step] = console.get(f"/api/rollback/plans/{plan_id}")["steps"]
    assert (step["status"], step["risk"], step["reported_risk"]) == ("reversible", "high", "low"), step

    assert any("Needs a second person" in text and "other than alice" in text for text in texts(at.warning))
    assert at.button(key="rb_execute").disabled
    click(at, "rb_approve")
    assert any("alice wrote this plan and cannot approve it" in text for text in texts(at.error)), everything(at)
    assert console.get(f"/api/rollback/plans/{plan_id}")["status"] == "awaiting_approval"

    at = shared_plan_link(monkeypatch, console.server.url, "bob", plan_id)
    assert shown(at.title[0].value) == "Rollback console"
    assert f"Plan {plan_id}" in [shown(item.value) for item in at.subheader]
    assert at.selectbox(key="rb_agent").value == "refund-bot", "the choices point at what the plan undoes"
    click(at, "rb_approve")
    assert any("Approved by bob" in text for text in texts(at.success))
    click(at, "rb_execute")
    at = poll_until_finished(at)
    assert console.get(f"/api/rollback/plans/{plan_id}")["status"] == "done"
    assert console.record("invoices", invoice)["refunded_total"] == 0, "reversed on the system of record"


def poll_until_finished(at: AppTest, timeout_s: float = 30) -> AppTest:
    """Rerun the page (as the live fragment would) until the plan has finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(text.startswith(("Done:", "Stopped:")) for text in texts([*at.success, *at.error])):
            return at
        time.sleep(0.2)
        ok(at.run())
    raise AssertionError(f"the plan did not finish: {everything(at)}")


def test_executing_shows_progress_and_ends_done(monkeypatch, console: Console) -> None:
    agent = "ops-agent"
    at = console_page(monkeypatch, console.server.url, actor="carol", agent=agent)
    at.number_input(key="rb_last").set_value(5)
    click(at, "rb_build")
    plan = console.get(f"/api/rollback/plans/{open_plan(at)}")
    reversible = [step for step in plan["steps"] if step["status"] == "reversible"]
    assert reversible and plan["status"] == "ready"
    assert at.button(key="rb_execute").label.startswith(f"Execute: undo {len(reversible)} step")

    click(at, "rb_execute")
    assert at.get("progress"), "progress shows from the moment it runs"
    at = poll_until_finished(at)

    done = f"Done: {len(reversible)} of {len(reversible)} steps undone"
    assert any(text.startswith(done) for text in texts(at.success))
    progress = at.get("progress")[0]
    assert progress.value == 100 and f"{len(reversible)} of {len(reversible)} steps undone" in progress.proto.text
    assert sum(text.startswith(":green-badge[undone]") for text in texts(at.markdown)) == len(reversible)
    assert console.get(f"/api/rollback/plans/{plan['id']}")["status"] == "done"
    affected = {ref for step in reversible for ref in step["objects"]}
    links = {shown(link.value) for link in at.main.get("page_link")}
    assert all(f"{ref.split(':')[0].capitalize()} {ref.split(':', 1)[1]}" in links for ref in affected)
    kind, ident = sorted(affected)[0].split(":", 1)
    story = console.get(f"/api/objects/{kind}/{ident}/story")
    assert any("carol undid" in step["sentence"] for step in story["steps"]), "the story says who undid it"


def test_a_failed_plan_shows_the_error_and_resumes_to_done(monkeypatch, console: Console) -> None:
    account = f"ACC-{uuid.uuid4().hex[:6]}"
    for amount in (12.5, 7.25):
        console.act("credit-bot", "credit.apply", "low", "/credits",
                    {"account_id": account, "amount": amount, "currency": "EUR"}, "/credits/{id}/undo",
                    ("account", account))
    at = console_page(monkeypatch, console.server.url, actor="dave", agent="credit-bot")
    click(at, "rb_build")
    plan_id = open_plan(at)

    console.fault({"fail_next": 1000, "path_contains": "/undo"})
    try:
        click(at, "rb_execute")
        at = poll_until_finished(at)
    finally:
        console.fault(None)  # the cause, fixed
    assert any(text.startswith("Stopped: step") for text in texts(at.error)), everything(at)
    assert console.get(f"/api/rollback/plans/{plan_id}")["status"] == "failed"
    assert any(text.startswith(":red-badge[failed]") for text in texts(at.markdown))

    click(at, "rb_resume_plan")
    at = poll_until_finished(at)
    assert any(text.startswith("Done: 2 of 2 steps undone") for text in texts(at.success)), everything(at)
    assert console.record("accounts", account)["credit_balance"] == 0


def test_pause_and_resume_flip_the_agents_kill_switch(monkeypatch, console: Console) -> None:
    agent = "finance-agent"
    at = console_page(monkeypatch, console.server.url, actor="erin", agent=agent)
    at.text_input(key="rb_reason").input("refunds look wrong")
    click(at, "rb_pause")
    try:
        control = console.get(f"/api/controls/agents/{agent}")
        assert (control["state"], control["actor"], control["reason"]) == ("paused", "erin", "refunds look wrong")
        assert "PAUSED" in everything(at) and f"{agent} is now paused" in everything(at)
        assert at.button(key="rb_pause").disabled and at.button(key="rb_pause").label == "Paused", \
            "no Pause while already paused"
        assert not at.button(key="rb_drain").disabled and not at.button(key="rb_resume").disabled
        decision = console.get("/api/controls/check", agent=agent)
        assert decision["allowed"] is False
    finally:
        click(at, "rb_resume")
    assert console.get(f"/api/controls/agents/{agent}")["state"] == "running"
    assert "RUNNING" in everything(at) and not at.button(key="rb_pause").disabled


def test_the_console_explains_an_api_that_is_down(monkeypatch) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    at = console_page(monkeypatch, down, actor="alice", agent="ops-agent")

    errors = texts(at.error)
    assert len(errors) == 1 and f"Cannot reach the Flight Recorder API at {down}" in errors[0]
    assert "flightrec serve" in errors[0]
    assert "Hand the work back to humans" in runbook(at), "the runbook stays readable"
