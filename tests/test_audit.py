"""The audit log detects any removed or rewritten entry (issue 10): every tampering an attacker with
write access to the store could try, against the chain, the signed heads in the store, the server's
head file and a head an auditor kept; two writers racing on one ClickHouse; the old hash format;
the key file; the routes and the CLI with good and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from flightrec.evidence import keys
from flightrec.evidence.audit_heads import HeadFileError, HeadKeeper, read_head_file, sign_head
from flightrec.evidence.audit_verify import verify_log
from flightrec.store import Store
from flightrec.store.audit import (
    FORMAT_JSON_LIST, FORMAT_RFC8785, GENESIS, AuditEntry, canonical_entry, entry_hash, verify_chain,
)
from flightrec.store.audit_log import AuditRepository
from tests.conftest import ServerProcess, free_port

COLUMNS = ["Seq", "Time", "Actor", "Act", "Subject", "Details", "PrevHash", "Hash", "Format"]


@pytest.fixture
def keeper(store: Store, tmp_path: Path) -> HeadKeeper:
    """The store's audit log with heads signed as `flightrec serve` signs them (key and head file in tmp_path)."""
    made = HeadKeeper(store.audit, keys.load_or_create(tmp_path / "keys" / "audit-ed25519.pem"),
                      tmp_path / "audit-head.json")
    store.audit.after_append = made.record
    return made


def append(store: Store, count: int, actor: str = "ana") -> list[AuditEntry]:
    return [store.audit.append(actor=actor, act="controls.pause", subject=f"agent:a{i}", details={"reason": f"r{i}"})
            for i in range(count)]


def sql(store: Store, statement: str) -> None:
    """Tampering as someone with write access to the store would (tests only: the product's SQL is in store/)."""
    store.engine.command("tamper", statement.replace("DB.", f"{store.db}."), settings={"mutations_sync": 2})


def insert_rows(store: Store, entries: list[AuditEntry]) -> None:
    store.engine.insert("tamper_insert", f"{store.db}.audit_log",
                        [[e.seq for e in entries], [e.time for e in entries], [e.actor for e in entries],
                         [e.act for e in entries], [e.subject for e in entries],
                         [json.dumps(e.details, sort_keys=True) for e in entries], [e.prev_hash for e in entries],
                         [e.hash for e in entries], [e.format for e in entries]], COLUMNS)


def rechain(entries: list[AuditEntry]) -> list[AuditEntry]:
    """The entries with every hash recomputed from the first one on: a rewrite the chain alone cannot see."""
    out, prev = [], GENESIS
    for entry in entries:
        digest = entry_hash(entry.seq, entry.time, entry.actor, entry.act, entry.subject, entry.details, prev,
                            entry.format)
        out.append(entry.model_copy(update={"prev_hash": prev, "hash": digest}))
        prev = digest
    return out


# -- the hash: RFC 8785 canonical JSON ---------------------------------------------------------------


def test_the_entry_hash_is_sha256_of_rfc8785_json() -> None:
    moment = datetime(2026, 3, 1, 14, 30, tzinfo=timezone.utc)
    expected = (b'{"act":"rollback.approve","actor":"J\xc3\xb6rg","details":{"b":"2","a":"\xe2\x82\xac"},'
                b'"prev":"' + GENESIS.encode() + b'","seq":7,"subject":"plan:p1","time":"2026-03-01T14:30:00.000000Z"}')
    expected = expected.replace(b'{"b":"2","a":"\xe2\x82\xac"}', b'{"a":"\xe2\x82\xac","b":"2"}')  # keys sorted
    assert canonical_entry(7, moment, "Jörg", "rollback.approve", "plan:p1", {"b": "2", "a": "€"}, GENESIS) == expected
    assert entry_hash(7, moment, "Jörg", "rollback.approve", "plan:p1", {"b": "2", "a": "€"}, GENESIS) == (
        hashlib.sha256(expected).hexdigest())
    with pytest.raises(ValueError, match="unknown audit entry format 9"):
        entry_hash(7, moment, "a", "b", "c", {}, GENESIS, format=9)


