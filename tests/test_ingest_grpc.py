"""OTLP/gRPC ingest against a real ``flightrec serve`` subprocess.

The real OpenTelemetry gRPC exporter, ingest tokens in metadata, partial success,
backpressure with google.rpc.RetryInfo in the status details, and gzip channels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flightrec.collector import IngestPipeline, IntakeConfig, WalConfig, WriteAheadLog
from flightrec.collector.grpc_server import GrpcReceiver
from tests.conftest import ServerProcess
from tests.otlp_helpers import make_request, make_span


def recent_ns() -> int:
    return time.time_ns() - 60 * 1_000_000_000


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("ingest_grpc") / "srv")
    server.start()
    yield server
    server.stop()


def target(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.grpc_port}"


def stub(server: ServerProcess, compression: grpc.Compression | None = None) -> tuple[grpc.Channel, TraceServiceStub]:
    channel = grpc.insecure_channel(target(server), compression=compression)
    return channel, TraceServiceStub(channel)


def export(server: ServerProcess, request: ExportTraceServiceRequest, metadata=None, compression=None):
    channel, client = stub(server, compression)
    try:
        return client.Export(request, metadata=metadata, timeout=20)
    finally:
        channel.close()


def export_error(server: ServerProcess, request: ExportTraceServiceRequest, metadata=None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        export(server, request, metadata)
    return caught.value


def good_trace(n: int = 3) -> tuple[ExportTraceServiceRequest, str, set[str]]:
    trace_id = os.urandom(16)
    root = make_span("root", trace_id=trace_id, start_ns=recent_ns())
    spans = [root] + [
        make_span(f"child-{i}", trace_id=trace_id, parent=root.span_id, start_ns=root.start_time_unix_nano + i)
        for i in range(1, n)
    ]
    return make_request(spans), trace_id.hex(), {span.span_id.hex() for span in spans}


def trace_span_ids(server: ServerProcess, trace_id: str) -> set[str] | None:
    with server.client() as client:
        response = client.get(f"/api/traces/{trace_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return {span["span_id"] for span in response.json()["spans"]}


def stats(server: ServerProcess) -> dict[str, int]:
    with server.client() as client:
        return client.get("/api/stats").json()


def sdk_spans(ticket: str):
    """Real SDK spans (captured in memory) of a small agent workflow."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.ingest_grpc")
    with tracer.start_as_current_span(
        "invoke_agent grpc-agent",
        attributes={"gen_ai.operation.name": "invoke_agent", "flightrec.object.type": "ticket",
                    "flightrec.object.id": ticket},
    ):
        with tracer.start_as_current_span(
            "chat", attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
        ):
            with tracer.start_as_current_span(
                "execute_tool search", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
            ):
                pass
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert len(spans) == 3
    return spans


def check_sdk_spans_stored(server: ServerProcess, spans, ticket: str) -> None:
    trace_id = format(spans[0].context.trace_id, "032x")
    expected = {format(span.context.span_id, "016x") for span in spans}
    assert trace_span_ids(server, trace_id) == expected
    with server.client() as client:
        response = client.get(f"/api/objects/ticket/{ticket}/spans")
    assert response.status_code == 200, response.text
    stored = {span["span_id"]: span for span in response.json()["spans"]}
    assert set(stored) == expected
    assert sorted(span["operation"] for span in stored.values()) == ["agent", "llm", "tool"]
    assert {span["agent"] for span in stored.values()} == {"grpc-agent"}


# -- the real exporter ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compression", "ticket"), [(None, "TCK-G1"), (grpc.Compression.Gzip, "TCK-G2")], ids=["plain", "gzip"]
)
def test_sdk_grpc_exporter(srv: ServerProcess, compression, ticket: str) -> None:
    before = stats(srv)
    spans = sdk_spans(ticket)
    exporter = OTLPSpanExporter(endpoint=srv.grpc_url, insecure=True, compression=compression, timeout=20)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    srv.wait_drained()
    check_sdk_spans_stored(srv, spans, ticket)
    after = stats(srv)
    assert (after["spans"] - before["spans"], after["traces"] - before["traces"]) == (3, 1)


def test_raw_stub_gzip_channel(srv: ServerProcess) -> None:
    request, trace_id, span_ids = good_trace(4)
    reply = export(srv, request, compression=grpc.Compression.Gzip)
    assert not reply.HasField("partial_success")
    srv.wait_drained()
    assert trace_span_ids(srv, trace_id) == span_ids


def test_undecodable_message_is_invalid_argument(srv: ServerProcess) -> None:
    channel = grpc.insecure_channel(target(srv))
    try:
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\x0a\xff\xff\xff\x7f" + os.urandom(32), timeout=20)
    finally:
        channel.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "protobuf" in caught.value.details()
    # and the server is unharmed
    request, trace_id, span_ids = good_trace(2)
    export(srv, request)
    srv.wait_drained()
    assert trace_span_ids(srv, trace_id) == span_ids


