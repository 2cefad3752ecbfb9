"""The evidence log (issue 11, deliverable 1): leaves, the sequencer, checkpoints, proofs, verify --store.

Real parts: an embedded store for the repository and the sequencer; a real ``flightrec serve`` with
spans sent over OTLP for the API and the CLI. Proofs are checked offline with evidence/merkle.py
against the signed checkpoint and the key from /api/evidence/key."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
import time as clock
import uuid
from pathlib import Path

import httpx
import pytest
import rfc8785

from flightrec.collector.rows import RowBuilder
from flightrec.evidence import keys
from flightrec.evidence import leaves as canon
from flightrec.evidence.checkpoints import open_checkpoint
from flightrec.evidence.log_verify import verify_store
from flightrec.evidence.merkle import leaf_hash, memory_nodes, range_hash, verify_consistency, verify_inclusion
from flightrec.evidence.sequencer import Sequencer, SequencerConfig
from flightrec.store import Store
from tests import exporter_sql as ex
from tests.conftest import ServerProcess, wait_for
from tests.otlp_helpers import BASE_NS, make_request, make_span

CONFIG = SequencerConfig(checkpoint_interval_s=0, batch=7)  # small batches: many appends, many node layers


@pytest.fixture
def key(tmp_path: Path) -> keys.SigningKey:
    return keys.load_or_create(tmp_path / "key.pem")


def insert_spans(store: Store, count: int, attrs: dict | None = None) -> list[tuple[str, str]]:
    spans = [make_span(f"step-{i}", {"n": i, **(attrs or {})}) for i in range(count)]
    store.insert_batch(RowBuilder().request_rows(make_request(spans)), dedup_token=uuid.uuid4().hex)
    return [(span.trace_id.hex(), span.span_id.hex()) for span in spans]


def audit(store: Store, count: int) -> None:
    for i in range(count):
        store.audit.append(actor="alice", act="test.act", subject=f"thing-{i}", details={"i": str(i)})


def all_leaf_hashes(store: Store) -> list[bytes]:
    size, _ = store.evidence.tree_size()
    return [bytes.fromhex(digest) for _, digest in store.evidence.leaf_hashes(start=0, end=size)]


# -- canonical forms ---------------------------------------------------------------------------


def test_canonical_json_is_rfc8785_for_every_string() -> None:
    rng = random.Random(11)
    alphabet = ["a", "Z", "\"", "\\", "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "\ud7ff", "\ue000", "\uffff",
                "\U0001f600", "\U00010000", "/", "<"]
    for _ in range(300):
        mapping = {"".join(rng.choices(alphabet, k=rng.randint(0, 4))): "".join(rng.choices(alphabet, k=5))
                   for _ in range(rng.randint(0, 6))}
        document = {"attributes": mapping, "events": [{"time_ns": "1", "attributes": mapping}], "v": 1}
        assert canon.canonical(document, mapping) == rfc8785.dumps(document)
    # The two key orders differ here: U+E000 sorts after U+1F600 by code point, before it in UTF-16.
    tricky = {"\ue000": "a", "\U0001f600": "b"}
    assert canon.canonical({"m": tricky}, tricky) == rfc8785.dumps({"m": tricky})


def test_record_and_content_hash_apart(store: Store, key: keys.SigningKey) -> None:
    [(trace, span)] = insert_spans(store, 1, {"customer.email": "a@example.com"})
    [row] = store.evidence.new_spans(since_us=0, limit=10)
    [columns] = store.evidence.span_sources(low="", high=None)
    source = canon.SpanSource(*columns)
    assert canon.span_hashes(source) == (row.record_hash, row.content_hash)  # Python writes the engine's bytes
    record, content = row.record_hash, row.content_hash
    changed = source._replace(attributes={**source.attributes, "customer.email": "[erased]"})
    assert canon.span_hashes(changed)[0] == record and canon.span_hashes(changed)[1] != content
    assert canon.span_hashes(source._replace(name="other"))[1] == content
    assert canon.span_hashes(source._replace(name="other"))[0] != record
    assert str(BASE_NS).encode() in canon.span_record(source) and trace.encode() in canon.span_record(source)
    data = json.loads(canon.span_leaf_data(trace, span, record, content))
    assert data == {"v": 1, "kind": "span", "trace_id": trace, "span_id": span, "record": record, "content": content}


def test_the_engine_and_python_write_the_same_canonical_bytes(store: Store) -> None:
    """Unicode keys and values (sorted by bytes on both sides), empty maps, events and links, many spans."""
    rng = random.Random(5)
    alphabet = ["a", "Z", "\"", "\\", "\n", "\x00", "é", "\u2028", "\ue000", "\U0001f600", "=", ""]
    spans = []
    for index in range(40):
        attrs = {"".join(rng.choices(alphabet, k=rng.randint(1, 4))) + str(index % 3):
                 "".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rng.randint(0, 5))}
        span = make_span(f"span-{index}-{rng.choice(alphabet)}", attrs)
        for number in range(rng.randint(0, 2)):
            event = span.events.add()
            event.time_unix_nano = span.start_time_unix_nano + number
            event.name = rng.choice(alphabet) + "event"
            event.attributes.extend(make_span("x", {"k" + rng.choice(alphabet): rng.choice(alphabet)}).attributes)
        if index % 4 == 0:
            link = span.links.add()
            link.trace_id, link.span_id = os.urandom(16), os.urandom(8)
            link.trace_state = "a=b"
            link.attributes.extend(make_span("x", {"why": "caused by"}).attributes)
        spans.append(span)
    store.insert_batch(RowBuilder().request_rows(make_request(spans, {"service.name": "svc-é", "z": "", "a": "1"})),
                       dedup_token=uuid.uuid4().hex)
    engine = {(t, s): (r, c) for t, s, r, c in store.evidence.span_hashes(low="", high=None)}
    python = {(src.trace_id, src.span_id): canon.span_hashes(src)
              for src in (canon.SpanSource(*columns) for columns in store.evidence.span_sources(low="", high=None))}
    assert len(engine) == 40 and engine == python


# -- the sequencer on a real store -----------------------------------------------------------------


def test_spans_and_audit_entries_become_leaves_and_proofs_verify_offline(store: Store, key: keys.SigningKey) -> None:
    refs = insert_spans(store, 20)
    audit(store, 3)
    sequencer = Sequencer(store, key, CONFIG)
    assert sequencer.run_once() == 23
    assert sequencer.run_once() == 0  # nothing new: no leaf twice
    checkpoint, created = sequencer.checkpoint()
    assert created and checkpoint.size == 23
    opened = open_checkpoint(checkpoint.note, key.public_raw)
    hashes = all_leaf_hashes(store)
    assert opened.root == range_hash(memory_nodes(hashes), 0, 23)  # the stored nodes' root is the leaves' root

    from flightrec.evidence import proofs
    for trace, span in refs:
        proof = proofs.span_inclusion(store.evidence, trace, span, None)
        assert leaf_hash(proof.leaf_data.encode()).hex() == proof.leaf_hash
        assert verify_inclusion(bytes.fromhex(proof.leaf_hash), proof.leaf_index, proof.tree_size,
                                [bytes.fromhex(p) for p in proof.path], opened.root)
    proof = proofs.audit_inclusion(store.evidence, 2, None, True)
    assert json.loads(proof.leaf_data)["seq"] == 2
    assert verify_inclusion(leaf_hash(proof.leaf_data.encode()), proof.leaf_index, 23,
                            [bytes.fromhex(p) for p in proof.path], opened.root)
    assert verify_store(store, key.public_raw).ok


def test_a_restart_resumes_the_same_tree(store: Store, key: keys.SigningKey) -> None:
    insert_spans(store, 10)
    Sequencer(store, key, CONFIG).run_once()
    insert_spans(store, 13)
    audit(store, 2)
    assert Sequencer(store, key, CONFIG).run_once() == 15  # a new process: frontier from the stored nodes
    checkpoint, _ = Sequencer(store, key, CONFIG).checkpoint()
    assert checkpoint.size == 25
    assert bytes.fromhex(checkpoint.root_hash) == range_hash(memory_nodes(all_leaf_hashes(store)), 0, 25)
    assert verify_store(store, key.public_raw).ok


def test_a_crash_between_leaves_and_nodes_is_repaired(store: Store, key: keys.SigningKey, monkeypatch) -> None:
    insert_spans(store, 9)
    crashing = Sequencer(store, key, CONFIG)
    calls = {"n": 0}
    original = store.evidence.add_nodes

    def crash_on_second(nodes, *, token):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed between leaves and nodes")
        original(nodes, token=token)

    monkeypatch.setattr(store.evidence, "add_nodes", crash_on_second)
    with pytest.raises(RuntimeError):
        crashing.run_once()
    monkeypatch.setattr(store.evidence, "add_nodes", original)
    insert_spans(store, 4)
    assert store.evidence.tree_size() == (9, 7)  # both batches' leaves went in; the second's nodes did not
    assert Sequencer(store, key, CONFIG).run_once() == 4  # the nodes of leaves 7..8 are stored first
    checkpoint, _ = Sequencer(store, key, CONFIG).checkpoint()
    assert bytes.fromhex(checkpoint.root_hash) == range_hash(memory_nodes(all_leaf_hashes(store)), 0, 13)
    assert verify_store(store, key.public_raw).ok


def test_two_sequencers_on_one_store_write_one_log(store: Store, key: keys.SigningKey) -> None:
    config = SequencerConfig(checkpoint_interval_s=0, batch=5)
    first, second = Sequencer(store, key, config), Sequencer(store, key, config)
    refs: list[tuple[str, str]] = []
    stop = threading.Event()

    def work(sequencer: Sequencer) -> None:
        while not stop.is_set():
            sequencer.run_once()

    threads = [threading.Thread(target=work, args=(s,)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for _ in range(8):
        refs += insert_spans(store, 6)
        audit(store, 1)
    wait_for(lambda: store.evidence.tree_size()[0] >= 56, 60, "every span and entry sequenced")
    stop.set()
    for thread in threads:
        thread.join()
    # Which one wins each race depends on the machine's load (and two that read the same new rows build
    # identical batches, each then reading its own leaves back): what must hold is one leaf per index.
    assert first.appended + second.appended >= 56
    leaves = store.evidence.leaves(start=0, end=1000)
    assert [leaf.index for leaf in leaves] == list(range(56))  # one leaf per index
    assert sorted((leaf.trace_id, leaf.span_id) for leaf in leaves if leaf.kind == "span") == sorted(refs)
    assert sorted(leaf.audit_seq for leaf in leaves if leaf.kind == "audit") == list(range(1, 9))
    Sequencer(store, key, config).checkpoint()
    assert verify_store(store, key.public_raw).ok


def test_spans_another_writer_inserts_become_leaves(store: Store, key: keys.SigningKey) -> None:
    trace = os.urandom(16).hex()
    sent = [ex.ExporterSpan(trace_id=trace, span_id=os.urandom(8).hex(), name=f"exported-{i}", start_ns=BASE_NS + i,
                            end_ns=BASE_NS + i + 1000, attributes={"k": i}) for i in range(3)]
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", sent)
    assert Sequencer(store, key, CONFIG).run_once() == 3
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", sent[:1])  # the exporter retries: a second copy
    assert Sequencer(store, key, CONFIG).run_once() == 0
    assert {leaf.span_id for leaf in store.evidence.span_leaves(low="", high=None)} == {s.span_id for s in sent}
    Sequencer(store, key, CONFIG).checkpoint()
    assert verify_store(store, key.public_raw).ok


def test_the_engine_writes_the_leaf_data_python_writes_and_leaves_odd_ids_to_the_sweep(
        store: Store, key: keys.SigningKey) -> None:
    """Ids another writer may store: quotes and backslashes (JSON-escaped by the engine), non-ASCII
    (kept as UTF-8), and control characters, which the engine's leaf form leaves to the sweep's Python."""
    ids = ['quote"d', "back\\slash", "caf\u00e9-\U0001f600", "new\nline", "tab\tand\x01"]
    sent = [ex.ExporterSpan(trace_id=f"{name}-{index}", span_id=os.urandom(8).hex(), name="odd", start_ns=BASE_NS,
                            end_ns=BASE_NS + 1000) for index, name in enumerate(ids)]
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", sent)
    sequencer = Sequencer(store, key, SequencerConfig(checkpoint_interval_s=0, sweep_s=3600))
    sequencer._last_sweep = clock.monotonic()  # no sweep in this pass: only what the engine appends
    assert sequencer.run_once() == 3  # the quoted, the back-slashed and the non-ASCII ids
    sequencer._last_sweep = None
    assert sequencer.run_once() == 2  # the sweep: the ids holding control characters
    leaves = store.evidence.span_leaves(low="", high=None)
    assert sorted(leaf.trace_id for leaf in leaves) == sorted(span.trace_id for span in sent)
    for leaf in leaves:
        data = canon.span_leaf_data(leaf.trace_id, leaf.span_id, leaf.record_hash, leaf.content_hash)
        assert leaf.leaf_hash == canon.leaf_hex(data), leaf.trace_id
    sequencer.checkpoint()
    assert verify_store(store, key.public_raw).ok


def test_a_span_visible_behind_the_cursor_waits_for_the_sweep(store: Store, key: keys.SigningKey) -> None:
    """A row inserted with an InsertedAt older than the cursor (a slow insert from another writer) is
    not seen by the passes that read past the cursor; the next sweep appends it, once."""
    [(trace, span)] = insert_spans(store, 1)
    sequencer = Sequencer(store, key, SequencerConfig(checkpoint_interval_s=0, sweep_s=3600, lookback_s=7200))
    assert sequencer.run_once() == 1
    late = os.urandom(8).hex()
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", [ex.ExporterSpan(
        trace_id=trace, span_id=late, name="late", start_ns=BASE_NS, end_ns=BASE_NS + 1000)])
    _mutate(store, f"ALTER TABLE {store.db}.otel_traces UPDATE InsertedAt = InsertedAt - INTERVAL 1 HOUR "
                   f"WHERE SpanId = '{late}'")
    assert sequencer.run_once() == 0  # behind the cursor, and no sweep is due
    sequencer._last_sweep = None
    assert sequencer.run_once() == 1 and sequencer.run_once() == 0
    assert {leaf.span_id for leaf in store.evidence.span_leaves(low="", high=None)} == {span, late}
    sequencer.checkpoint()
    assert verify_store(store, key.public_raw).ok


# -- tampering, each named ---------------------------------------------------------------------


def _mutate(store: Store, sql: str) -> None:
    store.engine.command("tamper", sql, settings={"mutations_sync": 2})


def sealed(store: Store, key: keys.SigningKey) -> list[tuple[str, str]]:
    refs = insert_spans(store, 12)
    audit(store, 3)
    Sequencer(store, key, CONFIG).checkpoint()
    assert verify_store(store, key.public_raw).ok
    return refs


def problems(store: Store, key: keys.SigningKey) -> list[tuple[str, str, str]]:
    verdict = verify_store(store, key.public_raw)
    assert not verdict.ok
    return [(p.kind, p.ref, p.problem) for p in verdict.problems]


def test_a_changed_attribute_is_named(store: Store, key: keys.SigningKey) -> None:
    (trace, span), *_ = sealed(store, key)
    _mutate(store, f"ALTER TABLE {store.db}.otel_traces UPDATE SpanAttributes = mapUpdate(SpanAttributes, "
                   f"map('n', '99')) WHERE SpanId = '{span}'")
    [(kind, ref, problem)] = problems(store, key)
    assert (kind, ref) == ("span", f"{trace}:{span}") and problem.startswith("changed content")


def test_a_changed_record_and_a_deleted_span_are_named(store: Store, key: keys.SigningKey) -> None:
    (trace, span), (trace2, span2), *_ = sealed(store, key)
    _mutate(store, f"ALTER TABLE {store.db}.otel_traces UPDATE StatusMessage = 'all fine' WHERE SpanId = '{span}'")
    _mutate(store, f"ALTER TABLE {store.db}.otel_traces DELETE WHERE SpanId = '{span2}'")
    found = problems(store, key)
    assert ("span", f"{trace}:{span}") in [(k, r) for k, r, p in found if p.startswith("changed record")]
    assert ("span", f"{trace2}:{span2}") in [(k, r) for k, r, p in found if p.startswith("deleted")]
    assert len(found) == 2


def test_a_rewritten_audit_entry_is_named(store: Store, key: keys.SigningKey) -> None:
    sealed(store, key)
    _mutate(store, f"ALTER TABLE {store.db}.audit_log UPDATE Actor = 'mallory' WHERE Seq = 2")
    assert problems(store, key) == [("audit", "audit:2", "rewritten: its content no longer matches its hash")]


def test_a_rewritten_leaf_hash_and_node_are_named(store: Store, key: keys.SigningKey) -> None:
    sealed(store, key)
    _mutate(store, f"ALTER TABLE {store.db}.evidence_leaves UPDATE LeafHash = '{'0' * 64}' WHERE Idx = 4")
    [(kind, ref, problem)] = problems(store, key)
    assert kind == "leaf" and problem.startswith("its leaf hash was rewritten")
    _mutate(store, f"ALTER TABLE {store.db}.evidence_leaves UPDATE LeafHash = '{'0' * 64}' WHERE Idx = 4")
    _mutate(store, f"ALTER TABLE {store.db}.evidence_nodes UPDATE Hash = '{'1' * 64}' WHERE Level = 1 AND Idx = 0")
    assert ("node", "node 1/0") in [(k, r) for k, r, _ in problems(store, key)]


def test_a_span_not_yet_sequenced_gets_409_and_an_unknown_one_404(store: Store, key: keys.SigningKey) -> None:
    from flightrec.evidence import proofs

    [(trace, span)] = insert_spans(store, 1)
    for call, status in ((lambda: proofs.span_inclusion(store.evidence, trace, span, None), 409),
                         (lambda: proofs.span_inclusion(store.evidence, trace, "00" * 8, None), 404),
                         (lambda: proofs.audit_inclusion(store.evidence, 1, None, False), 404)):
        with pytest.raises(proofs.ProofRequestError) as raised:
            call()
        assert raised.value.status == status


# -- the API and the CLI on a real server ----------------------------------------------------------

TAMPER = """
import sys
from flightrec.store import StoreConfig, open_store
store = open_store(StoreConfig(dsn="chdb://" + sys.argv[1], database="flightrec"))
for sql in sys.argv[2:]:
    store.engine.command("tamper", sql.replace("DB.", "flightrec."), settings={"mutations_sync": 2})