def test_old_format_entries_still_verify_and_new_ones_follow_them(keeper: HeadKeeper, store: Store) -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
    old = rechain([AuditEntry(seq=seq, time=moment, actor="ana", act="controls.pause", subject="agent:x",
                              details={"reason": "old"}, prev_hash="", hash="", format=FORMAT_JSON_LIST)
                   for seq in (1, 2)])
    insert_rows(store, old)
    new = append(store, 2)
    assert [e.format for e in store.audit.entries()] == [FORMAT_JSON_LIST] * 2 + [FORMAT_RFC8785] * 2
    assert new[0].prev_hash == old[-1].hash
    result = keeper.verify()
    assert result.ok, result.problems
    assert result.signed_through == 4 and result.unsigned_entries == 0

    # A rewrite may not fall back to the older format for a newer entry.
    entries = store.audit.entries()
    entries[3] = entries[3].model_copy(update={"format": FORMAT_JSON_LIST})
    assert any("hash format 1 after an entry in format 2" in p for p in verify_chain(rechain(entries)))


# -- one writer at a time: a compare-and-swap in ClickHouse ------------------------------------------


def test_two_writers_racing_for_one_number_keep_one_chain(store: Store) -> None:
    """Writer A read the head before writer B appended: its insert for the same number (same token, other
    data) is dropped by the engine, it reads the number back, sees B's hash and appends at the next one."""
    first, second = AuditRepository(store.engine, store.db), AuditRepository(store.engine, store.db)
    first.append(actor="ana", act="x", subject="s0", details={})
    stale = first._head()
    second.append(actor="ben", act="x", subject="s-ben", details={})
    real_head, calls = first._head, []
    first._head = lambda: calls.append(1) or (stale if len(calls) == 1 else real_head())  # type: ignore[method-assign]
    entry = first.append(actor="ana", act="x", subject="s-ana", details={})
    assert len(calls) == 2, "the first try lost the race and was retried"
    assert entry.seq == 3
    stored = store.audit.entries()
    assert [(e.seq, e.subject) for e in stored] == [(1, "s0"), (2, "s-ben"), (3, "s-ana")]
    assert verify_chain(stored) == []


def test_concurrent_writers_in_two_processes_yield_one_unforked_chain(store: Store) -> None:
    """Two repositories, each with its own lock (as two server processes have), appending at once."""
    writers = [AuditRepository(store.engine, store.db) for _ in range(2)]
    per_writer, errors = 15, []
    start = threading.Barrier(len(writers))

    def run(index: int) -> None:
        start.wait()
        try:
            for i in range(per_writer):
                writers[index].append(actor=f"w{index}", act="x", subject=f"w{index}-{i}", details={"i": str(i)})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    stored = store.audit.entries()
    assert [e.seq for e in stored] == list(range(1, 2 * per_writer + 1)), "one entry per number, none lost"
    assert sorted(e.subject for e in stored) == sorted(f"w{w}-{i}" for w in range(2) for i in range(per_writer))
    assert verify_chain(stored) == []


def test_acts_are_still_recorded_after_the_newest_entry_was_removed(store: Store, caplog) -> None:
    """A removed tail must not stop a pause from being recorded; the removal stays visible (signed heads)."""
    append(store, 3)
    sql(store, "ALTER TABLE DB.audit_log DELETE WHERE Seq = 3")
    with caplog.at_level("ERROR"):
        append(store, 1)
    assert "entries were removed from the end of the audit log" in caplog.text
    stored = store.audit.entries()
    assert [e.seq for e in stored] == [1, 2, 3] and verify_chain(stored) == []
    sql(store, "ALTER TABLE DB.audit_log DELETE WHERE Seq = 3")  # removed again: the next suffix takes it
    append(store, 1)
    assert [e.seq for e in store.audit.entries()] == [1, 2, 3]


# -- tampering, each caught -------------------------------------------------------------------------


