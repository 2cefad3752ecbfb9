"""Acknowledged means durable: kill -9 the server and every acknowledged span is there once.

The checks go through the API (per-trace span lists, /api/stats) and, once the server is
stopped, through the store itself in a separate process: the physical row count
(duplicates included) must equal the deduplicated count, so a replayed WAL segment that
was inserted twice cannot hide behind ReplacingMergeTree or ``LIMIT 1 BY``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, ServerProcess
from tests.otlp_helpers import make_request, make_span

pytestmark = pytest.mark.slow

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@dataclass(frozen=True)
class Sent:
    """What one request carried: a trace of its own."""

    trace_id: str
    span_ids: frozenset[str]
    ticket: str


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[Sent] = field(default_factory=list)
    unacked: list[Sent] = field(default_factory=list)  # sent, answer lost or not 200
    refused: list[tuple[int, str]] = field(default_factory=list)

    def record(self, sent: Sent, status: int | None, body: str = "") -> None:
        with self.lock:
            if status == 200:
                self.acked.append(sent)
            else:
                self.unacked.append(sent)
                if status is not None:
                    self.refused.append((status, body[:200]))


def build(spans_per_request: int, tag: str) -> tuple[bytes, Sent]:
    """A request of one new trace: a root naming a ticket, the rest its children."""
    trace_id = os.urandom(16)
    start = time.time_ns() - 60 * 1_000_000_000
    ticket = f"CR-{tag}-{trace_id.hex()[:12]}"
    root = make_span(
        "invoke_agent", {"gen_ai.operation.name": "invoke_agent", "flightrec.object.type": "ticket",
                         "flightrec.object.id": ticket},
        trace_id=trace_id, start_ns=start,
    )
    spans = [root] + [
        make_span(f"step-{i}", {"gen_ai.operation.name": "chat", "n": i}, trace_id=trace_id, parent=root.span_id,
                  start_ns=start + i * 1000)
        for i in range(1, spans_per_request)
    ]
    sent = Sent(trace_id.hex(), frozenset(span.span_id.hex() for span in spans), ticket)
    assert len(sent.span_ids) == spans_per_request
    return make_request(spans, resource={"service.name": "crash-agent"}).SerializeToString(), sent


def sender(url: str, ledger: Ledger, stop: threading.Event, tag: str, spans_per_request: int) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        n = 0
        while not stop.is_set():
            body, sent = build(spans_per_request, f"{tag}{n}")
            n += 1
            try:
                response = client.post("/v1/traces", content=body, headers=PROTOBUF)
            except httpx.HTTPError:
                ledger.record(sent, None)
                return  # the server is gone
            ledger.record(sent, response.status_code, response.text)
            if response.status_code != 200 and response.status_code != 503:
                return


def stored_span_ids(client: httpx.Client, trace_id: str) -> list[str] | None:
    response = client.get(f"/api/traces/{trace_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return [span["span_id"] for span in response.json()["spans"]]


def verify(server: ServerProcess, ledger: Ledger) -> int:
    """Every acked span stored exactly once; unacked requests all-or-nothing; stats agree.

    Returns the number of spans stored.
    """
    stored_spans = stored_traces = 0
    with server.client() as client, ThreadPoolExecutor(4) as pool:
        acked = dict(zip(ledger.acked, pool.map(lambda sent: stored_span_ids(client, sent.trace_id), ledger.acked)))
        unacked = dict(
            zip(ledger.unacked, pool.map(lambda sent: stored_span_ids(client, sent.trace_id), ledger.unacked))
        )
        for sent, ids in acked.items():
            assert ids is not None, f"acknowledged trace {sent.trace_id} is missing"
            assert len(ids) == len(set(ids)), f"trace {sent.trace_id} lists a span twice"
            assert set(ids) == sent.span_ids, f"acknowledged trace {sent.trace_id}: {len(ids)} of {len(sent.span_ids)}"
            stored_spans += len(ids)
            stored_traces += 1
        for sent, ids in unacked.items():
            # never acknowledged: may have reached the WAL before the kill, but a WAL record is whole
            if ids is not None:
                assert sorted(ids) == sorted(sent.span_ids), f"unacked trace {sent.trace_id} stored in part"
                stored_spans += len(ids)
                stored_traces += 1
        stats = client.get("/api/stats").json()
        health = client.get("/api/health").json()
    assert health["backlog_spans"] == 0
    assert stats["spans"] == stored_spans, (stats, stored_spans)
    assert stats["traces"] == stored_traces
    assert stats["objects"] == stored_traces  # each trace names its own ticket
    return stored_spans


STORE_PROBE = """
import json, sys
from flightrec.store import StoreConfig, open_store
store = open_store(StoreConfig(dsn="chdb://" + sys.argv[1]))
try:
    print(json.dumps({"copies": store.span_copies(), "spans": store.stats().spans}))
