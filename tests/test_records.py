"""The demo system of record (``flightrec records``), tested against real server processes:
each action and its undo, idempotency keys, undo twice, unknown ids, conflicts, injected faults,
restarts on the same database, and the fleet acting on it and being undone from its own spans."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from flightrec.demo import fleet_catalog as cat
from flightrec.demo.fleet import FleetConfig, build_workflow_spans
from tests.conftest import free_port

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
Json = dict[str, Any]


class RecordsServer:
    """A ``flightrec records`` subprocess; restartable on the same database."""

    def __init__(self, db: Path) -> None:
        self.db, self.port = db, free_port()
        self.proc: subprocess.Popen | None = None
        self.log = db.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> RecordsServer:
        command = [sys.executable, "-m", "flightrec", "records", "--port", str(self.port), "--db", str(self.db)]
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(command, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"records exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"records did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordsServer]:
    """One server shared by the module; tests use their own ids and compare whole states."""
    server = RecordsServer(tmp_path_factory.mktemp("records") / "records.db").start()
    yield server
    server.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[RecordsServer]:
    """A server on an empty database, for counting every call."""
    server = RecordsServer(tmp_path / "records.db").start()
    yield server
    server.stop()


def uid() -> str:
    return uuid.uuid4().hex[:8]


def post(client: httpx.Client, path: str, body: Json | None = None, key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key} if key else None)


def ok(response: httpx.Response, status: int = 200) -> Json:
    assert response.status_code == status, response.text
    return response.json()


def state(client: httpx.Client, full: bool = False) -> Json:
    return ok(client.get("/state", params={"full": full}))


def calls(client: httpx.Client) -> list[Json]:
    return ok(client.get("/calls"))["items"]


# --- each action and its undo ------------------------------------------------------------------

Act = Callable[[httpx.Client, str], tuple[str, Json]]


def act_refunds(c: httpx.Client, u: str) -> tuple[str, Json]:
    """Two refunds on one invoice (totals in exact cents); the undo reverses the first."""
    first = ok(post(c, "/refunds", {"invoice_id": f"INV-{u}", "amount": 10.1, "currency": "EUR"}), 201)
    second = ok(post(c, "/refunds", {"invoice_id": f"INV-{u}", "amount": 0.2, "currency": "EUR"}), 201)
    assert (first["refunded_total"], second["previous_refunded_total"], second["refunded_total"]) == (10.1, 10.1, 10.3)
    assert first["status"] == "issued" and first["refund_id"] != second["refund_id"]
    undo = ok(post(c, f"/refunds/{second['refund_id']}/undo", {"refund_id": second["refund_id"]}))
    assert undo["refunded_total"] == 10.1
    body = {"refund_id": first["refund_id"], "invoice_id": f"INV-{u}", "amount": 10.1, "currency": "EUR"}
    return f"/refunds/{first['refund_id']}/undo", body


def act_order_refund(c: httpx.Client, u: str) -> tuple[str, Json]:
    answer = ok(post(c, "/refunds", {"order_id": f"ORD-{u}", "amount": 129.95, "currency": "USD"}), 201)
    assert answer["order_id"] == f"ORD-{u}" and ok(c.get(f"/orders/ORD-{u}"))["refunded_total"] == 129.95
    return f"/refunds/{answer['refund_id']}/undo", {"refund_id": answer["refund_id"], "order_id": f"ORD-{u}",
                                                    "amount": 129.95, "currency": "USD"}


def act_credit(c: httpx.Client, u: str) -> tuple[str, Json]:
    answer = ok(post(c, "/credits", {"account_id": f"ACC-{u}", "amount": 33.33, "currency": "EUR"}), 201)
    assert (answer["status"], answer["credit_balance"]) == ("applied", 33.33)
    return f"/credits/{answer['credit_id']}/undo", {"credit_id": answer["credit_id"], "account_id": f"ACC-{u}",
                                                    "amount": 33.33, "currency": "EUR"}


def act_plan(c: httpx.Client, u: str) -> tuple[str, Json]:
    current = ok(c.get(f"/accounts/ACC-{u}"))["plan"]
    new = "enterprise" if current != "enterprise" else "starter"
    answer = ok(post(c, f"/accounts/ACC-{u}/plan", {"plan": new}))
    assert answer == {"account_id": f"ACC-{u}", "plan": new, "previous_plan": current}
    return f"/accounts/ACC-{u}/plan/undo", {"plan": current, "expected_plan": new}


def act_order(field: str) -> Act:
    def act(c: httpx.Client, u: str) -> tuple[str, Json]:
        answer = ok(post(c, f"/orders/ORD-{u}", {"field": field, "value": "changed"}))
        assert answer["field"] == field and answer["value"] == "changed"
        return f"/orders/ORD-{u}/undo", {"field": field, "value": answer["previous_value"], "expected_value": "changed"}

    return act


def act_ticket(field: str, value: str) -> Act:
    def act(c: httpx.Client, u: str) -> tuple[str, Json]:
        answer = ok(post(c, f"/tickets/TCK-{u}/{field}", {field: value}))
        assert answer[field] == value and answer[f"previous_{field}"] in ("new", "unassigned")
        return f"/tickets/TCK-{u}/{field}", {field: answer[f"previous_{field}"]}

    return act


ACTS: dict[str, Act] = {
    "invoice-refunds": act_refunds,
    "order-refund": act_order_refund,
    "credit": act_credit,
    "plan": act_plan,
    **{f"order-{field}": act_order(field) for field in ("shipping_address", "shipping_speed", "status")},
    "ticket-status": act_ticket("status", "solved"),
    "ticket-assignee": act_ticket("assignee", "dana.ruiz"),
}


@pytest.mark.parametrize("name", ACTS)
def test_each_action_and_its_undo_restore_the_state_exactly(records: RecordsServer, name: str) -> None:
    with records.client() as c:
        before = state(c)
        undo_path, undo_body = ACTS[name](c, uid())
        assert state(c) != before
        assert "already" not in ok(post(c, undo_path, undo_body))
        assert state(c) == before
        assert ok(post(c, undo_path, undo_body))["already"] is True
        assert state(c) == before


def test_state_is_sorted_and_full_state_keeps_reversed_entries(records: RecordsServer) -> None:
    with records.client() as c:
        undo_path, undo_body = act_credit(c, uid())
        ok(post(c, undo_path, undo_body))
        credit_id = undo_body["credit_id"]
        full = state(c, full=True)
        assert set(full) == {"tickets", "accounts", "orders", "invoices", "refunds", "credits"}
        assert ok(c.get(f"/credits/{credit_id}"))["status"] == "reversed"
        assert credit_id in [entry["id"] for entry in full["credits"]]
        assert credit_id not in [entry["id"] for entry in state(c)["credits"]]
        for items in full.values():
            assert [item["id"] for item in items] == sorted(item["id"] for item in items)


# --- idempotency, undo twice, errors -----------------------------------------------------------


def test_an_idempotency_key_replays_the_first_answer_with_one_effect(records: RecordsServer) -> None:
    key, account = f"k-{uid()}", f"ACC-{uid()}"
    body = {"account_id": account, "amount": 12.5, "currency": "EUR"}
    with records.client() as c:
        first = post(c, "/credits", body, key)
        second = post(c, "/credits", body, key)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json() and second.headers["Idempotent-Replayed"] == "true"
        assert ok(c.get(f"/accounts/{account}"))["credit_balance"] == 12.5
        reused = post(c, "/credits", body | {"amount": 99.0}, key)
        assert reused.status_code == 422 and "already used" in reused.json()["detail"]
        assert ok(c.get(f"/accounts/{account}"))["credit_balance"] == 12.5
        mine = [call for call in calls(c) if call["idempotency_key"] == key]
        assert [(x["status"], x["replayed"]) for x in mine] == [(201, False), (201, True), (422, False)]
        assert all(x["method"] == "POST" and x["path"] == "/credits" for x in mine)
        undo_key, credit = f"u-{uid()}", first.json()["credit_id"]
        answers = [ok(post(c, f"/credits/{credit}/undo", {"credit_id": credit}, undo_key)) for _ in range(3)]
        assert answers[0] == answers[1] == answers[2] and "already" not in answers[0]
        assert ok(c.get(f"/accounts/{account}"))["credit_balance"] == 0


def test_undo_twice_has_one_effect(records: RecordsServer) -> None:
    order = f"ORD-{uid()}"
    with records.client() as c:
        refund = ok(post(c, "/refunds", {"order_id": order, "amount": 40, "currency": "EUR"}), 201)["refund_id"]
        ok(post(c, "/refunds", {"order_id": order, "amount": 2, "currency": "EUR"}), 201)
        first, second = (ok(post(c, f"/refunds/{refund}/undo")) for _ in range(2))
        assert first["status"] == "reversed" and first["refunded_total"] == 2.0 and "already" not in first
        assert second == {"refund_id": refund, "status": "reversed", "already": True}
        assert ok(c.get(f"/orders/{order}"))["refunded_total"] == 2.0


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/refunds/RF-999999/undo", None, "no refund with id RF-999999"),
        ("/credits/CR-999999/undo", {"credit_id": "CR-999999"}, "no credit with id CR-999999"),
        ("/accounts/ACC-never/plan/undo", {"plan": "team"}, "account ACC-never was never changed"),
        ("/orders/ORD-never/undo", {"field": "status", "value": "processing"}, "order ORD-never was never changed"),
    ],
)
def test_undo_of_an_unknown_id_is_404(records: RecordsServer, path: str, body: Json | None, needle: str) -> None:
    with records.client() as c:
        before = state(c, full=True)
        response = post(c, path, body)
        assert response.status_code == 404 and needle in response.json()["detail"]
        assert state(c, full=True) == before


def test_an_undo_that_no_longer_matches_is_409_without_effect(records: RecordsServer) -> None:
    account, order = f"ACC-{uid()}", f"ORD-{uid()}"
    with records.client() as c:
        ok(post(c, f"/accounts/{account}/plan", {"plan": "pro"}))
        previous = ok(post(c, f"/accounts/{account}/plan", {"plan": "starter"}))["previous_plan"]
        stale = post(c, f"/accounts/{account}/plan/undo", {"plan": "team", "expected_plan": "enterprise"})
        assert previous == "pro" and stale.status_code == 409 and "changed since" in stale.json()["detail"]
        refund = ok(post(c, "/refunds", {"order_id": order, "amount": 5, "currency": "EUR"}), 201)["refund_id"]
        wrong = post(c, f"/refunds/{refund}/undo", {"refund_id": refund, "amount": 6})
        other = post(c, f"/refunds/{refund}/undo", {"refund_id": "RF-000001x"})
        assert wrong.status_code == other.status_code == 409
        assert ok(c.get(f"/accounts/{account}"))["plan"] == "starter"
        assert ok(c.get(f"/refunds/{refund}"))["status"] == "issued"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/refunds", {"order_id": "O", "invoice_id": "I", "amount": 1, "currency": "EUR"}),
        ("/refunds", {"amount": 1, "currency": "EUR"}),
        ("/refunds", {"order_id": "O", "amount": -1, "currency": "EUR"}),
        ("/credits", {"account_id": "A", "amount": 1, "currency": "euro"}),
        ("/orders/O", {"field": "price", "value": "1"}),
        ("/accounts/A/plan", {"plan": "pro", "surprise": 1}),
    ],
)
def test_invalid_bodies_are_422(records: RecordsServer, path: str, body: Json) -> None:
    with records.client() as c:
        assert post(c, path, body).status_code == 422


def test_faults_answer_503_without_effect_then_succeed(records: RecordsServer) -> None:
    account, key = f"ACC-{uid()}", f"f-{uid()}"
    body = {"account_id": account, "amount": 7, "currency": "EUR"}
    with records.client() as c:
        try:
            ok(c.post("/faults", json={"fail_next": 2, "path_contains": "/credits"}))
            assert ok(post(c, f"/tickets/TCK-{uid()}/status", {"status": "open"}))["status"] == "open"
            assert [post(c, "/credits", body, key).status_code for _ in range(3)] == [503, 503, 201]
            assert ok(c.get(f"/accounts/{account}"))["credit_balance"] == 7
            assert [x["status"] for x in calls(c) if x["idempotency_key"] == key] == [503, 503, 201]
            ok(c.post("/faults", json={"fail_next": 5, "status": 500}))
            ok(c.delete("/faults"))
            assert post(c, "/credits", body).status_code == 201
        finally:
            c.delete("/faults")


def test_state_and_idempotency_survive_a_restart(tmp_path: Path) -> None:
    server = RecordsServer(tmp_path / "records.db").start()
    try:
        with server.client() as c:
            ok(post(c, "/refunds", {"invoice_id": "INV-1", "amount": 3.5, "currency": "EUR"}, "r1"), 201)
            ok(post(c, "/accounts/ACC-1/plan", {"plan": "pro"}))
            ok(post(c, "/tickets/TCK-1/assignee", {"assignee": "mei.wong"}))
            before, before_full, before_calls = state(c), state(c, full=True), calls(c)
        server.stop()
        server.start()
        with server.client() as c:
            assert state(c) == before and state(c, full=True) == before_full and calls(c) == before_calls
            replay = post(c, "/refunds", {"invoice_id": "INV-1", "amount": 3.5, "currency": "EUR"}, "r1")
            assert replay.headers["Idempotent-Replayed"] == "true" and state(c) == before
            assert ok(post(c, "/refunds", {"invoice_id": "INV-1", "amount": 1, "currency": "EUR"}), 201)[
                "refund_id"] == "RF-000002"
    finally:
        server.stop()


# --- the fleet acts on it, and its own undo descriptors restore the state -----------------------


def action_spans(workflows: list[list[ReadableSpan]]) -> list[ReadableSpan]:
    """Every action span in the order the fleet acted."""
    ordered = (sorted(workflow, key=lambda span: span.start_time) for workflow in workflows)
    return [span for workflow in ordered for span in workflow
            if span.attributes.get("flightrec.operation") == "action"]


def performed(span: ReadableSpan) -> bool:
    return (span.attributes["flightrec.mode"] == "auto" and span.status.status_code is not StatusCode.ERROR
            and span.attributes["flightrec.action.name"] not in cat.IRREVERSIBLE_ACTIONS)


HANDLERS: dict[str, Callable[[Json], tuple[str, Json]]] = {
    "helpdesk.set_status": lambda a: (f"/tickets/{a['ticket_id']}/status", {"status": a["previous_status"]}),
    "helpdesk.reassign": lambda a: (f"/tickets/{a['ticket_id']}/assignee", {"assignee": a["previous_assignee"]}),
}


def undo_request(records: RecordsServer, span: ReadableSpan) -> tuple[str, Json]:
    """The HTTP call undoing a span: POST target with the args, or the handler's call on the records base."""
    attrs = span.attributes
    args = json.loads(attrs["flightrec.undo.args"])
    assert attrs["flightrec.undo.system"] == cat.RECORDS_SYSTEM
    if attrs["flightrec.undo.kind"] == "http":
        return records.url + attrs["flightrec.undo.target"], args
    path, body = HANDLERS[attrs["flightrec.undo.target"]](args)
    return records.url + path, body


