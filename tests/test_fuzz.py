"""The fuzz corpus (tests/fuzz_corpus.py) against a real ``flightrec serve``.

A deterministic sample of a few thousand bad OTLP/HTTP inputs from every class, sent on one
keep-alive connection, then a sample of the gRPC set as raw Export messages. The server
must answer each as the contract says (no 5xx but a 503 where the backlog may be full,
every 4xx a google.rpc.Status with a reason, partial_success naming what it rejected, no
hang, no reset connection), keep running, store exactly what it acknowledged and nothing
it refused, and take a valid span after all of it. ``python bench/fuzz.py`` runs the
whole corpus.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import grpc
import httpx
import pytest

from tests.conftest import ServerProcess
from tests.fuzz_corpus import (
    OUTCOMES, FuzzCorpus, Limits, Sent, call_grpc, default_base_ns, post_case, post_until_accepted, valid_probe,
)

# Small limits keep the big classes (a body just under the limit, 100k attributes, more
# spans than the backlog can hold) cheap; retention 0 lets 101 past months be valid spans.
LIMITS = Limits(max_body_bytes=8 * 1024 * 1024, max_backlog_spans=100_000, retention_days=0)
HTTP_PER_CLASS = 120
SENDERS = 2  # keep-alive connections, each its own httpx.Client
GRPC_PER_CLASS = 20
BIG = {"huge_attribute", "many_attributes", "huge_span_count"}
REQUEST_TIMEOUT_S = 20.0
QUERYABLE_DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {**LIMITS.env(), "FLIGHTREC_DETECT_INTERVAL_S": "0", "FLIGHTREC_WAL_FSYNC": "false"}
    server = ServerProcess(tmp_path_factory.mktemp("fuzz") / "srv", env=env)
    server.start()
    yield server
    server.stop()


def test_corpus_is_deterministic_and_complete() -> None:
    base = default_base_ns()
    corpus = FuzzCorpus(seed=8, limits=LIMITS, base_ns=base)
    http, rpc = corpus.class_counts("http"), corpus.class_counts("grpc")
    assert sum(http.values()) >= 10_000 and sum(rpc.values()) >= 900
    assert {"random_bytes", "truncated_protobuf", "truncated_json", "bitflip_protobuf", "bitflip_json", "bad_utf8",
            "wrong_id_length", "json_type_error", "nan_infinity", "deep_nesting", "huge_attribute", "many_attributes",
            "huge_span_count", "time_edge", "compression", "lying_content_encoding", "lying_content_type"} <= set(http)
    small = [cls for cls in http if cls not in BIG]
    same = FuzzCorpus(seed=8, limits=LIMITS, base_ns=base).digest(per_class=3, classes=small)
    assert corpus.digest(per_class=3, classes=small) == same
    assert FuzzCorpus(seed=9, limits=LIMITS, base_ns=base).digest(per_class=3, classes=small) != same
    assert corpus.digest("grpc", per_class=2, classes=["random_bytes", "structural"]) == FuzzCorpus(
        seed=8, limits=LIMITS, base_ns=base).digest("grpc", per_class=2, classes=["random_bytes", "structural"])
    outcomes = Counter(case.build().expect.outcome for case in corpus.sample(4, small_whole=0, classes=small))
    assert set(outcomes) <= set(OUTCOMES) and {"reject", "partial", "accept"} <= set(outcomes)


def _report(failures: dict[str, list[str]], limit: int = 40) -> str:
    lines = []
    for cls, items in failures.items():
        lines.append(f"{cls}: {len(items)} off")
        lines.extend(f"    {item}" for item in items[:6])
        if len(lines) > limit:
            break
    return "\n".join(lines)


def _record(sent: Sent, failures: dict[str, list[str]], reject_ids: list[str]) -> int:
    if sent.verdict.problems:
        failures[f"{sent.case.transport}/{sent.case.cls}"].append(
            f"{sent.case.name} -> {sent.status}: {'; '.join(sent.verdict.problems)[:240]}")
    if sent.expect.outcome == "reject" and sent.expect.trace_ids and len(reject_ids) < 60:
        reject_ids.append(sent.expect.trace_ids[0])
    return sent.verdict.stored


@pytest.mark.slow
def test_fuzz_sample_against_a_live_server(fuzz_server: ServerProcess) -> None:
    corpus = FuzzCorpus(seed=8, limits=LIMITS)
    failures: dict[str, list[str]] = defaultdict(list)
    reject_ids: list[str] = []
    stored = sent_count = 0
    started = time.monotonic()
    cases, lock = corpus.sample(HTTP_PER_CLASS), threading.Lock()

    def sender() -> None:
        nonlocal stored, sent_count
        with httpx.Client(base_url=fuzz_server.url) as client:  # one keep-alive connection per sender
            while True:
                with lock:
                    case = next(cases, None)
                if case is None:
                    return
                sent = post_case(client, case, REQUEST_TIMEOUT_S)
                with lock:
                    stored += _record(sent, failures, reject_ids)
                    sent_count += 1

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with grpc.insecure_channel(f"127.0.0.1:{fuzz_server.grpc_port}",
                               options=[("grpc.max_send_message_length", 2**31 - 1)]) as channel:
        for case in corpus.sample(GRPC_PER_CLASS, "grpc"):
            stored += _record(call_grpc(channel, case, REQUEST_TIMEOUT_S), failures, reject_ids)
            sent_count += 1
    corpus_s = time.monotonic() - started
    assert sent_count >= 2_000

    # the server survived, and a valid span sent now becomes queryable
    assert fuzz_server.proc is not None and fuzz_server.proc.poll() is None, "the server process died"
    body, trace_id, probe_spans = valid_probe()
    with fuzz_server.client() as api:
        deadline = time.monotonic() + QUERYABLE_DEADLINE_S
        answer = post_until_accepted(api, body, QUERYABLE_DEADLINE_S)
        assert answer.status_code == 200, (answer.status_code, answer.content[:300], _report(failures))
        while api.get(f"/api/traces/{trace_id}").status_code != 200:
            assert time.monotonic() < deadline, (
                f"a valid span sent after the corpus is not queryable within {QUERYABLE_DEADLINE_S:.0f} s; "
                f"health: {api.get('/api/health').text[:600]}\n{_report(failures)}")
            time.sleep(0.05)
        # everything acknowledged is stored, and nothing else (nothing refused, no rejected span)
        while (health := api.get("/api/health").json())["backlog_spans"]:
            assert time.monotonic() < deadline, f"the backlog does not drain: {health}"
            time.sleep(0.05)
        spans = api.get("/api/stats").json()["spans"]
        leaked = [trace for trace in reject_ids if api.get(f"/api/traces/{trace}").status_code != 404]

    assert not failures, f"{sum(map(len, failures.values()))} of {sent_count} answers off the contract " \
                         f"(sent in {corpus_s:.0f} s):\n{_report(failures)}"
    assert not leaked, f"traces of refused bodies were stored: {leaked}"
    assert spans == stored + probe_spans, f"stored {spans} spans; the answers acknowledged {stored + probe_spans}"