def test_an_intact_log_verifies_and_says_what_it_proves(keeper: HeadKeeper, store: Store) -> None:
    assert keeper.newest_head() is None and keeper.verify().ok, "an empty log: nothing signed yet, nothing wrong"
    append(store, 4)
    result = keeper.verify()
    assert result.ok and result.problems == [] and result.entries == 4 and result.signed_through == 4
    assert len(store.audit.heads()) == 4
    assert read_head_file(keeper.path).seq == 4
    assert stat.S_IMODE(keeper.key.path.stat().st_mode) == 0o600


def test_deleting_the_newest_entry_and_its_head_is_reported_as_truncation(keeper: HeadKeeper, store: Store) -> None:
    append(store, 4)
    sql(store, "ALTER TABLE DB.audit_log DELETE WHERE Seq = 4")
    sql(store, "ALTER TABLE DB.audit_heads DELETE WHERE Seq = 4")
    assert verify_chain(store.audit.entries()) == [], "the chain alone cannot see it"
    result = keeper.verify()
    assert not result.ok
    assert any("head file" in p and "log ends at entry 3, so entry 4 was removed (truncated)" in p
               for p in result.problems), result.problems
    assert any("signed heads were removed from the store" in p for p in result.problems), result.problems


def test_a_rewrite_with_every_later_hash_recomputed_is_reported_against_the_signed_heads(
        keeper: HeadKeeper, store: Store) -> None:
    append(store, 5)
    entries = store.audit.entries()
    entries[1] = entries[1].model_copy(update={"details": {"reason": "nothing to see"}})
    rewritten = rechain(entries)
    assert verify_chain(rewritten) == [], "a consistent chain: only a signature can tell"
    sql(store, "TRUNCATE TABLE DB.audit_log")
    insert_rows(store, rewritten)
    result = keeper.verify()
    assert not result.ok
    assert any("stored head for entry 2" in p and "the log was rewritten at or before entry 2" in p
               for p in result.problems), result.problems

    # With every stored head removed too, the head file still catches it.
    sql(store, "TRUNCATE TABLE DB.audit_heads")
    again = keeper.verify()
    assert any("head file" in p and "entry 5 no longer has the signed hash" in p for p in again.problems), again.problems


def test_altered_details_are_reported(keeper: HeadKeeper, store: Store) -> None:
    append(store, 3)
    sql(store, "ALTER TABLE DB.audit_log UPDATE Details = '{\"reason\":\"edited\"}' WHERE Seq = 2")
    result = keeper.verify()
    assert "entry 2: content does not match its hash (altered)" in result.problems


def test_forged_heads_are_reported(keeper: HeadKeeper, store: Store, tmp_path: Path) -> None:
    [*_, last] = append(store, 2)
    other = keys.load_or_create(tmp_path / "other.pem")
    forged = sign_head(keeper.key, last.seq, last.hash).model_copy(update={"hash": "f" * 64})
    store.audit.add_head(forged)  # the signature is over another hash
    store.audit.add_head(sign_head(other, last.seq, last.hash))  # a valid signature by a key not this log's
    problems = keeper.verify().problems
    assert any("the signature does not verify (a forged or altered head)" in p for p in problems), problems
    assert any(f"signed by key {other.fingerprint[:16]}" in p and "(not trusted)" in p for p in problems), problems
    garbage = forged.model_copy(update={"hash": last.hash, "signature": "not base64!"})
    assert not verify_log(store.audit.entries(), [garbage], keeper.key.public_raw).ok


def test_a_head_an_auditor_kept_catches_truncation_of_entries_heads_and_the_head_file(
        keeper: HeadKeeper, store: Store) -> None:
    append(store, 3)
    saved = keeper.newest_head()
    assert saved is not None and saved.seq == 3
    append(store, 2)
    sql(store, "ALTER TABLE DB.audit_log DELETE WHERE Seq >= 3")
    sql(store, "ALTER TABLE DB.audit_heads DELETE WHERE Seq >= 3")
    keeper.path.unlink()  # the server's head file went too
    alone = keeper.verify()
    assert alone.ok, "with nothing kept outside the store, truncation does not show (the docs say so)"
    assert any("no head kept outside the store" in note for note in alone.notes)
    result = keeper.verify([("the auditor's head", saved)])
    assert any("the auditor's head for entry 3" in p and "(truncated)" in p for p in result.problems), result.problems


