"""Evidence bundles (issue 11, deliverable 2): export by object, object type + agent + window, agent; the
preview; every bad scope and upload; roles; the export audited. A real ``flightrec serve`` with spans sent
over OTLP (tests/bundle_world.py); bundles are checked with the offline verifier."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flightrec.evidence.bundle_verify import verify_bundle
from tests import bundle_world as w
from tests.conftest import ServerProcess

ACCEPTANCE = {"object_type": "invoice", "agent": "finance-agent", "since": w.SINCE, "until": w.UNTIL}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict]]:
    server = ServerProcess(tmp_path_factory.mktemp("bundles") / "srv", env=w.SERVER_ENV).start()
    sent = w.send_world(server)
    paused = w.api(server, "POST", "/api/controls/agents/finance-agent/pause", json={"reason": "audit of Q3 invoices"})
    assert paused.status_code == 200, paused.text
    assert w.api(server, "POST", "/api/controls/agents/finance-agent/resume", json={}).status_code == 200
    yield server, sent
    server.stop()


def keys(sent: dict, *names: str) -> set[tuple[str, str]]:
    return {pair for name in names for pair in sent[name]}


def span_keys(files: dict[str, bytes]) -> set[tuple[str, str]]:
    return {(line["trace_id"], line["span_id"]) for line in w.jsonl(files["spans.jsonl"])}


def test_invoices_touched_by_finance_agent_in_the_window_through_the_cli(world, tmp_path: Path) -> None:
    server, sent = world
    out = tmp_path / "q3.zip"
    done = w.cli("export", "--object-type", "invoice", "--agent", "finance-agent", "--since", w.SINCE, "--until",
                 w.UNTIL, "-o", str(out), "--api", server.url, env={"FLIGHTREC_API_TOKEN": w.ADMIN})
    said = done.stdout.replace("\n", "")
    assert done.returncode == 0, done.stdout + done.stderr
    files = w.members(out.read_bytes())
    manifest = json.loads(files["manifest.json"])
    assert f"bundle {manifest['bundle_id']}" in said and "6 spans, 2 traces, 2 objects" in said and str(out) in said
    assert span_keys(files) == keys(sent, "A", "B")  # not C (agent), D (window), E (type), F (agent)
    assert sorted(name for name in files if name.startswith("stories/")) == [
        "stories/invoice_INV-1001.html", "stories/invoice_INV-1002.html"]
    story = files["stories/invoice_INV-1001.html"].decode()
    trace, span = sent["A"][0]
    assert f"trace {trace} · span {span}" in story and manifest["bundle_id"] in story and "Generated " in story
    assert manifest["scope"] == {"object": None, "object_type": "invoice", "agent": "finance-agent",
                                 "since": f"{w.SINCE}T00:00:00Z", "until": f"{w.UNTIL}T00:00:00Z"}
    assert manifest["counts"]["spans"] == 6 and manifest["counts"]["traces"] == 2 and manifest["exported_by"] == "admin"
    ran = {query["name"]: query["parameters"] for query in manifest["queries"]}
    assert ran["scope_spans"]["agent"] == "finance-agent" and ran["scope_spans"]["otype"] == "invoice"
    assert set(ran["scope_plans"]["traces"]) == {sent["A"][0][0], sent["B"][0][0]}
    assert {entry["path"] for entry in manifest["files"]} == set(files) - {"manifest.json", "manifest.sig"}
    line = w.jsonl(files["spans.jsonl"])[0]
    assert line["derived_not_proven"]["agent"] == "finance-agent" and "attributes" in line and "resource" in line
    audit = w.jsonl(files["audit.jsonl"])
    assert [(entry["act"], entry["subject"]) for entry in audit] == [("pause", "agent:finance-agent"),
                                                                     ("resume", "agent:finance-agent")]
    controls = w.jsonl(files["controls.jsonl"])
    assert [line["kind"] for line in controls] == ["state", "change", "change"]
    assert controls[0]["state"] == "running" and controls[1]["details"]["reason"] == "audit of Q3 invoices"
    assert set(json.loads(files["proofs.json"])["audit"]) == {str(entry["seq"]) for entry in audit}
    checked = w.cli("verify", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "intact: bundle" in checked.stdout.replace("\n", "") and "6 spans, 2 audit entries" in checked.stdout


def test_export_by_object_holds_every_span_of_its_traces(world) -> None:
    server, sent = world
    answer = w.export(server, object="Invoice:INV-1001")
    assert answer.status_code == 200, answer.text
    bundle_id = answer.headers["x-flightrec-bundle-id"]
    assert answer.headers["content-disposition"] == f'attachment; filename="flightrec-evidence-{bundle_id}.zip"'
    files = w.members(answer.content)
    assert span_keys(files) == keys(sent, "A")  # the root names the invoice; its children are in too
    assert json.loads(files["manifest.json"])["scope"]["object"] == "invoice:INV-1001"
    assert verify_bundle(answer.content).ok


def test_export_by_agent_holds_its_traces_in_every_window(world) -> None:
    server, sent = world
    files = w.members(w.export(server, agent="finance-agent").content)
    assert span_keys(files) == keys(sent, "A", "B", "D", "E")
    assert {name for name in files if name.startswith("stories/")} == {
        "stories/invoice_INV-1001.html", "stories/invoice_INV-1002.html", "stories/invoice_INV-1004.html",
        "stories/ticket_TCK-1.html"}
    window = w.members(w.export(server, since=w.SINCE, until=w.UNTIL, object_type="ticket").content)
    assert span_keys(window) == keys(sent, "E")


def test_the_preview_counts_what_the_export_holds(world) -> None:
    server, _ = world
    preview = w.api(server, "POST", "/api/evidence/exports/preview", json=ACCEPTANCE)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["objects"] == ["invoice:INV-1001", "invoice:INV-1002"] and body["warnings"] == []
    assert body["counts"] == {"spans": 6, "traces": 2, "objects": 2, "audit_entries": 2, "alerts": 0, "plans": 0,
                              "executions": 0, "controls": 3, "erasures": 0}
    manifest = json.loads(w.members(w.export(server, **ACCEPTANCE).content)["manifest.json"])
    assert manifest["counts"] == body["counts"]
    assert [q["name"] for q in body["queries"]] == [q["name"] for q in manifest["queries"]][:-1]


def test_exporting_is_audited_with_the_manifest_hash(world) -> None:
    server, _ = world
    officer = w.token_for(server, "compliance")
    answer = w.export(server, officer, object="invoice:INV-1002")
    assert answer.status_code == 200, answer.text
    manifest = w.members(answer.content)["manifest.json"]
    bundle_id = answer.headers["x-flightrec-bundle-id"]
    entries = w.api(server, "GET", "/api/audit", params={"act": "evidence.export", "limit": 1000}).json()["items"]
    [entry] = [e for e in entries if e["subject"] == f"bundle:{bundle_id}"]
    assert entry["actor"].startswith("compliance-") and entry["details"]["bundle_id"] == bundle_id
    assert entry["details"]["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert json.loads(entry["details"]["scope"]) == {"object": "invoice:INV-1002", "object_type": "invoice"}
    assert json.loads(entry["details"]["counts"])["spans"] == 3


@pytest.mark.parametrize(("scope", "status", "message"), [
    ({}, 422, "name a scope"),
    ({"object": "INV-1001"}, 422, "is not of the form TYPE:ID"),
    ({"object": "invoice:"}, 422, "is not of the form TYPE:ID"),
    ({"object": "invoice:INV-1001", "object_type": "ticket"}, 422, "is not of object_type"),
    ({"since": w.UNTIL, "until": w.SINCE}, 422, "must be before until"),
    ({"since": w.SINCE, "until": w.SINCE}, 422, "must be before until"),
    ({"since": "last tuesday"}, 422, "is not an ISO 8601 date or time"),
    ({"agent": "bulk-agent"}, 413, "the scope holds 60 spans, more than FLIGHTREC_EXPORT_MAX_SPANS (50)"),
    ({"object": "invoice:INV-1010"}, 404, "did you mean invoice:INV-1001"),
    ({"object_type": "invoce"}, 404, "no stored span links to an object of type 'invoce' (types linked: invoice"),
    ({"agent": "finance-agnt"}, 404, "did you mean finance-agent"),
])
def test_a_bad_scope_is_refused_with_the_reason(world, scope: dict, status: int, message: str) -> None:
    server, _ = world
    before = w.api(server, "GET", "/api/audit", params={"act": "evidence.export", "limit": 1000}).json()["count"]
    for path in ("/api/evidence/exports/preview", "/api/evidence/exports"):
        answer = w.api(server, "POST", path, json=scope)
        assert answer.status_code == status and message in answer.text, (path, answer.status_code, answer.text)
    assert w.api(server, "GET", "/api/audit", params={"act": "evidence.export", "limit": 1000}).json()["count"] == before


@pytest.mark.parametrize(("args", "message"), [
    ([], "name a scope"),
    (["--object", "INV-1001"], "is not of the form TYPE:ID"),
    (["--since", "2026-13-45"], "is not an ISO 8601 date or time"),
    (["--agent", "finance-agnt"], "did you mean finance-agent"),
])
def test_the_cli_refuses_a_bad_scope_and_writes_nothing(world, tmp_path: Path, args: list[str], message: str) -> None:
    server, _ = world
    done = w.cli("export", *args, "-o", str(tmp_path / "b.zip"), "--api", server.url,
                 env={"FLIGHTREC_API_TOKEN": w.ADMIN})
    assert done.returncode == 1 and message in done.stdout.replace("\n", ""), done.stdout + done.stderr
    assert not list(tmp_path.iterdir())


def test_the_cli_refuses_an_output_it_cannot_write(world, tmp_path: Path) -> None:
    server, _ = world
    for output, message in ((tmp_path / "no" / "b.zip", "does not exist"), (tmp_path, "is a folder")):
        done = w.cli("export", "--object", "invoice:INV-1001", "-o", str(output), "--api", server.url,
                     env={"FLIGHTREC_API_TOKEN": w.ADMIN})
        assert done.returncode == 1 and message in done.stdout.replace("\n", ""), done.stdout + done.stderr
    assert not list(tmp_path.iterdir())


def test_bad_uploads_to_verify_are_400_or_413_never_500(world) -> None:
    server, _ = world
    auditor = w.token_for(server, "auditor")
    post = lambda body: w.api(server, "POST", "/api/evidence/bundles/verify", auditor, content=body,  # noqa: E731
                              headers={"Content-Type": "application/zip"})
    assert post(b"").status_code == 400
    not_zip = post(b"PK\x03\x04 this is no zip at all")
    assert not_zip.status_code == 400 and "not a zip file" in not_zip.json()["detail"]
    no_manifest = post(w.zipped({"spans.jsonl": b""}))
    assert no_manifest.status_code == 400 and "no manifest.json" in no_manifest.json()["detail"]
    large = post(b"x" * (2 * 1024 * 1024 + 1))
    assert large.status_code == 413 and "FLIGHTREC_BUNDLE_VERIFY_MAX_BYTES" in large.json()["detail"]
    bundle = w.export(server, object="invoice:INV-1001").content
    intact = post(bundle)
    assert intact.status_code == 200 and intact.json()["ok"] and intact.json()["spans_checked"] == 3
    files = w.members(bundle)
    files["spans.jsonl"] = files["spans.jsonl"].replace(b"INV-1001", b"INV-1999", 1)
    broken = post(w.zipped(files)).json()
    assert not broken["ok"] and any(p["file"] == "spans.jsonl" and p["ref"] for p in broken["problems"])


@pytest.mark.parametrize("role", ["sre", "viewer", "auditor", "approver"])
def test_only_compliance_and_admin_export(world, role: str, tmp_path: Path) -> None:
    server, _ = world
    token = w.token_for(server, role)
    for path in ("/api/evidence/exports", "/api/evidence/exports/preview"):
        refused = w.api(server, "POST", path, token, json={"object": "invoice:INV-1001"})
        assert refused.status_code == 403 and "compliance" in refused.json()["detail"]
    done = w.cli("export", "--object", "invoice:INV-1001", "-o", str(tmp_path / "refused.zip"), "--api", server.url,
                 env={"FLIGHTREC_API_TOKEN": token})
    assert done.returncode == 1 and "may not POST /api/evidence/exports" in done.stdout.replace("\n", "")
    assert not list(tmp_path.iterdir())
    if role != "auditor":
        upload = w.api(server, "POST", "/api/evidence/bundles/verify", token, content=b"x")
        assert upload.status_code == 403
