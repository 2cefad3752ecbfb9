"""Log records (OTLP /v1/logs) as otel_logs rows, the Collector exporter's columns; no semantics here.

GenAI instrumentations send their events (messages, choices, tool calls) as log records that
carry the trace and span ids of the span they belong to; those ids are kept as hex, like the
spans', so a story joins them by id when it reads.
"""

from __future__ import annotations

from flightrec.collector.rows import any_value_to_str, attributes_to_dict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)


def log_rows(request: ExportLogsServiceRequest) -> list[tuple]:
    """Every (validated) log record of a request, in ``LOG_COLUMN_NAMES`` order."""
    rows: list[tuple] = []
    for resource_logs in request.resource_logs:
        resource = attributes_to_dict(resource_logs.resource.attributes)
        service = resource.get("service.name", "")
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attributes = attributes_to_dict(scope.attributes)
            for record in scope_logs.log_records:
                attributes = attributes_to_dict(record.attributes)
                rows.append((
                    record.time_unix_nano or record.observed_time_unix_nano,
                    record.trace_id.hex(),
                    record.span_id.hex(),
                    record.flags & 0xFF,
                    record.severity_text,
                    max(0, min(record.severity_number, 255)),
                    service,
                    any_value_to_str(record.body),
                    resource_logs.schema_url,
                    resource,
                    scope_logs.schema_url,
                    scope.name,
                    scope.version,
                    scope_attributes,
                    attributes,
                    record.event_name or attributes.get("event.name", ""),
                ))
    return rows