def run_fleet_on(records: RecordsServer, workflows: int = 160, seed: int = 11) -> list[ReadableSpan]:
    config = FleetConfig(workflows=workflows, seed=seed, start=START, records_url=records.url + "/")
    return action_spans(list(build_workflow_spans(config)))


def test_the_fleet_performs_auto_actions_and_its_undo_args_restore_the_state(fresh: RecordsServer) -> None:
    with fresh.client() as c:
        before = state(c)
        actions = run_fleet_on(fresh)
        done = [span for span in actions if performed(span)]
        not_done = [s for s in actions if s.attributes["flightrec.mode"] in ("observe", "assist")]
        assert len(done) >= 30 and len(not_done) >= 30
        assert not any(s.status.status_code is StatusCode.ERROR for s in actions)
        received = calls(c)
        assert len(received) == len(done) and all(x["status"] in (200, 201) for x in received)
        assert all(x["idempotency_key"] for x in received)
        after = state(c)
        assert after != before and after["refunds"] and after["credits"] and after["tickets"]
        refunds = [s for s in done if s.attributes["flightrec.action.name"] == "refund.issue"]
        assert {json.loads(s.attributes["flightrec.undo.args"])["refund_id"] for s in refunds} == {
            r["id"] for r in after["refunds"]}
        for span in done:
            attrs = span.attributes
            if attrs["flightrec.undo.kind"] == "http":  # a path on the registered system, never the service's URL
                assert attrs["flightrec.undo.target"].startswith("/") and "//" not in attrs["flightrec.undo.target"]
                assert fresh.url not in json.dumps(dict(attrs))
        steps = [undo_request(fresh, span) for span in reversed(done)]
        keys = [f"plan-1:{index}" for index in range(len(steps))]
        for (target, body), key in zip(steps, keys):
            ok(httpx.post(target, json=body, headers={"Idempotency-Key": key}, timeout=10))
        assert state(c) == before
        for (target, body), key in zip(steps, keys):
            assert httpx.post(target, json=body, headers={"Idempotency-Key": key}).headers["Idempotent-Replayed"]
        assert state(c) == before
        assert all(r["status"] == "reversed" for r in state(c, full=True)["refunds"])


