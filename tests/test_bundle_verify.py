"""Verifying evidence bundles offline (issue 11, deliverable 3): any changed byte of any file, a changed span
with the manifest re-hashed, a removed line, a swapped checkpoint, another key; erased content accounted
for by a proven erasure entry and not otherwise; and ``flightrec verify`` in a subprocess with no server,
no store, no network. Bundles come from a real ``flightrec serve`` (tests/bundle_world.py) or, for
erasures, from the builder over an embedded store with the server's parts (sequencer, key, the erasure
service)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flightrec.collector.rows import RowBuilder
from flightrec.evidence import bundle, erasure, keys
from flightrec.evidence import leaves as canon
from flightrec.evidence.bundle_models import ExportScope
from flightrec.evidence.bundle_verify import signature_file, verify_bundle
from flightrec.evidence.erasure import ErasureOrder, ErasureOutcome
from flightrec.evidence.sequencer import Sequencer, SequencerConfig
from flightrec.store import Store
from flightrec.store.erasures import ErasureRecord, Needles
from tests import bundle_world as w
from tests.conftest import ServerProcess
from tests.otlp_helpers import make_request, make_span

OFFLINE_GUARD = """
import atexit, runpy, socket, sys
def refuse(*args, **kwargs):
    raise OSError("the offline verifier tried to use the network")
socket.socket.connect = socket.socket.connect_ex = socket.socket.bind = refuse
socket.create_connection = socket.getaddrinfo = refuse
def report():  # pandas and pyarrow.dataset: pq.read_table, whose threads outlive the read (a SIGABRT at exit)
    heavy = sorted(name for name in ("chdb", "clickhouse_connect", "httpx", "fastapi", "uvicorn", "grpc",
                   "flightrec.store.engine", "flightrec.store.repository", "flightrec.settings", "flightrec.cli",
                   "pandas", "pyarrow.dataset") if name in sys.modules)
    sys.stderr.write("LOADED:" + ",".join(heavy) + "\\n")
atexit.register(report)
sys.argv = ["flightrec", *sys.argv[1:]]
runpy.run_module("flightrec", run_name="__main__")
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, bytes]]:
    server = ServerProcess(tmp_path_factory.mktemp("verify") / "srv", env=w.SERVER_ENV).start()
    w.send_world(server)
    assert w.api(server, "POST", "/api/controls/agents/finance-agent/pause", json={"reason": "review"}).status_code == 200
    answer = w.export(server, agent="finance-agent")
    assert answer.status_code == 200, answer.text
    yield server, answer.content
    server.stop()


def tamper(data: bytes, changes: dict[str, bytes | None], rehash: bool = True) -> bytes:
    """The bundle with files replaced (None: removed); with ``rehash`` the manifest lists the new hashes
    (its signature is left as it was: only the server's key could renew it)."""
    files = w.members(data)
    for name, content in changes.items():
        if content is None:
            files.pop(name)
        else:
            files[name] = content
    if rehash:
        manifest = json.loads(files["manifest.json"])
        for entry in manifest["files"]:
            if entry["path"] in changes and changes[entry["path"]] is not None:
                entry["sha256"] = hashlib.sha256(changes[entry["path"]]).hexdigest()
                entry["bytes"] = len(changes[entry["path"]])
        files["manifest.json"] = json.dumps(manifest, indent=2).encode()
    return w.zipped(files)


def named(verdict, name: str) -> bool:
    return any(name in problem.file or name in problem.problem for problem in verdict.problems)


def refs(verdict, file: str) -> set[str]:
    return {problem.ref for problem in verdict.problems if problem.file == file and problem.ref}


def test_an_intact_bundle_verifies(served) -> None:
    _, data = served
    verdict = verify_bundle(data)
    assert verdict.ok, verdict.problems
    assert verdict.spans_checked == 12 and verdict.audit_checked == 1 and verdict.key_source == "bundle"
    assert any("only the bundle's own key was used" in note for note in verdict.notes)
    assert any(line.startswith("completeness:") for line in verdict.does_not_prove)


