"""Decoding: OTLP/HTTP bodies (protobuf or JSON, maybe gzip) to a validated request.

Invalid spans are removed and counted (OTLP partial success); a body that cannot
be decoded at all raises :class:`IngestError` naming what failed.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from typing import Any

from flightrec.collector.errors import ErrorKind, IngestError
from flightrec.collector.limits import (
    DEFAULT_MAX_FUTURE_S,
    MAX_REASONS,
    SpanLimits,
    keep_valid,
    time_problem,
)
from flightrec.collector.signals import SHAPES, Signal, count_points, validate_logs
from flightrec.collector.wire import locate_problem
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from pydantic import BaseModel, ConfigDict

__all__ = ["DEFAULT_MAX_FUTURE_S", "DecodedRequest", "Signal", "SpanLimits", "decode_body", "decompress"]

log = logging.getLogger(__name__)

PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPES = frozenset({"application/json"})
class DecodedRequest(BaseModel):
    """A request holding only valid items (spans, log records), its WAL payload, and what was rejected."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    signal: Signal = Signal.TRACES
    request: Any
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
        noun = SHAPES[self.signal].items_name
        return f"rejected {self.rejected} invalid {noun}(s): " + "; ".join(self.reasons) + tail


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


GZIP_MAGIC = b"\x1f\x8b"


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding, never producing more than ``limit`` bytes (stops gzip bombs).

    Concatenated gzip members are one stream (RFC 1952); any other bytes after the
    compressed data are an error rather than silently dropped.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise IngestError(ErrorKind.TOO_LARGE, f"body is {len(body)} bytes; the limit is {limit} bytes")
        return body
    if encoding not in ("gzip", "deflate"):
        raise IngestError(
            ErrorKind.UNSUPPORTED_MEDIA, f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none"
        )
    out: list[bytes] = []
    size, rest, member = 0, body, 0
    while True:
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            chunk = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise IngestError(ErrorKind.BAD_REQUEST, f"body is not valid {encoding} data: {exc}") from exc
        size += len(chunk)
        if size > limit:
            raise IngestError(ErrorKind.TOO_LARGE, f"decompressed body exceeds the limit of {limit} bytes")
        out.append(chunk)
        if not inflater.eof:
            raise IngestError(ErrorKind.BAD_REQUEST, f"body is truncated {encoding} data")
        rest = inflater.unused_data
        member += 1
        if not rest:
            return b"".join(out)
        if encoding != "gzip" or not rest.startswith(GZIP_MAGIC):
            raise IngestError(
                ErrorKind.BAD_REQUEST, f"{len(rest)} bytes follow the end of the {encoding} data (member {member})"
            )


def _span_problem(span: Any, limits: SpanLimits) -> str | None:
    """What makes a span invalid (the field and why), or None. On the request path: fields read once."""
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 16:
        return f"trace_id must be 16 bytes, got {len(trace_id)}"
    if not any(trace_id):
        return "trace_id is all zeros"
    if len(span_id) != 8:
        return f"span_id must be 8 bytes, got {len(span_id)}"
    if not any(span_id):
        return "span_id is all zeros"
    if len(parent) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes, got {len(parent)}"
    start, end, newest = span.start_time_unix_nano, span.end_time_unix_nano, limits.newest_ns
    if start == 0:
        return "start_time_unix_nano is missing"
    if start > newest or end > newest:  # newest never exceeds what the store can hold
        return time_problem("start_time_unix_nano", start, limits) or time_problem("end_time_unix_nano", end, limits)
    if end and end < start:
        return "end_time_unix_nano is before start_time_unix_nano"
    if start < limits.oldest_ns:
        return "start time is older than the retention period, so it would be deleted at once"
    if span.events:
        for index, event in enumerate(span.events):
            if event.time_unix_nano > newest:
                return time_problem(f"events[{index}].time_unix_nano", event.time_unix_nano, limits)
    if span.links:
        for index, link in enumerate(span.links):
            if len(link.trace_id) != 16:
                return f"links[{index}].trace_id must be 16 bytes, got {len(link.trace_id)}"
            if len(link.span_id) != 8:
                return f"links[{index}].span_id must be 8 bytes, got {len(link.span_id)}"
    return None


def validate_request(
    request: ExportTraceServiceRequest, reasons: list[str], limits: SpanLimits | None = None
) -> tuple[int, int]:
    """Remove invalid spans in place; return (accepted, rejected) and append reasons."""
    limits = limits or SpanLimits.now()
    accepted = rejected = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            kept, removed = keep_valid(scope_spans.spans, lambda span: _span_problem(span, limits),
                                       lambda span, _: f"span {span.name[:200]!r}", reasons)
            accepted, rejected = accepted + kept, rejected + removed
    return accepted, rejected