def test_the_rollback_executor_undoes_the_fleet_through_the_registry(fresh: RecordsServer) -> None:
    from flightrec.rollback.executors import BUILTIN_HANDLERS, UndoExecutor
    from flightrec.rollback.models import ReadBack, UndoCall
    from flightrec.rollback.registry import SystemRegistry
    from flightrec.settings import Settings

    # The demo system of record is registered from records_url, as `flightrec demo` and `serve` do.
    registry = SystemRegistry(None, demo=Settings(records_url=fresh.url).demo_systems())
    with fresh.client() as c:
        before = state(c)
        done = [span for span in run_fleet_on(fresh, workflows=90, seed=5) if performed(span)]
        assert done and state(c) != before
        executor = UndoExecutor(handlers=BUILTIN_HANDLERS)
        checks: list[tuple[bool | None, str]] = []
        try:
            for index, span in enumerate(reversed(done)):
                attrs = span.attributes
                call = UndoCall(kind=attrs["flightrec.undo.kind"], system=attrs["flightrec.undo.system"],
                                target=attrs["flightrec.undo.target"], args=json.loads(attrs["flightrec.undo.args"]),
                                idempotency_key=f"p:{index}",
                                check=ReadBack.model_validate_json(attrs["flightrec.undo.check"]))
                executor.run(call, registry)
                checks.append(executor.check(call, registry))
        finally:
            executor.close()
        assert state(c) == before
        assert checks and all(restored is True for restored, _ in checks), checks