def test_every_changed_byte_of_every_file_is_detected_and_named(served) -> None:
    _, data = served
    files = w.members(data)
    assert len(files) == 17  # 13 files, 4 stories, manifest and signature
    for name, content in files.items():
        positions = sorted({0, len(content) // 2, len(content) - 1}) if content else []
        variants = [content[:i] + bytes([content[i] ^ 0x01]) + content[i + 1:] for i in positions] or [b"\n"]
        for changed in variants:
            verdict = verify_bundle(tamper(data, {name: changed}, rehash=False))
            assert not verdict.ok and verdict.readable and named(verdict, name), (name, verdict.problems)


def test_a_changed_attribute_with_the_manifest_rehashed_is_caught_by_its_proof(served) -> None:
    _, data = served
    lines = w.jsonl(w.members(data)["spans.jsonl"])
    lines[3]["attributes"]["n"] = "999"
    ref = f"{lines[3]['trace_id']}:{lines[3]['span_id']}"
    changed = b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines)
    verdict = verify_bundle(tamper(data, {"spans.jsonl": changed}))
    assert refs(verdict, "spans.jsonl") == {ref}
    [problem] = [p for p in verdict.problems if p.ref == ref and p.file == "spans.jsonl"]
    assert "does not hash to the leaf's content hash" in problem.problem
    assert named(verdict, "manifest.sig") and refs(verdict, "spans.parquet") == {ref}
    lines[3]["name"] = "renamed"  # the record: caught the same way
    changed = b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines)
    verdict = verify_bundle(tamper(data, {"spans.jsonl": changed}))
    assert any(p.ref == ref and "record" in p.problem for p in verdict.problems)


def test_a_removed_span_line_is_named(served) -> None:
    _, data = served
    text = w.members(data)["spans.jsonl"].splitlines(keepends=True)
    verdict = verify_bundle(tamper(data, {"spans.jsonl": b"".join(text[:5] + text[6:])}))
    assert not verdict.ok and named(verdict, "manifest.sig")
    assert any(p.file == "spans.parquet" and "12 rows, spans.jsonl has 11" in p.problem for p in verdict.problems)
    assert any(p.file == "manifest.json" and "counts 12 spans" in p.problem for p in verdict.problems)


def test_a_removed_or_added_file_is_named(served) -> None:
    _, data = served
    removed = verify_bundle(tamper(data, {"alerts.jsonl": None}, rehash=False))
    assert any(p.file == "alerts.jsonl" and "removed" in p.problem for p in removed.problems)
    added = verify_bundle(tamper(data, {"stories/extra.html": b"<p>not from the server</p>"}, rehash=False))
    assert any(p.file == "stories/extra.html" and "added" in p.problem for p in added.problems)


def test_a_swapped_checkpoint_fails_every_proof(served) -> None:
    server, data = served
    signed = w.api(server, "POST", "/api/evidence/checkpoints", json={})
    assert signed.status_code == 200, signed.text
    other = signed.json()["checkpoint"]["note"].encode()
    assert other != w.members(data)["checkpoint.note"]
    verdict = verify_bundle(tamper(data, {"checkpoint.note": other}))
    assert any(p.file == "checkpoint.note" and "is not the one the manifest names" in p.problem for p in verdict.problems)
    assert len(refs(verdict, "proofs.json")) == 13  # every span and the audit entry


def test_another_key_is_refused(served, tmp_path: Path) -> None:
    server, data = served
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    verdict = verify_bundle(data, trusted_pem=stranger)
    assert verdict.key_source == "trusted key"
    assert {"public-key.pem", "manifest.sig", "checkpoint.note"} <= {p.file for p in verdict.problems}
    published = w.api(server, "GET", "/api/evidence/key").json()
    assert verify_bundle(data, trusted_pem=published["pem"].encode()).ok
    assert verify_bundle(data, trusted_fingerprint=published["fingerprint"]).ok
    wrong = verify_bundle(data, trusted_fingerprint="ab" * 32)
    assert not wrong.ok and [p.file for p in wrong.problems] == ["public-key.pem"]
    # A forger re-signs the manifest with their own key and ships it: only the published key tells.
    forger = keys.load_or_create(tmp_path / "forger.pem")
    files = w.members(data)
    files["public-key.pem"] = forger.public().pem.encode()
    manifest = json.loads(files["manifest.json"])
    [entry] = [e for e in manifest["files"] if e["path"] == "public-key.pem"]
    entry["sha256"], entry["bytes"] = hashlib.sha256(files["public-key.pem"]).hexdigest(), len(files["public-key.pem"])
    files["manifest.json"] = json.dumps(manifest).encode()
    files["manifest.sig"] = signature_file(forger.public_raw, forger.sign(files["manifest.json"]))
    forged = verify_bundle(w.zipped(files))
    failed = {p.file for p in forged.problems}  # the manifest verifies; the checkpoint is still the server's
    assert "checkpoint.note" in failed and "manifest.sig" not in failed and "public-key.pem" not in failed
    assert named(verify_bundle(w.zipped(files), trusted_fingerprint=published["fingerprint"]), "public-key.pem")


