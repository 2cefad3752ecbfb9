"""Decoding and validating OTLP bodies, one bad input at a time."""

from __future__ import annotations

import gzip
import json
import re
import time
import zlib

import pytest

from flightrec.collector.decode import SpanLimits, decode_body, decompress
from flightrec.collector.errors import ErrorKind, IngestError
from tests.otlp_helpers import make_request, make_span

SPEC_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "my.library", "version": "1.0.0",
                              "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "x"}}]},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "kind": 2,
                            "attributes": [
                                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                                {"key": "retries", "value": {"intValue": "3"}},
                            ],
                            "status": {"code": 2, "message": "boom"},
                            "somethingNew": {"ignored": True},
                        }
                    ],
                }
            ],
            "futureField": 1,
        }
    ]
}


def expect(kind: ErrorKind, call, *args, match: str) -> IngestError:
    with pytest.raises(IngestError, match=match) as info:
        call(*args)
    assert info.value.kind is kind
    return info.value


def test_spec_json_example_decodes_with_hex_ids_int_enums_string_int64s_and_unknown_fields() -> None:
    decoded = decode_body(json.dumps(SPEC_EXAMPLE).encode(), "application/json; charset=utf-8")
    assert (decoded.accepted, decoded.rejected) == (1, 0)
    span = decoded.request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert span.start_time_unix_nano == 1544712660000000000 and span.kind == 2
    assert span.attributes[1].value.int_value == 3 and span.status.code == 2


def test_protobuf_body_is_kept_as_the_wal_payload() -> None:
    body = make_request([make_span("a"), make_span("b")]).SerializeToString()
    decoded = decode_body(body, "application/x-protobuf")
    assert decoded.accepted == 2 and decoded.payload is body


def test_invalid_spans_are_removed_counted_and_named() -> None:
    good = [make_span(f"ok{i}") for i in range(3)]
    bad = [
        make_span("short-span-id", span_id=b"1234"),
        make_span("long-trace-id", trace_id=b"x" * 10),
        make_span("zero-trace", trace_id=bytes(16)),
        make_span("bad-parent", parent=b"123"),
        make_span("no-start", start_ns=0),
    ]
    inverted = make_span("inverted")
    inverted.end_time_unix_nano = inverted.start_time_unix_nano - 1
    decoded = decode_body(make_request(good + bad + [inverted]).SerializeToString(), "application/x-protobuf")
    assert (decoded.accepted, decoded.rejected) == (3, 6)
    message = decoded.rejection_message
    assert "span_id must be 8 bytes, got 4" in message and "trace_id must be 16 bytes, got 10" in message
    assert "and 1 more" in message
    kept = [span.name for span in decoded.request.resource_spans[0].scope_spans[0].spans]
    assert kept == ["ok0", "ok1", "ok2"]
    assert decoded.payload == decoded.request.SerializeToString()


def test_json_span_with_non_hex_id_is_rejected_alone() -> None:
    doc = json.loads(json.dumps(SPEC_EXAMPLE))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "spanId": "not-hex!", "name": "broken"})
    decoded = decode_body(json.dumps(doc).encode(), "application/json")
    assert (decoded.accepted, decoded.rejected) == (1, 1)
    assert "spanId is not hex" in decoded.rejection_message


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f garbage", "application/x-protobuf", "not a valid protobuf"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be a JSON object"),
        (b'{"resourceSpans": {"a": 1}}', "application/json", "must be an array"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', "application/json",
         "not a valid OTLP/JSON"),
    ],
)
def test_undecodable_bodies_are_400_with_the_reason(body: bytes, content_type: str, match: str) -> None:
    expect(ErrorKind.BAD_REQUEST, decode_body, body, content_type, match=match)


def test_unknown_content_type_is_415() -> None:
    expect(ErrorKind.UNSUPPORTED_MEDIA, decode_body, b"x", "text/plain", match="text/plain")


def test_gzip_and_deflate_round_trip() -> None:
    assert decompress(gzip.compress(b"hello"), "gzip", 100) == b"hello"
    assert decompress(zlib.compress(b"hello"), "deflate", 100) == b"hello"
    assert decompress(b"hello", None, 100) == b"hello"


def test_decompression_limits_stop_gzip_bombs() -> None:
    bomb = gzip.compress(bytes(50_000_000))
    assert len(bomb) < 100_000
    error = expect(ErrorKind.TOO_LARGE, decompress, bomb, "gzip", 1_000_000, match="exceeds the limit of 1000000")
    assert error.status.http_status == 413
    expect(ErrorKind.TOO_LARGE, decompress, bytes(2000), "identity", 1000, match="limit is 1000")


@pytest.mark.parametrize(
    ("body", "encoding", "kind", "match"),
    [
        (b"not gzip at all", "gzip", ErrorKind.BAD_REQUEST, "not valid gzip"),
        (gzip.compress(b"x" * 1000, mtime=0)[:20], "gzip", ErrorKind.BAD_REQUEST, "truncated"),
        (b"x", "br", ErrorKind.UNSUPPORTED_MEDIA, "'br' is not supported"),
    ],
)
def test_bad_encodings(body: bytes, encoding: str, kind: ErrorKind, match: str) -> None:
    expect(kind, decompress, body, encoding, 10_000, match=match)


def test_spans_older_than_retention_are_rejected_not_lost() -> None:
    old, fresh = make_span("old", start_ns=1_000_000_000), make_span("fresh")
    body = make_request([old, fresh]).SerializeToString()
    decoded = decode_body(body, "application/x-protobuf", SpanLimits(oldest_ns=fresh.start_time_unix_nano - 10**12))
    assert (decoded.accepted, decoded.rejected) == (1, 1)
    assert "older than the retention period" in decoded.rejection_message
    assert decode_body(body, "application/x-protobuf").accepted == 2


