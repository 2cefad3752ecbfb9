"""Decoding: OTLP/HTTP bodies (protobuf or JSON, maybe gzip) to a validated request.

Invalid spans are removed and counted (OTLP partial success); a body that cannot
be decoded at all raises :class:`IngestError` naming what failed.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import BaseModel, ConfigDict

from collector.errors import ErrorKind, IngestError

PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPES = frozenset({"application/json"})
MAX_REASONS = 5


class DecodedRequest(BaseModel):
    """A request holding only valid spans, its WAL payload, and what was rejected."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    request: ExportTraceServiceRequest
    payload: bytes
    accepted: int
    rejected: int
    reasons: list[str]

    @property
    def rejection_message(self) -> str:
        if not self.rejected:
            return ""
        more = self.rejected - len(self.reasons)
        tail = f"; and {more} more" if more > 0 else ""
        return f"rejected {self.rejected} invalid span(s): " + "; ".join(self.reasons) + tail


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding, never producing more than ``limit`` bytes (stops gzip bombs)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise IngestError(ErrorKind.TOO_LARGE, f"body is {len(body)} bytes; the limit is {limit} bytes")
        return body
    if encoding not in ("gzip", "deflate"):
        raise IngestError(
            ErrorKind.UNSUPPORTED_MEDIA, f"Content-Encoding {encoding!r} is not supported; use gzip or none"
        )
    inflater = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise IngestError(ErrorKind.BAD_REQUEST, f"body is not valid {encoding}: {exc}") from exc
    if len(out) > limit:
        raise IngestError(ErrorKind.TOO_LARGE, f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise IngestError(ErrorKind.BAD_REQUEST, f"body is truncated {encoding} data")
    return out


def _span_problem(span: Any, oldest_ns: int) -> str | None:
    """What makes a span invalid, or None."""
    if len(span.trace_id) != 16:
        return f"trace_id must be 16 bytes, got {len(span.trace_id)}"
    if not any(span.trace_id):
        return "trace_id is all zeros"
    if len(span.span_id) != 8:
        return f"span_id must be 8 bytes, got {len(span.span_id)}"
    if not any(span.span_id):
        return "span_id is all zeros"
    if len(span.parent_span_id) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes, got {len(span.parent_span_id)}"
    if span.start_time_unix_nano == 0:
        return "start_time_unix_nano is missing"
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        return "end_time_unix_nano is before start_time_unix_nano"
    if span.start_time_unix_nano < oldest_ns:
        return "start time is older than the retention period, so it would be deleted at once"
    return None


def validate_request(request: ExportTraceServiceRequest, reasons: list[str], oldest_ns: int = 0) -> tuple[int, int]:
    """Remove invalid spans in place; return (accepted, rejected) and append reasons.

    ``oldest_ns``: spans starting before it fall outside retention and are rejected.
    """
    accepted = rejected = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            bad: list[int] = []
            for index, span in enumerate(scope_spans.spans):
                problem = _span_problem(span, oldest_ns)
                if problem is None:
                    accepted += 1
                    continue
                bad.append(index)
                if len(reasons) < MAX_REASONS:
                    reasons.append(f"span {span.name!r}: {problem}")
            for index in reversed(bad):
                del scope_spans.spans[index]
            rejected += len(bad)
    return accepted, rejected


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise IngestError(
            ErrorKind.BAD_REQUEST, f"body is not a valid protobuf ExportTraceServiceRequest: {exc}"
        ) from exc
    return request


def _hex_to_base64(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a hex string")
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError as exc:
        raise ValueError(f"{field} is not hex: {value[:40]!r}") from exc


def _pick(obj: dict, camel: str, snake: str) -> tuple[str, Any]:
    return (camel, obj[camel]) if camel in obj else (snake, obj.get(snake))


def _convert_ids(obj: dict, fields: tuple[tuple[str, str], ...]) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping expects base64."""
    for camel, snake in fields:
        key, value = _pick(obj, camel, snake)
        if value not in (None, ""):
            obj[key] = _hex_to_base64(value, camel)


SPAN_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
LINK_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"))


def _list_field(obj: dict, camel: str, snake: str, where: str) -> list:
    _, value = _pick(obj, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise IngestError(ErrorKind.BAD_REQUEST, f"{where}.{camel} must be an array")
    return value


def decode_json(body: bytes, reasons: list[str]) -> tuple[ExportTraceServiceRequest, int]:
    """Parse OTLP/JSON; spans with malformed ids are dropped and counted, not fatal."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(ErrorKind.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise IngestError(ErrorKind.BAD_REQUEST, "body must be a JSON object with resourceSpans")
    dropped = 0
    for r_index, resource_spans in enumerate(_list_field(document, "resourceSpans", "resource_spans", "body")):
        where = f"resourceSpans[{r_index}]"
        if not isinstance(resource_spans, dict):
            raise IngestError(ErrorKind.BAD_REQUEST, f"{where} must be an object")
        for s_index, scope_spans in enumerate(_list_field(resource_spans, "scopeSpans", "scope_spans", where)):
            scope_where = f"{where}.scopeSpans[{s_index}]"
            if not isinstance(scope_spans, dict):
                raise IngestError(ErrorKind.BAD_REQUEST, f"{scope_where} must be an object")
            spans = _list_field(scope_spans, "spans", "spans", scope_where)
            kept = []
            for span in spans:
                if not isinstance(span, dict):
                    raise IngestError(ErrorKind.BAD_REQUEST, f"{scope_where}.spans holds a non-object")
                try:
                    _convert_ids(span, SPAN_ID_FIELDS)
                    for link in span.get("links") or []:
                        if isinstance(link, dict):
                            _convert_ids(link, LINK_ID_FIELDS)
                except ValueError as exc:
                    dropped += 1
                    if len(reasons) < MAX_REASONS:
                        reasons.append(f"span {span.get('name', '')!r}: {exc}")
                    continue
                kept.append(span)
            if spans:
                scope_spans["spans"] = kept
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise IngestError(ErrorKind.BAD_REQUEST, f"body is not a valid OTLP/JSON trace request: {exc}") from exc
    return request, dropped


def decode_body(body: bytes, content_type: str | None, oldest_ns: int = 0) -> DecodedRequest:
    """Decode and validate an (already decompressed) OTLP/HTTP body."""
    kind = media_type(content_type)
    reasons: list[str] = []
    if kind in PROTOBUF_TYPES:
        request, dropped = decode_protobuf(body), 0
    elif kind in JSON_TYPES:
        request, dropped = decode_json(body, reasons)
    else:
        raise IngestError(
            ErrorKind.UNSUPPORTED_MEDIA,
            f"Content-Type {content_type!r} is not supported; use application/x-protobuf or application/json",
        )
    original = body if kind in PROTOBUF_TYPES else None
    accepted, rejected = validate_request(request, reasons, oldest_ns)
    rejected += dropped
    payload = original if original is not None and rejected == 0 else request.SerializeToString()
    return DecodedRequest(request=request, payload=payload, accepted=accepted, rejected=rejected, reasons=reasons)