# -- ingest tokens -------------------------------------------------------------------------------


@pytest.mark.slow
def test_grpc_ingest_tokens(make_server) -> None:
    server = make_server(env={"FLIGHTREC_INGEST_TOKENS": "tok-a,tok-b"}, name="tokens")
    request, trace_id, _ = good_trace(2)

    error = export_error(server, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "token" in error.details()
    for wrong in ("Bearer tok-c", "Basic tok-a", "tok-a"):
        error = export_error(server, request, metadata=[("authorization", wrong)])
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, wrong
    server.wait_drained()
    assert trace_span_ids(server, trace_id) is None

    # the real exporter with the token in its headers
    spans = sdk_spans("TCK-G3")
    exporter = OTLPSpanExporter(
        endpoint=server.grpc_url, insecure=True, headers={"authorization": "Bearer tok-a"}, timeout=20
    )
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    # ... and without it the exporter fails (UNAUTHENTICATED is not retried)
    exporter = OTLPSpanExporter(endpoint=server.grpc_url, insecure=True, timeout=5)
    try:
        assert exporter.export(sdk_spans("TCK-G4")) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()

    good, good_id, good_ids = good_trace(3)
    export(server, good, metadata=[("authorization", "Bearer tok-b")])
    server.wait_drained()
    check_sdk_spans_stored(server, spans, "TCK-G3")
    assert trace_span_ids(server, good_id) == good_ids
    assert stats(server)["spans"] == 6


# -- partial success -----------------------------------------------------------------------------


def test_grpc_partial_success(srv: ServerProcess) -> None:
    before = stats(srv)
    trace_id = os.urandom(16)
    good = [make_span(f"good-{i}", trace_id=trace_id, start_ns=recent_ns() + i) for i in range(3)]
    bad = [
        make_span("short-span-id", trace_id=trace_id, span_id=os.urandom(4), start_ns=recent_ns()),
        make_span("long-trace-id", trace_id=os.urandom(10), start_ns=recent_ns()),
        make_span("zero-span-id", trace_id=trace_id, span_id=bytes(8), start_ns=recent_ns()),
    ]
    reply = export(srv, make_request([bad[0], good[0], bad[1], good[1], bad[2], good[2]]))
    assert reply.partial_success.rejected_spans == 3
    message = reply.partial_success.error_message
    assert "span_id" in message and "trace_id" in message
    srv.wait_drained()
    assert trace_span_ids(srv, trace_id.hex()) == {span.span_id.hex() for span in good}
    after = stats(srv)
    assert after["rejected_spans"] - before["rejected_spans"] == 3
    assert after["spans"] - before["spans"] == 3


# -- backpressure --------------------------------------------------------------------------------


def test_grpc_backlog_full_is_unavailable_with_retry_info(store, tmp_path) -> None:
    """With nothing draining the WAL, a batch that would overshoot the bound is UNAVAILABLE + RetryInfo."""
    wal = WriteAheadLog(WalConfig(directory=tmp_path / "wal", max_backlog_spans=5))
    receiver = GrpcReceiver(IngestPipeline(IntakeConfig(), wal, store), "127.0.0.1", 0)
    receiver.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{receiver.port}")
        stub = TraceServiceStub(channel)
        stub.Export(good_trace(3)[0], timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Export(good_trace(3)[0], timeout=10)
        channel.close()
    finally:
        receiver.shutdown()
        wal.close()
    error = caught.value
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "backlog" in error.details()
    details = [value for key, value in (error.trailing_metadata() or ()) if key == "grpc-status-details-bin"]
    assert details, f"no grpc-status-details-bin in {error.trailing_metadata()!r}"
    status = status_pb2.Status.FromString(details[0])
    assert status.code == error.code().value[0]
    assert status.message == error.details()
    retry = [item for item in status.details if item.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert info.retry_delay.ToTimedelta().total_seconds() > 0


@pytest.mark.slow
def test_grpc_request_bigger_than_the_backlog_is_refused_for_good(make_server) -> None:
    server = make_server(env={"FLIGHTREC_MAX_BACKLOG_SPANS": "5"}, name="backlog")
    big, big_trace, _ = good_trace(10)
    error = export_error(server, big)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # not retryable: it can never fit
    assert "10 spans" in error.details() and "backlog" in error.details()

    small, small_trace, small_ids = good_trace(3)
    export(server, small)
    server.wait_drained()
    assert trace_span_ids(server, small_trace) == small_ids
    assert trace_span_ids(server, big_trace) is None
    health = httpx.get(f"{server.url}/api/health", timeout=10).json()
    assert health["intake"]["refused_requests"] >= 1