def test_a_failing_records_call_fails_the_action_span_without_undo(fresh: RecordsServer) -> None:
    with fresh.client() as c:
        ok(c.post("/faults", json={"fail_next": 1000, "path_contains": "/refunds"}))
        actions = run_fleet_on(fresh, workflows=120)
        refunds = [s for s in actions if s.attributes["flightrec.action.name"] == "refund.issue"
                   and s.attributes["flightrec.mode"] == "auto"]
        assert refunds
        for span in refunds:
            assert span.status.status_code is StatusCode.ERROR and "503" in span.status.description
            assert span.events[0].attributes["exception.type"] == "RecordsError"
            assert "flightrec.undo.args" not in span.attributes
        assert not state(c)["refunds"]
        others = [s for s in actions if performed(s)]
        assert others and all(s.attributes["flightrec.action.name"] != "refund.issue" for s in others)


def test_the_fleets_amounts_agree_from_proposal_to_edit_to_action_and_edits_show_before_and_after() -> None:
    """Issue 14: the model's proposed amount, a person's edit (before -> after) and the action's amount agree,
    and no order or invoice is refunded beyond what was charged across runs."""
    workflows = list(build_workflow_spans(FleetConfig(workflows=400, seed=7, start=START)))
    edits = refunds = 0
    refunded: dict[str, float] = {}
    totals: dict[str, float] = {}
    for workflow in workflows:
        spans = sorted(workflow, key=lambda span: span.start_time)
        for span in spans:
            result = span.attributes.get("gen_ai.tool.call.result")
            if span.attributes.get("gen_ai.tool.name") in ("get_order", "get_invoice") and result:
                ref = json.loads(span.attributes["gen_ai.tool.call.arguments"])
                if "total" in json.loads(result):
                    totals[next(iter(ref.values()))] = float(json.loads(result)["total"])
        humans = [s for s in spans if s.attributes.get("flightrec.operation") == "human"]
        for human in humans:
            attrs = human.attributes
            if attrs["flightrec.human.decision"] == "edit":
                edits += 1
                assert attrs["flightrec.human.before"] != attrs["flightrec.human.after"], dict(attrs)
                assert attrs["flightrec.human.reason"] in cat.EDIT_REASONS.values()
        for action in (s for s in spans if s.attributes.get("flightrec.action.name") in ("refund.issue", "credit.apply")):
            attrs = action.attributes
            amount = f"{attrs['flightrec.action.amount']:.2f} {attrs['flightrec.action.currency']}"
            decisions = [s for s in spans if s.name.startswith("chat ") and "stop" in str(
                s.attributes.get("gen_ai.response.finish_reasons"))]
            proposed = decisions[-1].attributes["gen_ai.output.messages"]
            changed = [h for h in humans if "flightrec.human.after" in h.attributes]
            if changed:
                assert changed[-1].attributes["flightrec.human.after"] == amount
                assert changed[-1].attributes["flightrec.human.before"].split()[0] in proposed
            else:
                assert f"{attrs['flightrec.action.amount']:.2f}" in proposed, (proposed, amount)
            if attrs["flightrec.action.name"] == "refund.issue" and attrs["flightrec.mode"] != "observe":
                refunds += 1
                target = attrs["flightrec.object.id"]
                refunded[target] = round(refunded.get(target, 0) + attrs["flightrec.action.amount"], 2)
                assert refunded[target] <= totals[target] + 0.005, (target, refunded[target], totals[target])
    assert edits >= 5 and refunds >= 20
