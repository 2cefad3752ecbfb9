"""OTLP/HTTP ingest against a real ``flightrec serve`` subprocess.

The real OpenTelemetry SDK exporter, the OTLP spec's JSON example, every kind of bad
input (each answered with a google.rpc.Status that says what was wrong, and harmless to
everything else), backpressure, the API token, and resends.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from flightrec.collector import IngestError, IngestPipeline, IntakeConfig, WalConfig, WriteAheadLog
from flightrec.collector.http import error_response
from tests.conftest import ServerProcess, free_port
from tests.otlp_helpers import make_request, make_span


def recent_ns() -> int:
    """A start time well inside the retention window (older spans fall to the TTL)."""
    return time.time_ns() - 60 * 1_000_000_000

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
MAX_BODY = 200_000


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default server for every test of this module that needs no special settings."""
    server = ServerProcess(tmp_path_factory.mktemp("ingest_http") / "srv")
    server.start()
    yield server
    server.stop()


def post(server: ServerProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/traces", content=body, headers=headers, timeout=30)


def post_request(server: ServerProcess, request: ExportTraceServiceRequest, **headers: str) -> httpx.Response:
    return post(server, request.SerializeToString(), {**PROTOBUF, **headers})


def stats(server: ServerProcess) -> dict[str, int]:
    with server.client() as client:
        response = client.get("/api/stats")
    assert response.status_code == 200, response.text
    return response.json()


def trace_spans(server: ServerProcess, trace_id: str) -> list[dict]:
    with server.client() as client:
        response = client.get(f"/api/traces/{trace_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["trace_id"] == trace_id.lower()
    return body["spans"]


def object_spans(server: ServerProcess, kind: str, ident: str) -> list[dict]:
    with server.client() as client:
        response = client.get(f"/api/objects/{kind}/{ident}/spans")
    assert response.status_code == 200, response.text
    return response.json()["spans"]


def rpc_status(response: httpx.Response, as_json: bool) -> status_pb2.Status:
    """The google.rpc.Status of an error answer, in the encoding the request used."""
    content_type = response.headers.get("content-type", "")
    status = status_pb2.Status()
    if as_json:
        assert content_type.startswith("application/json"), content_type
        json_format.Parse(response.content, status)
    else:
        assert content_type.startswith("application/x-protobuf"), content_type
        status.ParseFromString(response.content)
    assert status.message, f"error without a message: {response.content!r}"
    return status


def export_response(response: httpx.Response, as_json: bool = False) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.content
    reply = ExportTraceServiceResponse()
    if as_json:
        assert response.headers["content-type"].startswith("application/json")
        json_format.Parse(response.content, reply)
    else:
        assert response.headers["content-type"].startswith("application/x-protobuf")
        reply.ParseFromString(response.content)
    return reply


def good_trace(n: int = 3, **attrs: object) -> tuple[ExportTraceServiceRequest, str, set[str]]:
    """A small valid trace: a root and n-1 children; (request, trace id hex, span ids hex)."""
    trace_id = os.urandom(16)
    root = make_span("root", attrs or None, trace_id=trace_id, start_ns=recent_ns())
    spans = [root] + [
        make_span(f"child-{i}", trace_id=trace_id, parent=root.span_id, start_ns=root.start_time_unix_nano + i)
        for i in range(1, n)
    ]
    return make_request(spans), trace_id.hex(), {span.span_id.hex() for span in spans}


def assert_unharmed(server: ServerProcess, known: dict[str, set[str]], **headers: str) -> None:
    """The server is alive, a good batch still ingests, and earlier traces are intact."""
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    request, trace_id, span_ids = good_trace(3)
    response = post_request(server, request, **headers)
    assert response.status_code == 200, response.content
    assert not export_response(response).HasField("partial_success")
    server.wait_drained()
    known[trace_id] = span_ids
    for tid, expected in known.items():
        assert {span["span_id"] for span in trace_spans(server, tid)} == expected, tid


class RecordingExporter(SpanExporter):
    """Wraps the real exporter and keeps what each export returned."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[SpanExportResult] = []
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        self.exported += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def send_agent_trace(endpoint: str, ticket: str, compression: Compression | None) -> dict[str, str]:
    """An agent workflow through the real SDK + OTLP/HTTP exporter; the span ids by role."""
    exporter = RecordingExporter(OTLPSpanExporter(endpoint=endpoint, compression=compression, timeout=20))
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.ingest_http")
    ids: dict[str, str] = {}
    with tracer.start_as_current_span(
        "invoke_agent support-agent",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support-agent",
            "flightrec.object.type": "ticket",
            "flightrec.object.id": ticket,
        },
    ) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 150,
            },
        ) as chat:
            with tracer.start_as_current_span(
                "execute_tool lookup_order",
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
            ) as tool:
                ids["tool"] = format(tool.get_span_context().span_id, "016x")
            ids["chat"] = format(chat.get_span_context().span_id, "016x")
        ids["root"] = format(root.get_span_context().span_id, "016x")
        ids["trace"] = format(root.get_span_context().trace_id, "032x")
    assert provider.force_flush(30_000)
    provider.shutdown()
    assert exporter.exported == 3
    assert exporter.results and all(r is SpanExportResult.SUCCESS for r in exporter.results), exporter.results
    return ids


# -- the real SDK exporter -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compression", "ticket"),
    [(None, "TCK-1042"), (Compression.Gzip, "TCK-1042-GZ")],
    ids=["plain", "gzip"],
)
def test_sdk_exporter_agent_trace_is_queryable(srv: ServerProcess, compression, ticket: str) -> None:
    before = stats(srv)
    ids = send_agent_trace(f"{srv.url}/v1/traces", ticket, compression)
    srv.wait_drained()

    # the ticket's spans: the root names it, the link covers the chat and tool descendants
    spans = object_spans(srv, "ticket", ticket)
    by_id = {span["span_id"]: span for span in spans}
    assert set(by_id) == {ids["root"], ids["chat"], ids["tool"]}
    for span in spans:
        assert span["trace_id"] == ids["trace"]
        assert span["start_time"] and span["name"]
        assert span["agent"] == "support-agent"
    root, chat, tool = by_id[ids["root"]], by_id[ids["chat"]], by_id[ids["tool"]]
    assert (root["name"], root["operation"], root["parent_span_id"]) == ("invoke_agent support-agent", "agent", "")
    assert (chat["name"], chat["operation"], chat["parent_span_id"]) == ("chat gpt-4o", "llm", ids["root"])
    assert (chat["model"], chat["input_tokens"], chat["output_tokens"]) == ("gpt-4o-2024-08-06", 1200, 150)
    assert (tool["name"], tool["operation"], tool["parent_span_id"]) == (
        "execute_tool lookup_order", "tool", ids["chat"],
    )
    assert tool["tool"] == "lookup_order" and tool["objects"] == []
    assert root["objects"] == [f"ticket:{ticket}"]

    # the trace by id, time-ordered (root first)
    trace = trace_spans(srv, ids["trace"])
    assert [span["span_id"] for span in trace][0] == ids["root"]
    assert {span["span_id"] for span in trace} == {ids["root"], ids["chat"], ids["tool"]}
    # upper-case hex is the same trace
    assert len(trace_spans(srv, ids["trace"].upper())) == 3

    after = stats(srv)
    assert after["spans"] - before["spans"] == 3
    assert after["traces"] - before["traces"] == 1
    assert after["objects"] - before["objects"] == 1
    assert after["rejected_spans"] == before["rejected_spans"]


def test_trace_lookup_errors(srv: ServerProcess) -> None:
    with srv.client() as client:
        unknown = client.get(f"/api/traces/{os.urandom(16).hex()}")
        assert unknown.status_code == 404, unknown.text
        assert "no trace" in unknown.json()["detail"]
        for bad in ("not-a-trace-id", "abc", "g" * 32, "0" * 31, "0" * 33):
            response = client.get(f"/api/traces/{bad}")
            assert response.status_code == 400, (bad, response.text)
            assert "32 hex" in response.json()["detail"]
        missing = client.get("/api/objects/ticket/TCK-NEVER-SEEN/spans")
        assert missing.status_code == 404, missing.text


def test_link_covers_descendants_not_ancestors(srv: ServerProcess) -> None:
    """A batch agent's 'process queue' root stays out of the ticket's spans; the handling subtree is in."""
    trace_id = os.urandom(16)
    t0 = recent_ns()
    queue = make_span("process queue", {"gen_ai.operation.name": "invoke_agent"}, trace_id=trace_id, start_ns=t0)
    handle_a = make_span(
        "handle ticket", {"flightrec.object.type": "ticket", "flightrec.object.id": "TCK-7001"},
        trace_id=trace_id, parent=queue.span_id, start_ns=t0 + 10,
    )
    chat_a = make_span("chat", {"gen_ai.operation.name": "chat"}, trace_id=trace_id, parent=handle_a.span_id,
                       start_ns=t0 + 20)
    tool_a = make_span("tool", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "refund"},
                       trace_id=trace_id, parent=chat_a.span_id, start_ns=t0 + 30)
    handle_b = make_span(
        "handle ticket", {"ticket.id": "TCK-7002"}, trace_id=trace_id, parent=queue.span_id, start_ns=t0 + 40
    )
    chat_b = make_span("chat", {"gen_ai.operation.name": "chat"}, trace_id=trace_id, parent=handle_b.span_id,
                       start_ns=t0 + 50)
    # children first, in separate requests, as real exporters deliver them
    for batch in ([tool_a, chat_b], [chat_a], [handle_a, handle_b], [queue]):
        assert post_request(srv, make_request(batch)).status_code == 200
    srv.wait_drained()

    ticket_a = {span["span_id"] for span in object_spans(srv, "ticket", "TCK-7001")}
    assert ticket_a == {handle_a.span_id.hex(), chat_a.span_id.hex(), tool_a.span_id.hex()}
    ticket_b = {span["span_id"] for span in object_spans(srv, "ticket", "TCK-7002")}
    assert ticket_b == {handle_b.span_id.hex(), chat_b.span_id.hex()}
    assert queue.span_id.hex() not in ticket_a | ticket_b
    assert len(trace_spans(srv, trace_id.hex())) == 6


# -- the OTLP spec's JSON example ------------------------------------------------------------

# opentelemetry-proto examples/trace.json, verbatim.
SPEC_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {
                        "name": "my.library",
                        "version": "1.0.0",
                        "attributes": [
                            {"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}
                        ],
                    },
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": 1544712660000000000,
                            "endTimeUnixNano": 1544712661000000000,
                            "kind": 2,
                            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
                        }
                    ],
                }
            ],
        }
    ]
}


def check_spec_example_stored(server: ServerProcess) -> None:
    spans = trace_spans(server, "5b8efff798038103d269b633813fc60c")
    assert len(spans) == 1
    span = spans[0]
    assert span["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert span["span_id"] == "eee19b7ec3c1b174"
    assert span["parent_span_id"] == "eee19b7ec3c1b173"
    assert span["name"] == "I'm a server span"
    assert span["kind"] == "Server"
    assert span["service"] == "my.service"
    assert span["attributes"] == {"my.span.attr": "some value"}
    assert span["start_time"].startswith("2018-12-13T14:51:00")
    assert span["duration_ms"] == pytest.approx(1000.0)


@pytest.mark.slow
def test_otlp_spec_json_example(make_server) -> None:
    """The spec's example, verbatim. Its span is from 2018, so this server keeps spans forever."""
    server = make_server(env={"FLIGHTREC_RETENTION_DAYS": "0"}, name="keep-forever")
    response = post(server, json.dumps(SPEC_EXAMPLE).encode(), JSON)
    reply = export_response(response, as_json=True)
    assert reply.partial_success.rejected_spans == 0
    server.wait_drained()
    check_spec_example_stored(server)
    time.sleep(1.0)  # and it stays
    check_spec_example_stored(server)


def test_otlp_spec_json_example_default_server_is_honest(srv: ServerProcess) -> None:
    """On a default server (180-day retention) the 2018 span is older than retention.

    Acknowledged means durable: the answer must either report the span as rejected
    (partial_success) or the span must be queryable. Silently dropping it is a lie.
    """
    before = stats(srv)
    response = post(srv, json.dumps(SPEC_EXAMPLE).encode(), JSON)
    reply = export_response(response, as_json=True)
    srv.wait_drained()
    time.sleep(1.0)  # give a TTL merge the chance to run
    if reply.partial_success.rejected_spans:
        assert reply.partial_success.rejected_spans == 1
        assert reply.partial_success.error_message
        assert stats(srv)["rejected_spans"] - before["rejected_spans"] == 1
    else:
        check_spec_example_stored(srv)
        assert stats(srv)["spans"] - before["spans"] == 1


def test_otlp_json_string_ints_enum_names_and_unknown_fields(srv: ServerProcess) -> None:
    """64-bit ints as strings, enums as ints or names, and unknown keys at every level are accepted."""
    body = copy.deepcopy(SPEC_EXAMPLE)
    trace_id = os.urandom(16).hex().upper()
    resource_spans = body["resourceSpans"][0]
    resource_spans["futureResourceField"] = {"x": 1}
    resource_spans["resource"]["unknownResourceKey"] = "ignored"
    resource_spans["scopeSpans"][0]["scope"]["notInTheSchema"] = [1, 2, 3]
    resource_spans["scopeSpans"][0]["someNewScopeSpansField"] = True
    body["topLevelUnknown"] = "ignored"
    span = resource_spans["scopeSpans"][0]["spans"][0]
    now_ns = time.time_ns()
    span.update(
        traceId=trace_id,
        startTimeUnixNano=str(now_ns),
        endTimeUnixNano=str(now_ns + 2_000_000),
        brandNewSpanField={"nested": "value"},
    )
    span["attributes"].append({"key": "big", "value": {"intValue": "9007199254740993"}, "unknownKvField": 0})
    second = copy.deepcopy(span)
    second.update(spanId=os.urandom(8).hex(), kind="SPAN_KIND_CLIENT", name="client span")
    second["status"] = {"code": 2, "message": "boom"}
    resource_spans["scopeSpans"][0]["spans"].append(second)

    response = post(srv, json.dumps(body).encode(), JSON)
    reply = export_response(response, as_json=True)
    assert reply.partial_success.rejected_spans == 0
    srv.wait_drained()

    spans = {span["name"]: span for span in trace_spans(srv, trace_id.lower())}
    assert set(spans) == {"I'm a server span", "client span"}
    server_span, client_span = spans["I'm a server span"], spans["client span"]
    assert server_span["kind"] == "Server" and client_span["kind"] == "Client"
    assert client_span["status_code"] == "Error" and client_span["status_message"] == "boom"
    assert server_span["attributes"]["big"] == "9007199254740993"
    assert server_span["duration_ms"] == pytest.approx(2.0)


# -- bad input ---------------------------------------------------------------------------------


def test_bad_bodies_are_400_with_a_reason_and_harm_nothing(srv: ServerProcess) -> None:
    known: dict[str, set[str]] = {}
    assert_unharmed(srv, known)
    refused_before = _health(srv)["intake"]["refused_requests"]

    # undecodable protobuf: a length-delimited field claiming far more bytes than follow
    junk = b"\x0a\xff\xff\xff\x7f" + os.urandom(64)
    response = post(srv, junk, PROTOBUF)
    assert response.status_code == 400, response.content
    status = rpc_status(response, as_json=False)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "protobuf" in status.message
    assert_unharmed(srv, known)

    response = post(srv, b'{"resourceSpans": [', JSON)
    assert response.status_code == 400, response.content
    assert "JSON" in rpc_status(response, as_json=True).message
    assert_unharmed(srv, known)

    response = post(srv, b"[1, 2, 3]", JSON)
    assert response.status_code == 400, response.content
    assert "resourceSpans" in rpc_status(response, as_json=True).message
    assert_unharmed(srv, known)

    good, _, _ = good_trace(2)
    response = post(srv, b"this is not gzip", {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 400, response.content
    assert "gzip" in rpc_status(response, as_json=False).message
    truncated = gzip.compress(good.SerializeToString())[:-12]
    response = post(srv, truncated, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 400, response.content
    assert "gzip" in rpc_status(response, as_json=False).message
    assert_unharmed(srv, known)

    assert _health(srv)["intake"]["refused_requests"] - refused_before == 5


def test_unsupported_media_is_415(srv: ServerProcess) -> None:
    known: dict[str, set[str]] = {}
    request, _, _ = good_trace(2)
    response = post(srv, b"hello", {"Content-Type": "text/plain"})
    assert response.status_code == 415, response.content
    message = rpc_status(response, as_json=True).message
    assert "text/plain" in message and "Content-Type" in message
    assert_unharmed(srv, known)

    response = post(srv, request.SerializeToString(), {**PROTOBUF, "Content-Encoding": "br"})
    assert response.status_code == 415, response.content
    message = rpc_status(response, as_json=False).message
    assert "br" in message and "Content-Encoding" in message
    assert_unharmed(srv, known)


def _health(server: ServerProcess) -> dict:
    return httpx.get(f"{server.url}/api/health", timeout=10).json()


def big_request(min_bytes: int) -> ExportTraceServiceRequest:
    """A valid request whose encoding is larger than min_bytes."""
    trace_id = os.urandom(16)
    return make_request([make_span("big", {"payload": "x" * min_bytes}, trace_id=trace_id, start_ns=recent_ns())])


@pytest.mark.slow
def test_oversized_bodies_are_413(make_server) -> None:
    server = make_server(env={"FLIGHTREC_MAX_BODY_BYTES": str(MAX_BODY)}, name="limits")
    known: dict[str, set[str]] = {}
    assert_unharmed(server, known)

    # (a) a big plain body
    body = big_request(MAX_BODY + 50_000).SerializeToString()
    response = post(server, body, PROTOBUF)
    assert response.status_code == 413, response.content
    assert str(MAX_BODY) in rpc_status(response, as_json=False).message
    assert_unharmed(server, known)

    # (a') the same without a Content-Length (chunked): the stream is cut at the limit
    response = httpx.post(
        f"{server.url}/v1/traces", content=iter([body[i : i + 16384] for i in range(0, len(body), 16384)]),
        headers=PROTOBUF, timeout=30,
    )
    assert response.status_code == 413, response.content
    assert str(MAX_BODY) in rpc_status(response, as_json=False).message
    assert_unharmed(server, known)

    # (b) a gzip bomb: a small body that inflates past the limit
    bomb = gzip.compress(big_request(20 * MAX_BODY).SerializeToString())
    assert len(bomb) < MAX_BODY // 10
    response = post(server, bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 413, response.content
    message = rpc_status(response, as_json=False).message
    assert "decompressed" in message and str(MAX_BODY) in message
    # the same as JSON answers in JSON
    json_bomb = gzip.compress(json.dumps({"resourceSpans": [], "pad": "y" * (5 * MAX_BODY)}).encode())
    response = post(server, json_bomb, {**JSON, "Content-Encoding": "gzip"})
    assert response.status_code == 413, response.content
    assert str(MAX_BODY) in rpc_status(response, as_json=True).message
    assert_unharmed(server, known)

    # just under the limit, compressed, is fine
    under = big_request(MAX_BODY - 5_000)
    assert len(under.SerializeToString()) < MAX_BODY
    response = post(server, gzip.compress(under.SerializeToString()), {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.content


@pytest.mark.slow
def test_ingest_tokens_401(make_server) -> None:
    server = make_server(env={"FLIGHTREC_INGEST_TOKENS": "tok-a,tok-b"}, name="tokens")
    known: dict[str, set[str]] = {}
    request, trace_id, _ = good_trace(2)

    response = post_request(server, request)
    assert response.status_code == 401, response.content
    assert "token" in rpc_status(response, as_json=False).message
    response = post(server, json.dumps(SPEC_EXAMPLE).encode(), JSON)
    assert response.status_code == 401, response.content
    assert "token" in rpc_status(response, as_json=True).message
    for wrong in ("Bearer tok-c", "Bearer tok-a-but-longer", "Basic dG9rLWE=", "Bearer", "tok-a"):
        response = post_request(server, request, Authorization=wrong)
        assert response.status_code == 401, (wrong, response.content)
        rpc_status(response, as_json=False)
    server.wait_drained()
    with server.client() as client:
        assert client.get(f"/api/traces/{trace_id}").status_code == 404

    assert_unharmed(server, known, Authorization="Bearer tok-b")
    assert_unharmed(server, known, Authorization="Bearer tok-a")
    assert stats(server)["spans"] == 6


def test_partial_success_protobuf(srv: ServerProcess) -> None:
    before = stats(srv)
    trace_id = os.urandom(16)
    good = [make_span(f"good-{i}", trace_id=trace_id, start_ns=recent_ns() + i) for i in range(3)]
    bad_span_id = make_span("short-span-id", trace_id=trace_id, span_id=os.urandom(4))
    bad_trace_id = make_span("long-trace-id", trace_id=os.urandom(10))
    request = make_request(good[:2] + [bad_span_id] + good[2:] + [bad_trace_id])

    reply = export_response(post_request(srv, request))
    assert reply.partial_success.rejected_spans == 2
    message = reply.partial_success.error_message
    assert "span_id" in message and "trace_id" in message
    assert "short-span-id" in message and "long-trace-id" in message
    srv.wait_drained()

    assert {span["span_id"] for span in trace_spans(srv, trace_id.hex())} == {s.span_id.hex() for s in good}
    after = stats(srv)
    assert after["rejected_spans"] - before["rejected_spans"] == 2
    assert after["spans"] - before["spans"] == 3
    assert_unharmed(srv, {})


def test_partial_success_json(srv: ServerProcess) -> None:
    before = stats(srv)
    trace_id = os.urandom(16).hex()
    t0 = recent_ns()
    spans = [
        {"traceId": trace_id, "spanId": os.urandom(8).hex(), "name": f"good-{i}",
         "startTimeUnixNano": str(t0 + i), "endTimeUnixNano": str(t0 + 1000)}
        for i in range(3)
    ]
    spans.insert(1, {"traceId": trace_id, "spanId": "zzzzzzzzzzzzzzzz", "name": "non-hex",
                     "startTimeUnixNano": str(t0)})
    body = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}

    reply = export_response(post(srv, json.dumps(body).encode(), JSON), as_json=True)
    assert reply.partial_success.rejected_spans == 1
    assert "spanId" in reply.partial_success.error_message and "non-hex" in reply.partial_success.error_message
    srv.wait_drained()

    stored = {span["name"] for span in trace_spans(srv, trace_id)}
    assert stored == {"good-0", "good-1", "good-2"}
    after = stats(srv)
    assert after["rejected_spans"] - before["rejected_spans"] == 1
    assert after["spans"] - before["spans"] == 3


# -- backpressure -------------------------------------------------------------------------------


@pytest.mark.slow
def test_request_bigger_than_the_backlog_is_413_not_503_forever(make_server) -> None:
    server = make_server(env={"FLIGHTREC_MAX_BACKLOG_SPANS": "5"}, name="backlog")
    big, big_trace, _ = good_trace(10)
    response = post_request(server, big)
    assert response.status_code == 413, response.content
    assert response.headers.get("retry-after") is None
    status = rpc_status(response, as_json=False)
    assert "10 spans" in status.message and "backlog" in status.message and "smaller batches" in status.message

    small, small_trace, small_ids = good_trace(3)
    assert post_request(server, small).status_code == 200
    server.wait_drained()
    assert {span["span_id"] for span in trace_spans(server, small_trace)} == small_ids
    with server.client() as client:
        assert client.get(f"/api/traces/{big_trace}").status_code == 404
    assert stats(server)["spans"] == 3


def test_backlog_full_is_503_with_retry_after(store, tmp_path: Path) -> None:
    """With nothing draining the WAL, a batch that would overshoot the bound is refused as retryable."""
    wal = WriteAheadLog(WalConfig(directory=tmp_path / "wal", max_backlog_spans=5))
    pipeline = IngestPipeline(IntakeConfig(retry_after_s=3), wal, store)
    first, _, _ = good_trace(3)
    assert pipeline.ingest_body(first.SerializeToString(), "application/x-protobuf", None).accepted == 3
    second, _, _ = good_trace(3)
    with pytest.raises(IngestError) as refused:
        pipeline.ingest_body(second.SerializeToString(), "application/x-protobuf", None)
    response = error_response(refused.value, as_json=False)
    assert response.status_code == 503 and response.headers["retry-after"] == "3"
    status = status_pb2.Status.FromString(response.body)
    assert status.code == 14 and "backlog is full" in status.message  # UNAVAILABLE
    assert wal.backlog_spans == 3
    wal.close()


# -- API token and exposure -----------------------------------------------------------------------


@pytest.mark.slow
def test_api_token(make_server) -> None:
    server = make_server(env={"FLIGHTREC_API_TOKEN": "secret-api-token-0123"}, name="apitoken")
    base = server.url
    response = httpx.get(f"{base}/api/stats", timeout=10)
    assert response.status_code == 401 and "API token" in response.json()["detail"]
    assert response.headers.get("www-authenticate") == "Bearer"
    assert httpx.get(f"{base}/api/stats", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.get(f"{base}/api/stats", headers={"Authorization": "Basic secret-api-token-0123"}, timeout=10).status_code == 401
    assert httpx.get(f"{base}/api/traces/{'a' * 32}", timeout=10).status_code == 401
    assert httpx.get(f"{base}/api/objects/ticket/TCK-1/spans", timeout=10).status_code == 401
    ok = httpx.get(f"{base}/api/stats", headers={"Authorization": "Bearer secret-api-token-0123"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["spans"] == 0
    assert httpx.get(f"{base}/api/health", timeout=10).status_code == 200
    # ingest is governed by ingest tokens, not the API token
    request, trace_id, _ = good_trace(2)
    assert post_request(server, request).status_code == 200
    server.wait_drained()
    assert len(trace_spans(server, trace_id)) == 2


def test_serve_beyond_loopback_requires_api_token(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "FLIGHTREC_API_TOKEN"}
    command = [
        sys.executable, "-m", "flightrec", "serve", "--host", "0.0.0.0", "--data", str(tmp_path / "d"),
        "--http-port", str(free_port()), "--grpc-port", str(free_port()),
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:  # it started serving on 0.0.0.0: the check is missing
        pytest.fail(f"serve --host 0.0.0.0 without an API token kept running: {exc.stdout!r}")
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())
    assert "FLIGHTREC_API_TOKEN" in output, output


# -- resends -------------------------------------------------------------------------------------


def test_resent_request_is_stored_once(srv: ServerProcess) -> None:
    before = stats(srv)
    request, trace_id, span_ids = good_trace(5, **{"flightrec.object.type": "order", "flightrec.object.id": "ORD-77"})
    body = request.SerializeToString()
    assert post(srv, body, PROTOBUF).status_code == 200
    srv.wait_drained()
    time.sleep(0.3)  # the second copy lands in a different WAL segment (another dedup token)
    assert post(srv, body, PROTOBUF).status_code == 200
    assert post(srv, gzip.compress(body), {**PROTOBUF, "Content-Encoding": "gzip"}).status_code == 200
    srv.wait_drained()

    spans = trace_spans(srv, trace_id)
    assert sorted(span["span_id"] for span in spans) == sorted(span_ids)
    assert len(object_spans(srv, "order", "ORD-77")) == 5
    after = stats(srv)
    assert after["spans"] - before["spans"] == 5
    assert after["traces"] - before["traces"] == 1
    assert after["objects"] - before["objects"] == 1