def _clean_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLIGHTREC_")}
    return {**env, "HOME": str(home), "FLIGHTREC_API_URL": "http://127.0.0.1:9", "COLUMNS": "200"}


def offline(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", OFFLINE_GUARD, *args], capture_output=True, text=True, timeout=120,
                          env=_clean_env(home), cwd=home)


def test_verify_runs_offline_with_no_server_no_store_no_network(served, tmp_path: Path) -> None:
    server, data = served
    home = tmp_path / "colleague"
    home.mkdir()
    (home / "bundle.zip").write_bytes(data)
    published = w.api(server, "GET", "/api/evidence/key").json()
    (home / "server.pem").write_text(published["pem"])
    done = offline("verify", "bundle.zip", home=home)
    said = done.stdout.replace("\n", "")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "intact: bundle" in said and "12 spans, 1 audit entries" in said and "(bundle)" in said
    assert "only the bundle's own key was used" in said and "does not prove: completeness" in said
    assert "LOADED:\n" in done.stderr  # no engine, no store, no HTTP client, no settings, not the whole CLI
    assert not any(path.name != "bundle.zip" and path.name != "server.pem" for path in home.iterdir())
    trusted = offline("verify", "bundle.zip", "--fingerprint", published["fingerprint"], "--json", home=home)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr  # the stderr says how a process died
    assert json.loads(trusted.stdout)["key_source"] == "trusted fingerprint"
    assert offline("verify", "bundle.zip", "--key", "server.pem", home=home).returncode == 0
    (home / "broken.zip").write_bytes(tamper(data, {"audit.jsonl": w.members(data)["audit.jsonl"].replace(
        b'"review"', b'"nothing to see"')}))
    broken = offline("verify", "broken.zip", home=home)
    assert broken.returncode == 1 and "BROKEN" in broken.stdout
    assert "audit.jsonl audit:" in broken.stdout.replace("\n", "") and "does not match its hash" in broken.stdout
    (home / "notes.txt").write_text("not a bundle")
    assert offline("verify", "notes.txt", home=home).returncode == 2
    assert offline("verify", "missing.zip", home=home).returncode == 2
    assert offline("verify", "bundle.zip", "--key", "notes.txt", home=home).returncode == 2


# -- erased content, over an embedded store with the server's parts ---------------------------------


@pytest.fixture
def erased_world(store: Store, tmp_path: Path) -> tuple[Store, Sequencer, keys.SigningKey, list[tuple[str, str]]]:
    key = keys.load_or_create(tmp_path / "key.pem")
    spans = [make_span(f"step-{i}", {"gen_ai.agent.name": "finance-agent", "invoice.id": "INV-7",
                                     "note": f"call Jane Roe {i}"}) for i in range(3)]
    store.insert_batch(RowBuilder().request_rows(make_request(spans, {"service.name": "finance-agent"})),
                       dedup_token=uuid.uuid4().hex)
    sequencer = Sequencer(store, key, SequencerConfig(checkpoint_interval_s=0))
    sequencer.checkpoint()
    pairs = [(span.trace_id.hex(), span.span_id.hex()) for span in spans]
    return store, sequencer, key, pairs


def erase(store: Store, number: int) -> ErasureOutcome:
    """Erase 'Jane Roe <number>' through the erasure service (mutations, erasure rows, the audit entry)."""
    return erasure.erase(store, ErasureOrder(values=[f"Jane Roe {number}"], reason="GDPR Art. 17 request"), "carol")