def test_a_broken_head_file_is_a_clear_problem(keeper: HeadKeeper, store: Store) -> None:
    append(store, 1)
    keeper.path.write_text("{not json")
    result = keeper.verify()
    assert not result.ok and result.problems[0].startswith("the server's head file:")
    assert "is not JSON" in result.problems[0]
    keeper.path.write_text(json.dumps({"seq": "x"}))
    with pytest.raises(HeadFileError, match="is not a signed audit head"):
        read_head_file(keeper.path)
    append(store, 1)  # the next append writes a good head file again
    assert keeper.verify().ok


# -- the key file ------------------------------------------------------------------------------------


def test_the_key_is_made_once_private_and_refused_when_others_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-ed25519.pem"
    made = keys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.load_or_create(path).fingerprint == made.fingerprint
    info = made.public()
    assert info.pem.startswith("-----BEGIN PUBLIC KEY-----") and info.fingerprint == made.fingerprint
    os.chmod(path, 0o644)
    with pytest.raises(keys.KeyFileError, match=f"chmod 600 {path}"):
        keys.load_or_create(path)
    os.chmod(path, 0o600)
    path.write_text("garbage")
    with pytest.raises(keys.KeyFileError, match="not an unencrypted PEM private key"):
        keys.load_or_create(path)


def test_serve_refuses_a_key_others_may_read_saying_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-ed25519.pem"
    keys.load_or_create(path)
    os.chmod(path, 0o644)
    done = subprocess.run([sys.executable, "-m", "flightrec", "serve", "--data", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"chmod 600 {path}" in " ".join(done.stdout.split())


# -- the server: routes and the CLI ------------------------------------------------------------------

TOKEN = "audit-admin-token-for-tests-0123"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = ServerProcess(tmp_path_factory.mktemp("audit") / "srv", env={"FLIGHTREC_API_TOKEN": TOKEN,
                                                                         "FLIGHTREC_DETECT_INTERVAL_S": "0"})
    server.start()
    try:
        with server.client() as client:
            for agent in ("refund-agent", "ops-agent", "triage-agent"):
                client.post(f"/api/controls/agents/{agent}/pause", json={"actor": "ana", "reason": "check", "force": True}
                            ).raise_for_status()
        yield server
    finally:
        server.stop()


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flightrec", *args, "--api", server.url], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200", "FLIGHTREC_API_TOKEN": TOKEN})