# -- hardening: every bad input gets a reason, nothing poisons the store ---------------------------


def test_concatenated_gzip_members_are_one_body_and_trailing_bytes_are_refused() -> None:
    assert decompress(gzip.compress(b"hel") + gzip.compress(b"lo"), "gzip", 100) == b"hello"
    expect(ErrorKind.BAD_REQUEST, decompress, gzip.compress(b"hello") + b"junk", "gzip", 100,
           match="4 bytes follow the end of the gzip data")
    expect(ErrorKind.BAD_REQUEST, decompress, zlib.compress(b"hello") + b"\x00", "deflate", 100,
           match="follow the end of the deflate data")
    expect(ErrorKind.TOO_LARGE, decompress, gzip.compress(bytes(80)) + gzip.compress(bytes(80)), "gzip", 100,
           match="exceeds the limit")


def test_protobuf_decode_errors_name_the_field() -> None:
    body = bytearray(make_request([make_span("first"), make_span("second")]).SerializeToString())
    body[body.index(b"second")] = 0xFF
    expect(ErrorKind.BAD_REQUEST, decode_body, bytes(body), "application/x-protobuf",
           match=r"resource_spans\[0\]\.scope_spans\[0\]\.spans\[1\]\.name: invalid UTF-8")
    whole = make_request([make_span("x")]).SerializeToString()
    expect(ErrorKind.BAD_REQUEST, decode_body, whole[:-5], "application/x-protobuf",
           match=r"resource_spans\[0\].*runs past the end")


def _json_span(**fields: object) -> bytes:
    span = {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "x",
            "startTimeUnixNano": str(time.time_ns()), **fields}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def _deeply_nested(levels: int) -> bytes:
    """A span whose one attribute nests arrays ``levels`` deep (built as text: json.dumps would recurse)."""
    value = '{"arrayValue": {"values": [' * levels + '{"intValue": "1"}' + "]}}" * levels
    return _json_span(attributes="@").replace(b'"@"', f'[{{"key": "deep", "value": {value}}}]'.encode())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (_json_span(links=5), r"spans\[0\]\.links must be an array, got int"),
        (_json_span(links=[5]), r"links\[0\] must be an object"),
        (_json_span(kind=float("inf")), "Infinity is not a JSON number"),
        (_json_span(kind=float("nan")), "NaN is not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (_deeply_nested(2000), "nested too deeply"),
        (_json_span(events=[{"timeUnixNano": {"a": 1}}]), "not a valid OTLP/JSON"),
        (_json_span(droppedAttributesCount="many"), "not a valid OTLP/JSON"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}', r"spans\[0\] must be an object"),
    ],
)
def test_json_type_errors_are_400_with_the_place(body: bytes, match: str) -> None:
    expect(ErrorKind.BAD_REQUEST, decode_body, body, "application/json", match=match)


NOW_NS = time.time_ns()


@pytest.mark.parametrize(
    ("span", "match"),
    [
        (make_span("huge", start_ns=2**63), "beyond what the store can hold"),
        (make_span("max", start_ns=2**64 - 1, duration_ns=0), "beyond what the store can hold"),
        (make_span("ahead", start_ns=NOW_NS + 3 * 86_400 * 10**9), "in the future, past the allowed clock skew"),
        (make_span("long", start_ns=NOW_NS, duration_ns=2**63), "end_time_unix_nano = .* beyond what the store"),
    ],
)
def test_times_the_store_cannot_hold_are_rejected_with_partial_success(span, match: str) -> None:
    ok = make_span("ok")
    decoded = decode_body(make_request([span, ok]).SerializeToString(), "application/x-protobuf")
    assert (decoded.accepted, decoded.rejected) == (1, 1)
    assert re.search(match, decoded.rejection_message), decoded.rejection_message


def test_event_times_and_link_ids_are_checked_too() -> None:
    late_event, bad_link, ok = make_span("event"), make_span("link"), make_span("ok")
    late_event.events.add(name="e", time_unix_nano=2**63 + 1)
    bad_link.links.add(trace_id=b"\x01" * 3, span_id=b"\x02" * 8)
    decoded = decode_body(make_request([late_event, bad_link, ok]).SerializeToString(), "application/x-protobuf")
    assert (decoded.accepted, decoded.rejected) == (1, 2)
    assert "events[0].time_unix_nano" in decoded.rejection_message
    assert "links[0].trace_id must be 16 bytes, got 3" in decoded.rejection_message
    body = _json_span(links=[{"traceId": "0102", "spanId": "0102030405060708"}])
    decoded = decode_body(body, "application/json")
    assert decoded.rejected == 1 and "links[0].trace_id must be 16 bytes, got 2" in decoded.rejection_message


def test_future_months_are_rejected_so_no_insert_can_touch_101_partitions() -> None:
    month = 31 * 86_400 * 10**9
    spans = [make_span(f"m{index}", start_ns=NOW_NS + (index + 1) * month) for index in range(101)]
    decoded = decode_body(make_request(spans).SerializeToString(), "application/x-protobuf")
    assert (decoded.accepted, decoded.rejected) == (0, 101)
    skew = SpanLimits.now(max_future_s=200 * 31 * 86_400)
    assert decode_body(make_request(spans).SerializeToString(), "application/x-protobuf", skew).accepted == 101