def forge_erasure(store: Store, pair: tuple[str, str]) -> None:
    """Erase a span's content and record an erasure row, with no erasure.apply entry (what a store writer could do)."""
    request_id = "er_" + uuid.uuid4().hex[:8]
    prior = store.erasures.leaf_content_hashes(pairs=[pair])
    store.erasures.erase(span_pairs=[pair], log_pairs=[pair], needles=Needles(needles=["jane roe"]),
                         request_id=request_id)
    after = store.erasures.content_hashes(pairs=[pair])
    store.erasures.record([ErasureRecord(request_id=request_id, trace_id=pair[0], span_id=pair[1],
                                         erased_at=datetime.now(tz=timezone.utc), actor="mallory", subject="values",
                                         reason="forged", keys=["span:note"], prior_content_hash=prior[pair],
                                         content_hash=after[pair], audit_seq=999)])


def export(store: Store, sequencer: Sequencer, key: keys.SigningKey) -> bytes:
    return bundle.build(store, sequencer, key, ExportScope(object="invoice:INV-7"), exported_by="carol",
                        max_spans=1000, max_stories=10).data


def test_erased_content_is_reported_and_the_record_still_proven(erased_world) -> None:
    store, sequencer, key, pairs = erased_world
    done = erase(store, 0)
    request_id = done.request_id
    assert done.spans == 1
    data = export(store, sequencer, key)
    lines = {(line["trace_id"], line["span_id"]): line for line in w.jsonl(w.members(data)["spans.jsonl"])}
    assert lines[pairs[0]]["attributes"]["note"] == f"[erased: {request_id}]"
    verdict = verify_bundle(data)
    assert verdict.ok, verdict.problems
    assert verdict.erased == [f"{pairs[0][0]}:{pairs[0][1]}: content erased on {done.erased_at:%Y-%m-%d} (request "
                              f"{request_id}): the record is proven, the erased content is not"]
    assert len(w.jsonl(w.members(data)["erasures.jsonl"])) == 1


def test_an_erasure_without_its_audit_entry_is_a_failure(erased_world) -> None:
    store, sequencer, key, pairs = erased_world
    forge_erasure(store, pairs[1])
    verdict = verify_bundle(export(store, sequencer, key))
    assert not verdict.ok and not verdict.erased
    assert refs(verdict, "spans.jsonl") == {f"{pairs[1][0]}:{pairs[1][1]}"}


def test_an_erasure_that_does_not_account_for_the_content_is_a_failure(erased_world) -> None:
    store, sequencer, key, pairs = erased_world
    assert erase(store, 2).spans == 1
    data = export(store, sequencer, key)
    lines = w.jsonl(w.members(data)["spans.jsonl"])
    target = next(line for line in lines if (line["trace_id"], line["span_id"]) == pairs[2])
    target["attributes"]["note"] = "something else entirely"  # not what the erasure left
    changed = b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines)
    verdict = verify_bundle(tamper(data, {"spans.jsonl": changed}))
    assert f"{pairs[2][0]}:{pairs[2][1]}" in refs(verdict, "spans.jsonl") and not verdict.erased
    source = canon.SpanSource(**{field: target[field] for field in canon.SpanSource._fields})
    assert canon.span_hashes(source)[1] != json.loads(w.members(data)["proofs.json"])["spans"][
        f"{pairs[2][0]}:{pairs[2][1]}"]["content_hash"]


def test_the_api_verifies_an_upload_as_the_cli_does(served) -> None:
    server, data = served
    auditor = w.token_for(server, "auditor")
    answer = httpx.post(server.url + "/api/evidence/bundles/verify", content=data, timeout=120,
                        headers={"Authorization": f"Bearer {auditor}", "Content-Type": "application/zip"})
    assert answer.status_code == 200 and answer.json() == json.loads(verify_bundle(data).model_dump_json())


def test_a_span_without_its_proof_is_named(served) -> None:
    """What a span not sequenced at the checkpoint looks like (the manifest warns of it): no proof, a failure."""
    _, data = served
    proofs = json.loads(w.members(data)["proofs.json"])
    ref = next(iter(proofs["spans"]))
    del proofs["spans"][ref]
    verdict = verify_bundle(tamper(data, {"proofs.json": json.dumps(proofs).encode()}))
    assert any(p.file == "proofs.json" and p.ref == ref and "no inclusion proof" in p.problem for p in verdict.problems)