store.close()
"""


def send(server: ServerProcess, count: int) -> list[tuple[str, str]]:
    spans = [make_span(f"api-{i}", {"n": i}) for i in range(count)]
    answer = httpx.post(server.url + "/v1/traces", content=make_request(spans).SerializeToString(), timeout=30,
                        headers={"content-type": "application/x-protobuf"})
    assert answer.status_code == 200
    server.wait_drained()
    return [(span.trace_id.hex(), span.span_id.hex()) for span in spans]


def cli_verify(server: ServerProcess) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flightrec", "verify", "--store", "--api", server.url],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "400"})


def path_of(proof: dict) -> list[bytes]:
    return [bytes.fromhex(node) for node in proof["path"]]


def test_proofs_checkpoints_and_verify_store_through_the_api(make_server) -> None:
    server = make_server(env={"FLIGHTREC_CHECKPOINT_INTERVAL_S": "0"})
    first_refs = send(server, 8)
    with server.client() as client:
        public_raw = base64.b64decode(client.get("/api/evidence/key").json()["raw_base64"])
        assert client.get("/api/evidence/checkpoint").status_code == 404
        signed = client.post("/api/evidence/checkpoints", json={"actor": "carol"}).json()
        assert signed["created"] and signed["checkpoint"]["size"] == 9  # 8 spans and the act of asking
        first = open_checkpoint(signed["checkpoint"]["note"], public_raw)
        assert client.get("/api/evidence/checkpoint").json() == signed["checkpoint"]
        for trace, span in first_refs:
            proof = client.get("/api/evidence/proofs/inclusion", params={"trace_id": trace, "span_id": span}).json()
            assert verify_inclusion(leaf_hash(proof["leaf_data"].encode()), proof["leaf_index"], first.size,
                                    path_of(proof), first.root)
        [entry] = [e for e in client.get("/api/audit").json()["items"] if e["act"] == "evidence.checkpoint"]
        proof = client.get("/api/evidence/proofs/inclusion", params={"audit_seq": entry["seq"]}).json()
        assert json.loads(proof["leaf_data"]) == {"v": 1, "kind": "audit", "seq": entry["seq"], "hash": entry["hash"]}
        assert verify_inclusion(leaf_hash(proof["leaf_data"].encode()), proof["leaf_index"], first.size,
                                path_of(proof), first.root)

        later = send(server, 5)
        (trace, span) = later[0]

        def sequenced_after() -> bool:
            answer = client.get("/api/evidence/proofs/inclusion", params={"trace_id": trace, "span_id": span})
            return answer.status_code == 409 and "after the checkpoint" in answer.json()["detail"]

        wait_for(sequenced_after, 30, "the new span sequenced, after the checkpoint")
        second = open_checkpoint(client.post("/api/evidence/checkpoints", json={}).json()["checkpoint"]["note"],
                                 public_raw)
        assert second.size == 15
        consistency = client.get("/api/evidence/proofs/consistency", params={"old": 9, "new": 15}).json()
        assert verify_consistency(9, 15, first.root, second.root, path_of(consistency))
        old_proof = client.get("/api/evidence/proofs/inclusion", params={"trace_id": first_refs[0][0],
                                                                       "span_id": first_refs[0][1], "size": 9}).json()
        assert old_proof["tree_size"] == 9 and verify_inclusion(bytes.fromhex(old_proof["leaf_hash"]),
                                                                old_proof["leaf_index"], 9, path_of(old_proof), first.root)

        bad = {
            "unknown span": ("/api/evidence/proofs/inclusion", {"trace_id": "ab" * 16, "span_id": "cd" * 8}, 404),
            "unknown entry": ("/api/evidence/proofs/inclusion", {"audit_seq": 999}, 404),
            "size not a checkpoint": ("/api/evidence/proofs/inclusion", {"trace_id": trace, "span_id": span,
                                                                         "size": 10}, 404),
            "neither span nor entry": ("/api/evidence/proofs/inclusion", {}, 400),
            "both": ("/api/evidence/proofs/inclusion", {"trace_id": trace, "span_id": span, "audit_seq": 1}, 400),
            "span id missing": ("/api/evidence/proofs/inclusion", {"trace_id": trace}, 400),
            "old > new": ("/api/evidence/proofs/consistency", {"old": 15, "new": 9}, 400),
            "new not a checkpoint": ("/api/evidence/proofs/consistency", {"old": 9, "new": 14}, 404),
            "checkpoint size unknown": ("/api/evidence/checkpoint", {"size": 3}, 404),
        }
        for what, (path, params, status) in bad.items():
            answer = client.get(path, params=params)
            assert answer.status_code == status, (what, answer.text)
            assert answer.json()["detail"], what

    intact = cli_verify(server)
    assert intact.returncode == 0 and "intact" in intact.stdout, intact.stdout + intact.stderr

    server.stop()
    (t1, s1), (t2, s2), (t3, s3) = first_refs[:3]
    subprocess.run([sys.executable, "-c", TAMPER, str(server.data / "data"),
                    f"ALTER TABLE DB.otel_traces UPDATE SpanAttributes = map('n', 'changed') WHERE SpanId = '{s1}'",
                    f"ALTER TABLE DB.otel_traces DELETE WHERE SpanId = '{s2}'",
                    "ALTER TABLE DB.audit_log UPDATE Actor = 'mallory' WHERE Act = 'evidence.checkpoint'",
                    f"ALTER TABLE DB.evidence_leaves UPDATE LeafHash = '{'0' * 64}' WHERE SpanId = '{s3}'"],
                   check=True, timeout=300)
    server.start()
    broken = cli_verify(server)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    out = broken.stdout
    assert f"span {t1}:{s1}" in out and "changed content" in out
    assert f"span {t2}:{s2}" in out and "deleted" in out
    assert f"audit audit:{entry['seq']}" in out and "rewritten" in out
    assert f"leaf {t3}:{s3}" in out and "leaf hash was rewritten" in out