def decode_protobuf(body: bytes, message: type = ExportTraceServiceRequest) -> Any:
    request = message()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        where = locate_problem(body, message.DESCRIPTOR) or str(exc)
        raise IngestError(
            ErrorKind.BAD_REQUEST, f"body is not a valid protobuf {message.__name__}: {where}"
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
        raise IngestError(ErrorKind.BAD_REQUEST, f"{where}.{camel} must be an array, got {type(value).__name__}")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (OTLP/JSON numbers must be finite)")


def _load_json(body: bytes) -> dict:
    try:
        document = json.loads(body, parse_constant=_no_constants)
    except RecursionError:
        raise IngestError(ErrorKind.BAD_REQUEST, "body is nested too deeply to be an OTLP/JSON request") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(ErrorKind.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise IngestError(ErrorKind.BAD_REQUEST, "body must be a JSON object with resourceSpans")
    return document


def _prepare_json_span(span: Any, where: str) -> None:
    """Hex ids to base64 for protobuf's JSON mapping; ValueError names a malformed id."""
    if not isinstance(span, dict):
        raise IngestError(ErrorKind.BAD_REQUEST, f"{where} must be an object, got {type(span).__name__}")
    _convert_ids(span, SPAN_ID_FIELDS)
    for l_index, link in enumerate(_list_field(span, "links", "links", where)):
        if not isinstance(link, dict):
            raise IngestError(ErrorKind.BAD_REQUEST, f"{where}.links[{l_index}] must be an object")
        _convert_ids(link, LINK_ID_FIELDS)


LOG_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"))


def _prepare_json_log(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise IngestError(ErrorKind.BAD_REQUEST, f"{where} must be an object, got {type(record).__name__}")
    _convert_ids(record, LOG_ID_FIELDS)


def _prepare_json_metric(metric: Any, where: str) -> None:
    if not isinstance(metric, dict):
        raise IngestError(ErrorKind.BAD_REQUEST, f"{where} must be an object, got {type(metric).__name__}")


JSON_ITEM_PREPARERS = {Signal.TRACES: _prepare_json_span, Signal.LOGS: _prepare_json_log,
                       Signal.METRICS: _prepare_json_metric}


def decode_json(body: bytes, reasons: list[str], signal: Signal = Signal.TRACES) -> tuple[Any, int]:
    """Parse OTLP/JSON; items with malformed ids are dropped and counted, not fatal."""
    shape, prepare_item = SHAPES[signal], JSON_ITEM_PREPARERS[signal]
    document = _load_json(body)
    dropped = 0
    for r_index, resource in enumerate(_list_field(document, *shape.resources, "body")):
        where = f"{shape.resources[0]}[{r_index}]"
        if not isinstance(resource, dict):
            raise IngestError(ErrorKind.BAD_REQUEST, f"{where} must be an object")
        for s_index, scope in enumerate(_list_field(resource, *shape.scopes, where)):
            scope_where = f"{where}.{shape.scopes[0]}[{s_index}]"
            if not isinstance(scope, dict):
                raise IngestError(ErrorKind.BAD_REQUEST, f"{scope_where} must be an object")
            items = _list_field(scope, *shape.items, scope_where)
            kept = []
            for index, item in enumerate(items):
                try:
                    prepare_item(item, f"{scope_where}.{shape.items[0]}[{index}]")
                except ValueError as exc:
                    dropped += 1
                    if len(reasons) < MAX_REASONS:
                        reasons.append(f"{shape.items_name} {str(item.get('name', ''))[:200]!r}: {exc}")
                    continue
                kept.append(item)
            if items:
                scope[_pick(scope, *shape.items)[0]] = kept
    request = shape.request()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except RecursionError:
        raise IngestError(ErrorKind.BAD_REQUEST, "body is nested too deeply to be an OTLP/JSON request") from None
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise IngestError(ErrorKind.BAD_REQUEST, f"body is not a valid OTLP/JSON {signal.value} request: {exc}") from exc
    return request, dropped


VALIDATORS = {Signal.TRACES: validate_request, Signal.LOGS: validate_logs, Signal.METRICS: count_points}


def decode_body(
    body: bytes, content_type: str | None, limits: SpanLimits | None = None, signal: Signal = Signal.TRACES
) -> DecodedRequest:
    """Decode and validate an (already decompressed) OTLP/HTTP body of one signal.

    Every failure is an :class:`IngestError`; an unexpected exception here is still
    the body's fault (a 400 naming the error), never a 500 for the sender.
    """
    try:
        return _decode_body(body, content_type, limits or SpanLimits.now(), signal)
    except IngestError:
        raise
    except Exception as exc:  # a decoder bug must not turn a bad body into a 500
        log.warning("decode: unexpected %s for a %d-byte %s body", type(exc).__name__, len(body), content_type,
                    exc_info=True)
        raise IngestError(
            ErrorKind.BAD_REQUEST, f"body could not be decoded: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc


def _decode_body(body: bytes, content_type: str | None, limits: SpanLimits, signal: Signal) -> DecodedRequest:
    kind = media_type(content_type)
    reasons: list[str] = []
    if kind in PROTOBUF_TYPES:
        request, dropped = decode_protobuf(body, SHAPES[signal].request), 0
    elif kind in JSON_TYPES:
        request, dropped = decode_json(body, reasons, signal)
    else:
        raise IngestError(
            ErrorKind.UNSUPPORTED_MEDIA,
            f"Content-Type {content_type!r} is not supported; use application/x-protobuf or application/json",
        )
    original = body if kind in PROTOBUF_TYPES else None
    accepted, rejected = VALIDATORS[signal](request, reasons, limits)
    rejected += dropped
    payload = original if original is not None and rejected == 0 else request.SerializeToString()
    return DecodedRequest(signal=signal, request=request, payload=payload, accepted=accepted, rejected=rejected,
                          reasons=reasons)
