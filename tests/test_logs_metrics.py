"""OTLP logs and metrics from the real OpenTelemetry SDK exporters: logs kept and joined to their
spans (GenAI events fill a span's messages), metric points counted and acknowledged."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import ServerProcess, wait_for

pytestmark = pytest.mark.slow
RESOURCE = Resource.create({"service.name": "refund-agent"})


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("logs") / "srv").start()
    yield server
    server.stop()


def emit_llm_call_with_events(endpoint: str, ticket: str, log_exporter) -> str:
    """A span that names the ticket, with the call's messages sent as GenAI event log records."""
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    logger = logger_provider.get_logger("opentelemetry.instrumentation.openai_v2")
    tracer = tracer_provider.get_tracer("tests")
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "ticket.id": ticket,
    }) as span:
        trace_id = span.get_span_context().trace_id
        logger.emit(LogRecord(event_name="gen_ai.user.message", body={"content": "Refund order 42? It arrived broken."},
                              attributes={"gen_ai.system": "openai"}))
        logger.emit(LogRecord(event_name="gen_ai.choice", body={
            "index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Approve a full refund of 30 EUR."}},
            attributes={"gen_ai.system": "openai"}))
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return f"{trace_id:032x}"


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_genai_event_logs_join_their_span_and_tell_the_story(srv: ServerProcess, transport: str) -> None:
    ticket = f"TCK-LOG-{transport}"
    exporter = (OTLPLogExporter(endpoint=f"{srv.url}/v1/logs") if transport == "http"
                else GrpcLogExporter(endpoint=f"127.0.0.1:{srv.grpc_port}", insecure=True))
    trace_id = emit_llm_call_with_events(srv.url, ticket, exporter)
    with srv.client() as client:
        def joined() -> list[dict]:
            spans = client.get(f"/api/traces/{trace_id}").json().get("spans", [])
            return [s for s in spans if len(s["events"]) == 2]

        wait_for(joined, what="the span with its two event log records")
        [span] = joined()
        assert [event["name"] for event in span["events"]] == ["gen_ai.user.message", "gen_ai.choice"]
        assert span["input_text"] == "Refund order 42? It arrived broken."
        assert span["output_text"] == "Approve a full refund of 30 EUR."
        story = client.get(f"/api/objects/ticket/{ticket}/story").json()
        assert "Approve a full refund of 30 EUR." in str(story)
        health = client.get("/api/health").json()
    assert health["intake"]["accepted_log_records"] >= 2


def test_bad_log_records_are_rejected_with_a_reason(srv: ServerProcess) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(time_unix_nano=time.time_ns(), trace_id=b"\x01" * 3, body={"string_value": "bad id"})
    records.add(time_unix_nano=2**63 + 1, body={"string_value": "beyond the store"})
    records.add(time_unix_nano=time.time_ns(), body={"string_value": "fine, no span"})
    response = httpx.post(f"{srv.url}/v1/logs", content=request.SerializeToString(),
                          headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert response.status_code == 200
    reply = ExportLogsServiceResponse.FromString(response.content)
    assert reply.partial_success.rejected_log_records == 2
    assert "trace_id must be empty or 16 bytes, got 3" in reply.partial_success.error_message
    json_reply = httpx.post(f"{srv.url}/v1/logs", content=b'{"resourceLogs": 5}',
                            headers={"Content-Type": "application/json"}, timeout=30)
    assert json_reply.status_code == 400 and "resourceLogs must be an array" in json_reply.json()["message"]


def test_metrics_from_the_sdk_exporter_are_acknowledged_and_counted(srv: ServerProcess) -> None:
    before = httpx.get(f"{srv.url}/api/health", timeout=10).json()["intake"]["metric_points"]
    exporter = OTLPMetricExporter(endpoint=f"{srv.url}/v1/metrics")
    results = []

    class Recording(OTLPMetricExporter):
        def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):  # noqa: ANN001
            result = exporter.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            results.append(result)
            return result

    reader = PeriodicExportingMetricReader(Recording(endpoint=f"{srv.url}/v1/metrics"), export_interval_millis=60_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("tests")
    meter.create_counter("gen_ai.client.token.usage").add(42, {"gen_ai.token.type": "input"})
    meter.create_histogram("gen_ai.client.operation.duration").record(0.7)
    provider.shutdown()  # flushes: one export
    assert results and all(result.name == "SUCCESS" for result in results)
    after = httpx.get(f"{srv.url}/api/health", timeout=10).json()["intake"]["metric_points"]
    assert after - before == 2