finally:
    store.close()
"""


def physical_rows(server: ServerProcess) -> dict[str, int]:
    """Span rows on disk (duplicates included) and distinct spans, read while the server is stopped."""
    assert server.proc is None or server.proc.poll() is not None, "stop the server first (one chDB owner)"
    done = subprocess.run(
        [sys.executable, "-c", STORE_PROBE, str((server.data / "data").resolve())],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def wal_files(server: ServerProcess) -> list[Path]:
    return sorted((server.data / "wal").glob("*.wal"))


def kill9(server: ServerProcess, grace_s: float = 1.0) -> list[str]:
    """kill -9 the server; reap any process it started that outlives it. Returns the survivors."""
    assert server.proc is not None
    try:
        children = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    server.kill9()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    survivors = []
    for proc in alive:
        try:
            survivors.append(" ".join(proc.cmdline())[:160])
            proc.kill()  # a process our server started: end it by its pid
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    return survivors


def health(server: ServerProcess) -> dict:
    return httpx.get(f"{server.url}/api/health", headers=server.api_headers(), timeout=10).json()


@pytest.fixture(params=["python", "engine"])
def crash_server(make_server, request: pytest.FixtureRequest) -> ServerProcess:
    """A server on each ingest parser (FLIGHTREC_INGEST_PARSER): exactly once holds for both."""
    return make_server(name="crash", env={"FLIGHTREC_INGEST_PARSER": request.param})


def test_kill9_mid_stream_keeps_every_acknowledged_span_once(crash_server: ServerProcess) -> None:
    server = crash_server
    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(target=sender, args=(server.url, ledger, stop, f"t{k}-", 200), daemon=True)
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while time.monotonic() - started < 20 and (len(ledger.acked) < 40 or time.monotonic() - started < 2.5):
        time.sleep(0.05)
    in_wal = health(server)["backlog_spans"]
    kill9(server)  # mid-stream: senders are posting, the writer is inserting
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(ledger.acked) >= 40, f"too little acknowledged to test anything: {len(ledger.acked)}"
    assert not [status for status, _ in ledger.refused if status != 503], ledger.refused[:3]
    acked_spans = sum(len(sent.span_ids) for sent in ledger.acked)

    server.start()
    server.wait_drained(timeout_s=120)
    stored = verify(server, ledger)
    assert acked_spans <= stored <= acked_spans + 200 * len(ledger.unacked)

    # no physical duplicates behind the deduplicating reads (in_wal spans were left to replay)
    server.stop()
    rows = physical_rows(server)
    assert rows == {"copies": stored, "spans": stored}, (rows, stored, in_wal)
    # and a restart with nothing new changes nothing
    server.start()
    server.wait_drained()
    with server.client() as client:
        assert client.get("/api/stats").json()["spans"] == stored


def test_kill9_after_ack_before_insert(crash_server: ServerProcess) -> None:
    server = crash_server
    ledger = Ledger()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(6):
            body, sent = build(50, f"fast{n}")
            response = client.post("/v1/traces", content=body, headers=PROTOBUF)
            ledger.record(sent, response.status_code, response.text)
    assert len(ledger.acked) == 6
    pending = health(server)["backlog_spans"]
    kill9(server)
    # the precondition of this scenario: acknowledged, on disk, not yet in the store
    assert pending > 0, "the writer inserted before the kill; the scenario did not happen"
    assert wal_files(server) and sum(path.stat().st_size for path in wal_files(server)) > 0

    server.start()
    server.wait_drained(timeout_s=60)
    stored = verify(server, ledger)
    assert stored == 6 * 50
    assert not wal_files(server) or all(path.stat().st_size == 0 for path in wal_files(server))
    server.stop()
    assert physical_rows(server) == {"copies": stored, "spans": stored}


def test_segment_replayed_after_insert_is_not_inserted_twice(crash_server: ServerProcess, tmp_path: Path) -> None:
    """A crash after the insert but before the WAL segment is deleted replays the segment.

    Simulated exactly: keep a copy of the segments a kill -9 left, let the restart insert
    and delete them, then put the copies back and restart again (the same file names, so
    the same deduplication tokens).
    """
    server = crash_server
    ledger = Ledger()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(4):
            body, sent = build(100, f"replay{n}")
            response = client.post("/v1/traces", content=body, headers=PROTOBUF)
            ledger.record(sent, response.status_code, response.text)
    assert len(ledger.acked) == 4
    kill9(server)
    saved = tmp_path / "saved-wal"
    saved.mkdir()
    segments = [path for path in wal_files(server) if path.stat().st_size > 0]
    assert segments, "the kill left no WAL segment to replay"
    for path in segments:
        shutil.copy2(path, saved / path.name)

    server.start()
    server.wait_drained()
    stored = verify(server, ledger)
    assert stored == 400
    server.stop()
    assert physical_rows(server) == {"copies": 400, "spans": 400}

    for path in saved.iterdir():  # the segments come back, as if their delete never happened
        shutil.copy2(path, server.data / "wal" / path.name)
    server.start()
    server.wait_drained()
    assert verify(server, ledger) == 400
    with server.client() as client:
        assert client.get("/api/health").json()["writer"]["insert_failures"] == 0
    server.stop()
    assert physical_rows(server) == {"copies": 400, "spans": 400}


ORPHAN_DEADLINE_S = 60.0  # generous: a loaded 2-core machine may take seconds to schedule a worker


def wait_for(condition, timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.05)


def test_kill9_leaves_no_orphan_processes(crash_server: ServerProcess) -> None:
    """Whatever the server starts (writer workers) ends once the server is killed, mid-stream."""
    server = crash_server
    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(target=sender, args=(server.url, ledger, stop, f"o{k}-", 200), daemon=True) for k in range(2)
    ]
    for thread in threads:
        thread.start()
    # mid-stream: batches acknowledged and the writer inserting (so its workers are up and busy)
    wait_for(lambda: len(ledger.acked) >= 10 and health(server)["writer"]["inserted_segments"] > 0, 120,
             "acknowledged batches and a first insert")
    survivors = kill9(server, grace_s=ORPHAN_DEADLINE_S)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert survivors == [], f"processes still alive {ORPHAN_DEADLINE_S:.0f} s after the server was killed: {survivors}"


def spawned_workers(server: ServerProcess) -> list[psutil.Process]:
    """The server's multiprocessing children (writer workers), started or starting."""
    assert server.proc is not None
    return [child for child in psutil.Process(server.proc.pid).children(recursive=True)
            if "multiprocessing" in " ".join(child.cmdline())]


def test_kill9_while_the_workers_start_leaves_no_orphans(crash_server: ServerProcess) -> None:
    """Killed as soon as it answers, the server leaves workers that may still be starting (importing):
    they must notice the server is gone even though it died before they were ready."""
    if crash_server.env.get("FLIGHTREC_INGEST_PARSER") == "engine":
        pytest.skip("the engine parser starts no worker processes")
    wait_for(lambda: spawned_workers(crash_server), 60, "the writer's worker processes to be spawned")
    survivors = kill9(crash_server, grace_s=ORPHAN_DEADLINE_S)
    assert survivors == [], (
        f"processes still alive {ORPHAN_DEADLINE_S:.0f} s after the server was killed while they started: {survivors}"
    )
