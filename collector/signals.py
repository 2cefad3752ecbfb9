"""The OTLP signals intake takes: their request and response shapes, and the log and metric checks.

Spans and log records go through the WAL to the store; metric data points are counted and
acknowledged, so the default exporters of instrumentations that send all three stay quiet.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from flightrec.collector.limits import SpanLimits, keep_valid, time_problem
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from pydantic import BaseModel, ConfigDict


class Signal(str, Enum):
    """The OTLP signals intake accepts: spans and log records are kept, metric points counted."""

    TRACES = "traces"
    LOGS = "logs"
    METRICS = "metrics"


class SignalShape(BaseModel):
    """How one signal's request nests (resource → scope → items) and what its items are called."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    request: type
    response: type
    rejected_field: str  # partial_success's counter of what was rejected
    items_name: str  # in messages: "span", "log record", "data point"
    resources: tuple[str, str]
    scopes: tuple[str, str]
    items: tuple[str, str]


SHAPES: dict[Signal, SignalShape] = {
    Signal.TRACES: SignalShape(request=ExportTraceServiceRequest, response=ExportTraceServiceResponse,
                               rejected_field="rejected_spans", items_name="span",
                               resources=("resourceSpans", "resource_spans"), scopes=("scopeSpans", "scope_spans"),
                               items=("spans", "spans")),
    Signal.LOGS: SignalShape(request=ExportLogsServiceRequest, response=ExportLogsServiceResponse,
                             rejected_field="rejected_log_records", items_name="log record",
                             resources=("resourceLogs", "resource_logs"), scopes=("scopeLogs", "scope_logs"),
                             items=("logRecords", "log_records")),
    Signal.METRICS: SignalShape(request=ExportMetricsServiceRequest, response=ExportMetricsServiceResponse,
                                rejected_field="rejected_data_points", items_name="data point",
                                resources=("resourceMetrics", "resource_metrics"),
                                scopes=("scopeMetrics", "scope_metrics"), items=("metrics", "metrics")),
}


def export_response(signal: Signal, rejected: int, message: str) -> Any:
    """The signal's Export*ServiceResponse, with partial_success when some items were rejected."""
    shape = SHAPES[signal]
    reply = shape.response()
    if rejected:
        setattr(reply.partial_success, shape.rejected_field, rejected)
        reply.partial_success.error_message = message
    return reply


def _log_problem(record: Any, limits: SpanLimits) -> str | None:
    """What makes a log record invalid, or None: ids are optional for logs, but of the right length."""
    if len(record.trace_id) not in (0, 16):
        return f"trace_id must be empty or 16 bytes, got {len(record.trace_id)}"
    if len(record.span_id) not in (0, 8):
        return f"span_id must be empty or 8 bytes, got {len(record.span_id)}"
    moment = record.time_unix_nano or record.observed_time_unix_nano
    if not moment:
        return "time_unix_nano and observed_time_unix_nano are both missing"
    if moment > limits.newest_ns or record.observed_time_unix_nano > limits.newest_ns:
        return time_problem("time_unix_nano", record.time_unix_nano, limits) or time_problem(
            "observed_time_unix_nano", record.observed_time_unix_nano, limits)
    if moment and moment < limits.oldest_ns:
        return "time is older than the retention period, so it would be deleted at once"
    return None


def validate_logs(request: ExportLogsServiceRequest, reasons: list[str], limits: SpanLimits) -> tuple[int, int]:
    """Remove invalid log records in place; return (accepted, rejected) and append reasons."""
    accepted = rejected = 0
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            kept, removed = keep_valid(scope_logs.log_records, lambda record: _log_problem(record, limits),
                                       lambda record, index: f"log record {record.event_name[:200] or index!r}",
                                       reasons)
            accepted, rejected = accepted + kept, rejected + removed
    return accepted, rejected


POINT_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def count_points(request: ExportMetricsServiceRequest, reasons: list[str], limits: SpanLimits) -> tuple[int, int]:
    """Metric data points are counted (and answered as accepted), not kept: (points, 0)."""
    points = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind in POINT_FIELDS:
                    points += len(getattr(metric, kind).data_points)
    return points, 0
