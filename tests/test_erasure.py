"""Erasure that keeps proofs valid (issue 11, deliverable 6), on a real server with real ingested spans.

Spans and logs go in over OTLP, the server's sequencer makes them leaves, checkpoints are signed on
demand. Erasing by subject and by value replaces content with the request's marker while every
inclusion proof stays byte-identical and verifies against the checkpoint signed before; `verify
--store` passes and names the erased spans; tampering, and erasure rows forged in the store, are
still caught; bad input and other roles are refused and change nothing; a legal hold refuses the
erasure unless overridden with a reason.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from flightrec.evidence.checkpoints import open_checkpoint
from flightrec.evidence.merkle import leaf_hash, verify_consistency, verify_inclusion
from tests.conftest import ServerProcess, wait_for
from tests.otlp_helpers import kvs, make_request, make_span

ADMIN = "erasure-admin-token"
MARK = "[erased: "


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("erasure") / "srv",
                        env={"FLIGHTREC_API_TOKEN": ADMIN, "FLIGHTREC_CHECKPOINT_INTERVAL_S": "0"}).start()
    yield srv
    srv.stop()


def api(server: ServerProcess, method: str, path: str, token: str = ADMIN, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=120, **kwargs)


def token_for(server: ServerProcess, role: str) -> str:
    created = api(server, "POST", "/api/principals", json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "roles": [role]})
    assert created.status_code == 201, created.text
    return created.json()["token"]


def send(server: ServerProcess, spans: list, resource: dict | None = None) -> list[tuple[str, str]]:
    body = make_request(spans, resource).SerializeToString()
    answer = httpx.post(server.url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"},
                        timeout=30)
    assert answer.status_code == 200, answer.text
    server.wait_drained()
    return [(span.trace_id.hex(), span.span_id.hex()) for span in spans]


def send_logs(server: ServerProcess, records: list[tuple[bytes, bytes, str, str, dict]]) -> None:
    """(trace id, span id, event name, body, attributes) per record."""
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.extend(kvs({"service.name": "mailer"}))
    logs = resource.scope_logs.add().log_records
    for trace, span, name, body, attrs in records:
        record = logs.add(time_unix_nano=time.time_ns(), trace_id=trace, span_id=span, event_name=name,
                          body={"string_value": body})
        record.attributes.extend(kvs(attrs))
    answer = httpx.post(server.url + "/v1/logs", content=request.SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert answer.status_code == 200, answer.text
    server.wait_drained()


def public_key(server: ServerProcess) -> bytes:
    return base64.b64decode(api(server, "GET", "/api/evidence/key").json()["raw_base64"])


def proof_of(server: ServerProcess, ref: tuple[str, str], size: int | None = None) -> httpx.Response:
    params = {"trace_id": ref[0], "span_id": ref[1], **({"size": size} if size else {})}
    return api(server, "GET", "/api/evidence/proofs/inclusion", params=params)


def sealed(server: ServerProcess, refs: list[tuple[str, str]]) -> tuple[dict, dict]:
    """Sign checkpoints until every ref is a leaf under one; (that checkpoint, each ref's proof in it)."""
    found: dict = {}

    def all_proven() -> bool:
        found["checkpoint"] = api(server, "POST", "/api/evidence/checkpoints", json={}).json()["checkpoint"]
        found["proofs"] = {ref: proof_of(server, ref, found["checkpoint"]["size"]) for ref in refs}
        return all(answer.status_code == 200 for answer in found["proofs"].values())

    wait_for(all_proven, 60, "the spans sequenced under a signed checkpoint")
    return found["checkpoint"], {ref: answer.json() for ref, answer in found["proofs"].items()}


def verifies(proof: dict, root: bytes) -> bool:
    return verify_inclusion(leaf_hash(proof["leaf_data"].encode()), proof["leaf_index"], proof["tree_size"],
                            [bytes.fromhex(node) for node in proof["path"]], root)


def erase(server: ServerProcess, token: str = ADMIN, **body) -> httpx.Response:
    return api(server, "POST", "/api/erasures", token=token, json=body)


def spans_by_id(server: ServerProcess, trace: str) -> tuple[dict[str, dict], list[dict]]:
    view = api(server, "GET", f"/api/traces/{trace}").json()
    return {span["span_id"]: span for span in view["spans"]}, view["erasures"]


def erasure_entries(server: ServerProcess) -> list[dict]:
    return [entry for entry in api(server, "GET", "/api/audit", params={"limit": 1000}).json()["items"]
            if entry["act"] == "erasure.apply"]


def run_cli(server: ServerProcess, *args: str, token: str = ADMIN) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flightrec", *args, "--api", server.url], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "COLUMNS": "400", "FLIGHTREC_API_TOKEN": token})


def customer_trace(server: ServerProcess) -> dict:
    """A refund run for one customer: the agent span names the customer and a ticket, the LLM call under it
    carries the customer's words, a GenAI event log record the same; plus an unrelated trace."""
    tag = uuid.uuid4().hex[:8]
    customer, ticket, email = f"C-{tag.upper()}", f"TCK-{tag}", f"annsmith{tag}"  # (intake redacts e-mails)
    root = make_span("handle refund", {"gen_ai.agent.name": "refund-agent", "gen_ai.operation.name": "invoke_agent",
                                       "customer.id": customer, "ticket.id": ticket,
                                       "note": f"customer {customer} wrote in"})
    llm = make_span("chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-test",
                             "gen_ai.agent.name": "refund-agent",
                             "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                                 {"type": "text", "content": f"I am Ann Smith, {email}, refund me"}]}]),
                             "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                                 {"type": "text", "content": "Refund approved for Ann Smith"}]}])},
                    trace_id=root.trace_id, parent=root.span_id)
    other = make_span("unrelated", {"gen_ai.agent.name": "other-agent", "note": "nothing personal here"})
    refs = send(server, [root, llm, other])
    send_logs(server, [(root.trace_id, llm.span_id, "gen_ai.user.message", "Ann Smith asks for a refund", {})])
    return {"customer": customer, "ticket": ticket, "email": email, "root": refs[0], "llm": refs[1],
            "other": refs[2], "sent": [root, llm]}


# -- erasing -----------------------------------------------------------------------------------


def test_erasing_a_subject_keeps_every_proof_and_verify_names_the_erased_spans(server: ServerProcess) -> None:
    run = customer_trace(server)
    refs = [run["root"], run["llm"], run["other"]]
    checkpoint, before = sealed(server, refs)
    opened = open_checkpoint(checkpoint["note"], public_key(server))
    trace = run["root"][0]
    untouched_other = spans_by_id(server, run["other"][0])[0][run["other"][1]]

    preview = erase(server, subject=f"customer:{run['customer']}", reason="GDPR Art. 17 request #1", dry_run=True)
    assert preview.status_code == 200, preview.text
    plan = preview.json()
    assert plan["dry_run"] and plan["request_id"] == "" and plan["spans"] == 2 and plan["logs"] == 1
    assert {"span:customer.id", "span:note", "span:gen_ai.input.messages", "span:gen_ai.output.messages"} <= set(
        plan["keys"]) and "span:ticket.id" not in plan["keys"]
    assert {example["name"] for example in plan["examples"]} == {"handle refund", "chat"}
    spans, erasures = spans_by_id(server, trace)
    assert erasures == [] and spans[run["llm"][1]]["attributes"]["gen_ai.input.messages"].count(run["email"]) == 1

    done = erase(server, subject=f"customer:{run['customer']}", reason="GDPR Art. 17 request #1")
    assert done.status_code == 200, done.text
    outcome = done.json()
    request_id = outcome["request_id"]
    assert request_id.startswith("er_") and outcome["spans"] == 2 and outcome["logs"] == 1 and outcome["audit_seq"]
    marker = f"[erased: {request_id}]"

    spans, erasures = spans_by_id(server, trace)
    root, llm = spans[run["root"][1]], spans[run["llm"][1]]
    assert root["attributes"]["customer.id"] == marker and root["attributes"]["note"] == marker
    assert root["attributes"]["ticket.id"] == run["ticket"]  # not the subject's: kept
    assert llm["attributes"]["gen_ai.input.messages"] == marker and llm["input_text"].startswith(marker)
    assert llm["attributes"]["gen_ai.output.messages"] == marker
    assert [event["attributes"]["body"] for event in llm["events"]] == [marker]  # the log record's body
    assert (root["name"], llm["name"], llm["parent_span_id"]) == ("handle refund", "chat", run["root"][1])
    assert {(e["span_id"], e["request_id"]) for e in erasures} == {(run["root"][1], request_id),
                                                                   (run["llm"][1], request_id)}
    assert next(e for e in erasures if e["span_id"] == run["llm"][1])["prior_content_hash"] == json.loads(
        before[run["llm"]]["leaf_data"])["content"]
    assert run["email"] not in json.dumps(spans) and "Ann Smith" not in json.dumps(spans)
    assert spans_by_id(server, run["other"][0])[0][run["other"][1]] == untouched_other

    # Sending the spans again does not bring the content back (a stored span is insert-once).
    send(server, run["sent"])
    assert spans_by_id(server, trace)[0][run["llm"][1]]["attributes"]["gen_ai.input.messages"] == marker

    # The story still reads, saying "[erased]" where the text was.
    story = api(server, "GET", f"/api/objects/ticket/{run['ticket']}/story").json()
    llm_step = next(step for step in story["steps"] if step["span_id"] == run["llm"][1])
    assert "[erased]" in llm_step["sentence"] and "Ann" not in json.dumps(story)

    # Every proof is byte-identical and verifies against the checkpoint signed before the erasure.
    for ref in refs:
        after = proof_of(server, ref, checkpoint["size"]).json()
        assert after == before[ref] and verifies(after, opened.root)
    newer, latest = sealed(server, refs)
    reopened = open_checkpoint(newer["note"], public_key(server))
    consistency = api(server, "GET", "/api/evidence/proofs/consistency",
                      params={"old": checkpoint["size"], "new": newer["size"]}).json()
    assert verify_consistency(checkpoint["size"], newer["size"], opened.root, reopened.root,
                              [bytes.fromhex(node) for node in consistency["path"]])
    assert all(verifies(latest[ref], reopened.root) for ref in refs)

    [entry] = [e for e in erasure_entries(server) if e["subject"] == f"erasure:{request_id}"]
    assert entry["details"]["spans"] == "2" and entry["details"]["reason"] == "GDPR Art. 17 request #1"
    assert entry["seq"] == outcome["audit_seq"] and "span:customer.id" in entry["details"]["keys"]
    listed = api(server, "GET", "/api/erasures").json()["items"]
    assert any(item["request_id"] == request_id and item["spans"] == 2 for item in listed)

    verdict = run_cli(server, "verify", "--store")
    out = verdict.stdout.replace("\n", "")
    assert verdict.returncode == 0 and "intact" in out, verdict.stdout + verdict.stderr
    for ref in (run["root"], run["llm"]):
        assert f"erased: {ref[0]}:{ref[1]}: content erased on " in out and f"by request {request_id}" in out

    again = erase(server, subject=f"customer:{run['customer']}", reason="GDPR Art. 17 request #1, again").json()
    assert again["request_id"] == "" and again["spans"] == 0  # nothing left to erase: nothing changed


def test_erasing_values_reaches_span_resource_event_and_log_values_and_nothing_else(server: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    email, phone = f"bobjones-{tag}", f"Elm Street {tag}"  # (intake redacts e-mails and phone numbers)
    looked_up = make_span("crm lookup", {"tool.name": "crm", "contact": f"mail {email.upper()} now"})
    evented = make_span("notify", {"channel": "mail"})
    event = evented.events.add(time_unix_nano=evented.start_time_unix_nano, name="sent")
    event.attributes.extend(kvs({"to": email, "kind": "receipt"}))
    clean = make_span("clean", {"note": "keep me"})
    refs = send(server, [looked_up, evented, clean])
    owned = send(server, [make_span("owned", {"x": "y"})], {"service.name": "mailer", "owner.phone": phone})
    send_logs(server, [(clean.trace_id, clean.span_id, "mail.sent", f"delivered to {email}", {"k": "v"})])
    checkpoint, before = sealed(server, [*refs, *owned])
    clean_before = spans_by_id(server, refs[2][0])[0][refs[2][1]]

    done = run_cli(server, "erase", "--value", email, "--value", phone, "--reason", "request #2 (e-mail, phone)")
    assert done.returncode == 0, done.stdout + done.stderr
    request_id = done.stdout.strip().splitlines()[-1]
    assert request_id.startswith("er_") and "erased 3 spans and 1 log records" in done.stdout.replace("\n", "")
    marker = f"[erased: {request_id}]"

    lookup = spans_by_id(server, refs[0][0])[0][refs[0][1]]
    assert lookup["attributes"] == {**lookup["attributes"], "contact": marker, "tool.name": "crm"}
    notify = spans_by_id(server, refs[1][0])[0][refs[1][1]]
    assert notify["events"][0]["attributes"] == {"to": marker, "kind": "receipt"}
    mailer = spans_by_id(server, owned[0][0])[0][owned[0][1]]
    assert mailer["resource_attributes"]["owner.phone"] == marker
    clean_after = spans_by_id(server, refs[2][0])[0][refs[2][1]]
    assert clean_after["attributes"] == clean_before["attributes"]  # no value of it matched: its content is kept
    assert [e["attributes"]["body"] for e in clean_after["events"]] == [marker]  # but the log naming the value is erased
    keys = {row["span_id"]: row["keys"] for row in api(server, "GET", f"/api/traces/{refs[1][0]}").json()["erasures"]}
    assert keys == {refs[1][1]: ["event:0:to"]}
    assert spans_by_id(server, owned[0][0])[1][0]["keys"] == ["resource:owner.phone"]
    for ref in [*refs, *owned]:
        assert proof_of(server, ref, checkpoint["size"]).json() == before[ref]
    assert run_cli(server, "verify", "--store").returncode == 0


# -- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"reason": "r"}, 422, "name a subject (type:id) or at least one value"),
    ({"values": ["someone@example.org"], "reason": "  "}, 422, "a reason is required"),
    ({"values": ["abc"], "reason": "r"}, 422, "shorter than 4 characters"),
    ({"values": ["fine@example.org", "a"], "reason": "r"}, 422, "'a'"),
    ({"subject": "nocolon", "reason": "r"}, 400, "is not of the form type:id"),
    ({"subject": "customer:C-NOBODY-STORED", "reason": "r"}, 404, "no stored span links to customer:C-NOBODY-STORED"),
    ({"values": ["someone@example.org"], "reason": "r", "override_hold": True}, 422, "needs an override_reason"),
])
def test_bad_requests_are_refused_with_the_reason_and_change_nothing(server: ServerProcess, body: dict, status: int,
                                                                     message: str) -> None:
    entries, listed = len(erasure_entries(server)), api(server, "GET", "/api/erasures").json()["count"]
    answer = erase(server, **body)
    assert answer.status_code == status and message in answer.text, answer.text
    assert len(erasure_entries(server)) == entries and api(server, "GET", "/api/erasures").json()["count"] == listed


