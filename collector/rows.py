"""Rows as received: an OTLP span (any instrumentation) in, one otel_traces row out.

The columns are the OpenTelemetry Collector ClickHouse exporter's, plus the span's identity
hash. Nothing here reads what attributes mean: the engine derives agents, models, costs and
links from the stored row (``store/derive.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from flightrec.store.models import SpanBatch, SpanRow

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")


def any_value_to_python(value: AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value (arrays and maps recursively)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [any_value_to_python(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def any_value_to_str(value: AnyValue) -> str:
    """An AnyValue as the string the otel_traces Map columns hold (JSON for arrays and maps)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return repr(value.double_value)
    if kind is None:
        return ""
    return json.dumps(any_value_to_python(value), separators=(",", ":"), ensure_ascii=False)


def attributes_to_dict(attributes: Any) -> dict[str, str]:
    """Repeated KeyValue as a string map (strings, the common case, read directly: the hot path of ingest)."""
    out: dict[str, str] = {}
    for kv in attributes:
        value = kv.value
        text = value.string_value
        out[kv.key] = text if text else any_value_to_str(value)
    return out


NO_EVENTS: tuple[list, ...] = ([], [], [])
NO_LINKS: tuple[list, ...] = ([], [], [], [])


def _events(events: Any) -> tuple[list, ...]:
    return (
        [event.time_unix_nano for event in events],
        [event.name for event in events],
        [attributes_to_dict(event.attributes) for event in events],
    )


def _links(links: Any) -> tuple[list, ...]:
    return (
        [link.trace_id.hex() for link in links],
        [link.span_id.hex() for link in links],
        [link.trace_state for link in links],
        [attributes_to_dict(link.attributes) for link in links],
    )


def span_hash(scope_hash: "hashlib._Hash", span: Any) -> int:
    """A span's identity check: its resource, scope and span bytes as received, hashed (never 0)."""
    digest = scope_hash.copy()
    digest.update(span.SerializeToString())
    return int.from_bytes(digest.digest(), "little") or 1


class RowBuilder:
    """Turns decoded OTLP requests into otel_traces rows, as received."""

    def span_row(self, span: Any, resource: dict[str, str], scope_name: str, scope_version: str,
                 content_hash: int = 0) -> SpanRow:
        """One span as a store row (``SPAN_COLUMN_NAMES`` order); ``content_hash`` is :func:`span_hash`."""
        start = span.start_time_unix_nano
        end = max(span.end_time_unix_nano, start)
        return (
            start,
            span.trace_id.hex(),
            span.span_id.hex(),
            span.parent_span_id.hex(),
            span.trace_state,
            span.name,
            SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else "Unspecified",
            resource.get("service.name", ""),
            resource,
            scope_name,
            scope_version,
            attributes_to_dict(span.attributes),
            end - start,
            STATUS_CODES[span.status.code] if 0 <= span.status.code < len(STATUS_CODES) else "Unset",
            span.status.message,
            *(_events(span.events) if span.events else NO_EVENTS),
            *(_links(span.links) if span.links else NO_LINKS),
            content_hash,
        )

    def request_rows(self, request: ExportTraceServiceRequest, batch: SpanBatch | None = None) -> SpanBatch:
        """Every span of a (validated) request appended to a batch."""
        batch = batch or SpanBatch()
        for resource_spans in request.resource_spans:
            resource = attributes_to_dict(resource_spans.resource.attributes)
            resource_hash = hashlib.blake2b(resource_spans.resource.SerializeToString(), digest_size=8)
            for scope_spans in resource_spans.scope_spans:
                scope_name, scope_version = scope_spans.scope.name, scope_spans.scope.version
                scope_hash = resource_hash.copy()
                scope_hash.update(scope_spans.scope.SerializeToString())
                for span in scope_spans.spans:
                    batch.span_rows.append(
                        self.span_row(span, resource, scope_name, scope_version, span_hash(scope_hash, span))
                    )
        return batch