def test_the_routes_answer_the_head_the_key_and_the_verdict(audited: ServerProcess) -> None:
    with audited.client() as client:
        head = client.get("/api/audit/head").raise_for_status().json()
        key = client.get("/api/evidence/key").raise_for_status().json()
        verdict = client.get("/api/audit/verify").raise_for_status().json()
        newest = client.get("/api/audit", params={"order": "desc", "limit": 1}).json()["items"]
        by_actor = client.get("/api/audit", params={"actor": "admin", "act": newest[0]["act"]}).json()["items"]
        nobody = client.get("/api/audit", params={"actor": "ana"}).json()["items"]  # signed in: the principal acts
        against = client.post("/api/audit/verify", json={"head": head["head"]}).raise_for_status().json()
    assert head["key"] == key and key["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert head["head"]["seq"] == newest[0]["seq"] and head["head"]["hash"] == newest[0]["hash"]
    assert head["head"]["key_id"] == key["fingerprint"]
    assert verdict["ok"] and verdict["signed_through"] == head["head"]["seq"], verdict
    assert against["ok"] and {e["subject"] for e in by_actor} >= {"agent:refund-agent", "agent:ops-agent"}
    assert nobody == []
    file_head = json.loads((audited.data / "audit-head.json").read_text())
    assert file_head["seq"] == head["head"]["seq"]
    assert stat.S_IMODE((audited.data / "keys" / "audit-ed25519.pem").stat().st_mode) == 0o600


@pytest.mark.parametrize(("method", "path", "kwargs", "says"), [
    ("GET", "/api/audit", {"params": {"limit": 0}}, "limit"),
    ("GET", "/api/audit", {"params": {"order": "sideways"}}, "order"),
    ("GET", "/api/audit", {"params": {"after": "yesterday-ish"}}, "after"),
    ("GET", "/api/audit", {"params": {"since": -1}}, "since"),
    ("POST", "/api/audit/verify", {"json": {}}, "head"),
    ("POST", "/api/audit/verify", {"json": {"head": {"seq": "one", "hash": "h", "time": "t", "key_id": "k",
                                                     "signature": "s"}}}, "seq"),
    ("POST", "/api/audit/verify", {"content": b"not json", "headers": {"content-type": "application/json"}}, "JSON"),
])
def test_bad_input_to_the_routes_is_refused_naming_the_field(audited: ServerProcess, method: str, path: str,
                                                             kwargs: dict, says: str) -> None:
    with audited.client() as client:
        answer = client.request(method, path, **kwargs)
    assert answer.status_code == 422, answer.text
    assert says in answer.text


def test_a_forged_head_given_to_verify_is_a_problem_not_an_error(audited: ServerProcess) -> None:
    with audited.client() as client:
        head = client.get("/api/audit/head").json()["head"]
        forged = {**head, "signature": head["signature"][::-1]}
        verdict = client.post("/api/audit/verify", json={"head": forged}).raise_for_status().json()
        unsigned = client.get("/api/audit/verify", headers={"Authorization": ""})
    assert not verdict["ok"]
    assert any("the given head" in p and "does not verify" in p for p in verdict["problems"])
    assert unsigned.status_code == 401


def test_the_cli_lists_entries_and_verifies(audited: ServerProcess, tmp_path: Path) -> None:
    listed = cli(audited, "audit")
    assert listed.returncode == 0, listed.stderr + listed.stdout
    assert "pause" in listed.stdout and "agent:refund-agent" in listed.stdout, listed.stdout
    page = json.loads(cli(audited, "audit", "--json", "--since", "1", "--limit", "1").stdout)
    assert [item["seq"] for item in page["items"]] == [2]
    future = json.loads(cli(audited, "audit", "--json", "--since", "2099-01-01T00:00").stdout)
    assert future["items"] == []
    good = cli(audited, "audit", "verify")
    assert good.returncode == 0 and "intact" in good.stdout, good.stdout + good.stderr
    saved = tmp_path / "head.json"
    saved.write_text(httpx.get(f"{audited.url}/api/audit/head", headers=audited.api_headers()).text)
    kept = cli(audited, "audit", "verify", "--head", str(saved))
    assert kept.returncode == 0, kept.stdout + kept.stderr


@pytest.mark.parametrize(("args", "file_text", "says"), [
    (["audit", "--since", "last tuesday"], None, "neither a sequence number nor an ISO 8601 time"),
    (["audit", "--limit", "0"], None, "--limit"),
    (["audit", "verify", "--head", "{missing}"], None, "no such file"),
    (["audit", "verify", "--head", "{file}"], "{oops", "is not JSON"),
    (["audit", "verify", "--head", "{file}"], '{"head": null}', "holds no signed head"),
    (["audit", "verify", "--head", "{file}"], '{"seq": 1, "hash": "h"}', "it lacks time, key_id, signature"),
    (["audit", "verify", "--head", "{file}"], '{"seq": "1", "hash": "h", "time": "t", "key_id": "k", "signature": 1}',
     "seq, signature have the wrong type"),
])
def test_bad_input_to_the_commands_says_how_to_fix_it(audited: ServerProcess, tmp_path: Path, args: list[str],
                                                      file_text: str | None, says: str) -> None:
    path = tmp_path / "head.json"
    if file_text is not None:
        path.write_text(file_text)
    done = cli(audited, *[arg.replace("{missing}", str(tmp_path / "nope.json")).replace("{file}", str(path))
                          for arg in args])
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in " ".join((done.stdout + done.stderr).split()), done.stdout + done.stderr


def audit_page(monkeypatch: pytest.MonkeyPatch, api_url: str, **state: str) -> Any:
    """The dashboards opened on the Audit log page (AppTest), reading ``api_url`` with the admin token."""
    from streamlit.testing.v1 import AppTest

    from flightrec.dashboards.launch import APP
    from flightrec.dashboards.ui import AUDIT_PAGE

    monkeypatch.setenv("FLIGHTREC_API_URL", api_url)
    monkeypatch.setenv("FLIGHTREC_API_TOKEN", TOKEN)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(AUDIT_PAGE)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def shown(elements: Any) -> list[str]:
    from flightrec.dashboards.safe_text import plain_text

    return [plain_text(element.value) for element in elements]


def test_the_audit_page_shows_entries_newest_first_the_chain_status_and_the_head(
        monkeypatch: pytest.MonkeyPatch, audited: ServerProcess) -> None:
    with audited.client() as client:
        head = client.get("/api/audit/head").json()
        entries = client.get("/api/audit").json()["items"]
    at = audit_page(monkeypatch, audited.url)
    assert shown(at.title) == ["Audit log"]
    assert any("The chain is intact" in text and f"signed through entry {head['head']['seq']}" in text
               for text in shown(at.success)), shown(at.success)
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Signed head"] == f"entry {head['head']['seq']}"
    assert metrics["Key fingerprint"] == head["key"]["fingerprint"][:16]
    [table] = at.table
    seqs = [int(value) for value in table.value["#"]]
    assert seqs == sorted((entry["seq"] for entry in entries), reverse=True), "newest first"
    assert [button.label for button in at.get("download_button")] == ["Download head"]

    act = entries[0]["act"]
    filtered = audit_page(monkeypatch, audited.url, audit_actor="admin", audit_act=act)
    assert set(filtered.table[0].value["Act"]) == {act}
    nobody = audit_page(monkeypatch, audited.url, audit_act=act, audit_actor="Anyone")
    assert len(nobody.table[0].value["#"]) == sum(1 for entry in entries if entry["act"] == act)


def test_the_audit_page_explains_an_api_that_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    at = audit_page(monkeypatch, down)
    assert any(f"Cannot reach the Flight Recorder API at {down}" in text for text in shown(at.error))


TAMPER = """
import sys
from flightrec.store import StoreConfig, open_store
store = open_store(StoreConfig(dsn="chdb://" + sys.argv[1]))
last = store.audit.entries(order="desc", limit=1)[0].seq
for table in ("audit_log", "audit_heads"):
    store.engine.command("tamper", f"ALTER TABLE {store.db}.{table} DELETE WHERE Seq = {last}",
                         settings={"mutations_sync": 2})
store.close()
"""


def test_the_cli_exits_1_naming_every_problem_when_the_newest_entry_was_removed(
        monkeypatch: pytest.MonkeyPatch, audited: ServerProcess) -> None:
    """Last in this module: it stops the server, removes the newest entry and its head from the store (the head
    file stays, as it would outside an attacker's reach), and starts the server again."""
    audited.stop()
    done = subprocess.run([sys.executable, "-c", TAMPER, str(audited.data / "data")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    audited.start()
    broken = cli(audited, "audit", "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    said = " ".join(broken.stdout.split())
    assert "BROKEN" in said and "(truncated)" in said and "signed heads were removed from the store" in said, said
    page = audit_page(monkeypatch, audited.url)
    assert any("The chain is broken" in text for text in shown(page.error)), shown(page.error)
    assert any("(truncated)" in text for text in shown(page.markdown))