@pytest.mark.parametrize(("args", "message"), [
    (["--reason", "r"], "name a subject (type:id) or at least one value"),
    (["--value", "ab", "--reason", "r"], "shorter than 4 characters"),
    (["--subject", "customer", "--reason", "r"], "is not of the form type:id"),
    (["--value", "someone@example.org", "--reason", ""], "a reason is required"),
    (["--subject", "customer:C-NOBODY-STORED", "--reason", "r"], "no stored span links to customer:C-NOBODY-STORED"),
])
def test_the_cli_refuses_bad_input_with_the_reason(server: ServerProcess, args: list[str], message: str) -> None:
    done = run_cli(server, "erase", *args)
    assert done.returncode == 1 and message in (done.stdout + done.stderr).replace("\n", ""), done.stdout + done.stderr


def test_only_compliance_and_admin_erase(server: ServerProcess) -> None:
    run = customer_trace(server)
    body = {"subject": f"customer:{run['customer']}", "reason": "r", "dry_run": True}
    for role in ("sre", "viewer", "auditor"):
        refused = erase(server, token_for(server, role), **body)
        assert refused.status_code == 403 and "compliance" in refused.json()["detail"], (role, refused.text)
    for role in ("sre", "viewer"):
        assert api(server, "GET", "/api/erasures", token=token_for(server, role)).status_code == 403
    assert api(server, "GET", "/api/erasures", token=token_for(server, "auditor")).status_code == 200
    officer = token_for(server, "compliance")
    assert erase(server, officer, **body).json()["spans"] == 2
    done = erase(server, officer, **{**body, "dry_run": False}).json()
    [entry] = [e for e in erasure_entries(server) if e["subject"] == f"erasure:{done['request_id']}"]
    assert entry["actor"].startswith("compliance-")  # recorded under the signed-in principal


def test_a_legal_hold_refuses_the_erasure_unless_overridden_with_a_reason(server: ServerProcess) -> None:
    run = customer_trace(server)
    held = api(server, "POST", "/api/holds", json={"trace": run["root"][0], "reason": "litigation 2026-17"})
    assert held.status_code == 201, held.text
    hold_id = held.json()["id"]
    body = {"subject": f"customer:{run['customer']}", "reason": "GDPR Art. 17 request #3"}
    refused = erase(server, **body)
    assert refused.status_code == 409 and hold_id in refused.text and "17(3)" in refused.text
    assert spans_by_id(server, run["root"][0])[1] == []  # nothing erased
    assert erase(server, **body, dry_run=True).json()["holds"] == [hold_id]
    cli_refused = run_cli(server, "erase", "--subject", body["subject"], "--reason", body["reason"])
    assert cli_refused.returncode == 1 and hold_id in cli_refused.stdout.replace("\n", "") + cli_refused.stderr
    done = erase(server, **body, override_hold=True, override_reason="the hold covers the actions, not the texts")
    assert done.status_code == 200 and done.json()["spans"] == 2 and done.json()["holds"] == [hold_id]
    [entry] = [e for e in erasure_entries(server) if e["subject"] == f"erasure:{done.json()['request_id']}"]
    assert entry["details"]["holds_overridden"] == hold_id
    assert entry["details"]["override_reason"] == "the hold covers the actions, not the texts"

    other = customer_trace(server)  # a hold on another object of the same run (its ticket) holds the run too
    ticket_hold = api(server, "POST", "/api/holds", json={"object": f"ticket:{other['ticket']}", "reason": "audit"})
    assert ticket_hold.status_code == 201, ticket_hold.text
    body = {"subject": f"customer:{other['customer']}", "reason": "GDPR Art. 17 request #6"}
    assert erase(server, **body, dry_run=True).json()["holds"] == [ticket_hold.json()["id"]]
    assert erase(server, **body).status_code == 409


# -- tampering is still caught (last: the server is stopped and the store edited) ----------------

TAMPER = """
import sys
from flightrec.store import StoreConfig, open_store
store = open_store(StoreConfig(dsn="chdb://" + sys.argv[1], database="flightrec"))
for sql in sys.argv[2:]:
    store.engine.command("tamper", sql.replace("DB.", "flightrec."), settings={"mutations_sync": 2})
store.close()
"""


def test_tampering_and_forged_erasure_rows_are_still_detected(server: ServerProcess) -> None:
    run = customer_trace(server)
    victim = customer_trace(server)
    forged_too = customer_trace(server)
    later = customer_trace(server)
    sealed(server, [run["root"], run["llm"], victim["llm"], victim["other"], forged_too["llm"], later["root"]])
    request_id = erase(server, subject=f"customer:{run['customer']}", reason="request #4").json()["request_id"]
    later_id = erase(server, subject=f"customer:{later['customer']}", reason="request #5").json()["request_id"]
    [entry] = [e for e in erasure_entries(server) if e["subject"] == f"erasure:{request_id}"]
    assert run_cli(server, "verify", "--store").returncode == 0

    server.stop()
    (vt, vs), (ot, os_), (ft, fs), (lt, ls) = victim["llm"], victim["other"], forged_too["llm"], later["root"]
    erasure_row = ("INSERT INTO DB.erasures SELECT '{rid}', now64(3), 'mallory', 'values', 'cover-up', TraceId, SpanId, "
                   "['span:gen_ai.input.messages'], ContentHash, '', {seq} FROM DB.evidence_leaves "
                   "WHERE Kind = 'span' AND SpanId = '{span}'")
    subprocess.run([sys.executable, "-c", TAMPER, str(server.data / "data"),
                    # a non-erased span's content changed, no erasure row at all
                    f"ALTER TABLE DB.otel_traces UPDATE SpanAttributes = map('note', 'changed') WHERE SpanId = '{os_}'",
                    # content changed and an erasure row forged for it, naming no audit entry
                    f"ALTER TABLE DB.otel_traces UPDATE SpanAttributes = map('x', '[erased: er_fake]') "
                    f"WHERE SpanId = '{vs}'",
                    erasure_row.format(rid="er_fake", seq=999_999, span=vs),
                    # a row forged into the real request (its audit entry exists, but its digest no longer matches)
                    f"ALTER TABLE DB.otel_traces UPDATE SpanAttributes = map('x', 'y') WHERE SpanId = '{fs}'",
                    erasure_row.format(rid=request_id, seq=entry["seq"], span=fs),
                    # an erased span changed again after its erasure
                    f"ALTER TABLE DB.otel_traces UPDATE SpanAttributes = mapUpdate(SpanAttributes, map('note', 'z')) "
                    f"WHERE SpanId = '{ls}'"],
                   check=True, timeout=300)
    server.start()
    broken = run_cli(server, "verify", "--store")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    problems = {line.split(" (leaf ")[0].removeprefix("  - span "): line.partition("): ")[2]
                for line in broken.stdout.splitlines() if line.startswith("  - span ")}
    assert problems[f"{ot}:{os_}"].startswith("changed content (") and "no erasure accounts for it" in problems[
        f"{ot}:{os_}"]
    assert problems[f"{vt}:{vs}"] == ("changed content; an erasure row names it, but it is not trusted (request "
                                      "er_fake: no erasure.apply audit entry 999999 records it)")
    assert problems[f"{ft}:{fs}"] == (f"changed content; an erasure row names it, but it is not trusted (request "
                                      f"{request_id}: audit entry {entry['seq']} records 2 spans, the store holds 3 rows)")
    assert problems[f"{lt}:{ls}"].startswith(f"changed content since its erasure by request {later_id}")
    # the forged row spoils the whole request it was put in: its genuine spans are no longer accounted for
    assert "not trusted" in problems[f"{run['root'][0]}:{run['root'][1]}"]
    assert f"erased: {later['llm'][0]}:{later['llm'][1]}: content erased on" in broken.stdout  # the untouched one
