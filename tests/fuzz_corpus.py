"""A deterministic fuzz corpus of bad OTLP trace exports, for OTLP/HTTP ``/v1/traces`` and gRPC.

``FuzzCorpus(seed, limits, base_ns)`` is a pure function of its three arguments: the same
ones give byte-identical cases (``digest()`` proves it). Cases are generated lazily, one
at a time, each from its own ``random.Random(f"{seed}/{class}/{index}")``, so any sample is
reproducible on its own and the big ones (a gzip bomb, a million tiny spans) exist only
while they are being sent.

Every case is ``(cls, name, headers, body)`` plus an :class:`Expect`: the outcome the
contract (DESIGN.md "Guarantees and errors", issue #8 "Deliver") asks for:

- ``reject``  4xx with a google.rpc.Status whose message says why (``status`` when the
  code is fixed: 400 decode error, 413 too large / can never fit the backlog, 415 media);
- ``partial`` 200 with ``partial_success`` counting the invalid spans and naming why;
- ``accept``  200 with nothing rejected (valid edge cases);
- ``ok``      200, partial or not: the contract leaves the choice to the server
  (an end time of 0, an event at time 0, a time within the clock-skew band);
- ``any``     200 or 4xx with a reason (deep-but-not-absurd nesting, concatenated gzip
  members, values the protobuf JSON mapping itself is lenient about).

Whatever the outcome, no case may get a 5xx (except 503 where ``may_503``: a batch the
backlog could hold, but not right now), hang the server, or reset the next request.

Expectations of mutated inputs (random bytes, truncations, bit flips) come from a
reference decoder: the standard library's gzip/zlib, the protobuf library's wire and JSON
parsers, and the span rules of the contract (:func:`span_problems`).

``spans`` is the number of spans in a case's request as the reference decodes it, so a
harness can check that what is stored equals ``sum(spans - rejected)`` over the 200s, i.e.
that no rejected input stored anything and no accepted span was lost.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

NS = 1_000_000_000
DAY_NS = 86_400 * NS
U63 = 2**63
U64 = 2**64
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf"}
JSON_TYPES = {"application/json"}
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT_METHOD = f"/{SERVICE}/Export"
OUTCOMES = ("reject", "partial", "accept", "ok", "any")


@dataclass(frozen=True)
class Limits:
    """The server settings the expectations depend on (FLIGHTREC_* of the same names)."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_backlog_spans: int = 400_000
    retention_days: int = 180  # the server's default (shorter needs FLIGHTREC_RETENTION_SHORT_ACKNOWLEDGED)
    future_ns: int = DAY_NS  # spans more than this ahead of the server's clock are rejected

    def env(self) -> dict[str, str]:
        return {
            "FLIGHTREC_MAX_BODY_BYTES": str(self.max_body_bytes),
            "FLIGHTREC_MAX_BACKLOG_SPANS": str(self.max_backlog_spans),
            "FLIGHTREC_RETENTION_DAYS": str(self.retention_days),
        }


@dataclass(frozen=True)
class Expect:
    outcome: str
    spans: int = 0  # spans in the request, as the reference decodes it (0 if it cannot)
    rejected: int | None = None  # spans partial_success must count, when known
    status: int | None = None  # the exact 4xx, when the contract fixes it
    may_503: bool = False  # a 503 "backlog full" is a legitimate answer
    trace_ids: tuple[str, ...] = ()  # hex trace ids in a rejected body: none may be stored
    note: str = ""

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, self.outcome


@dataclass(frozen=True)
class Built:
    body: bytes
    expect: Expect


@dataclass
class Case:
    """One input; ``build()`` makes its body (again, identically) each time it is called."""

    cls: str
    name: str
    headers: dict[str, str]
    make: Callable[[], Built] = field(repr=False)
    transport: str = "http"  # or "grpc": the body is the raw Export message

    def build(self) -> Built:
        return self.make()


# -- protobuf wire helpers ------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def ld(field_number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def fixed64(field_number: int, value: int) -> bytes:
    return varint(field_number << 3 | 1) + struct.pack("<Q", value)


def nested_any_value(depth: int, shape: str) -> bytes:
    """AnyValue bytes nested ``depth`` times as array_value{values: [..]} or kvlist_value{values: [{k: ..}]}.

    Built from the inside out as prefixes, then joined once (no quadratic copying)."""
    leaf = AnyValue(string_value="leaf").SerializeToString()
    size, prefixes = len(leaf), []
    for _ in range(depth):
        if shape == "array":
            parts = [(5, None), (1, None)]  # AnyValue.array_value{ArrayValue.values: [inner]}
        else:
            parts = [(6, None), (1, b"\x0a\x01k"), (2, None)]  # kvlist_value{values: [KeyValue{key k, value}]}
        level = []
        for field_number, head in reversed(parts):
            extra = head or b""
            level.append(varint(field_number << 3 | 2) + varint(size + len(extra)) + extra)
            size += len(level[-1])
        prefixes.append(b"".join(reversed(level)))
    return b"".join(reversed(prefixes)) + leaf


def wrap_spans(span_bytes: list[bytes], resource: bytes = b"") -> bytes:
    """ExportTraceServiceRequest{resource_spans{resource, scope_spans{scope, spans}}} from raw spans."""
    scope = ld(1, ld(1, b"fuzz"))  # InstrumentationScope.name
    scope_spans = scope + b"".join(ld(2, s) for s in span_bytes)
    resource_spans = (ld(1, resource) if resource else b"") + ld(2, scope_spans)
    return ld(1, resource_spans)


SERVICE_RESOURCE = ld(1, ld(1, b"service.name") + ld(2, ld(1, b"fuzz-agent")))


# -- building valid requests ---------------------------------------------------------------------


def _nonzero(rng: random.Random, n: int) -> bytes:
    value = rng.randbytes(n)
    return value if any(value) else b"\x01" + value[1:]


def _any_value(rng: random.Random, depth: int = 0) -> AnyValue:
    pick = rng.randrange(8 if depth < 2 else 5)
    if pick == 0:
        return AnyValue(string_value=rng.choice(["ok", "refund", "TCK-1042", "ünïcødé ✓", "", "a" * rng.randrange(64)]))
    if pick == 1:
        return AnyValue(int_value=rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randrange(10**6)]))
    if pick == 2:
        return AnyValue(double_value=rng.choice([0.0, -0.0, 1.5, 1e308, 5e-324, rng.random()]))
    if pick == 3:
        return AnyValue(bool_value=rng.random() < 0.5)
    if pick == 4:
        return AnyValue(bytes_value=rng.randbytes(rng.randrange(12)))
    if pick in (5, 6):
        value = AnyValue()
        value.array_value.values.extend(_any_value(rng, depth + 1) for _ in range(rng.randrange(4)))
        return value
    value = AnyValue()
    for i in range(rng.randrange(4)):
        value.kvlist_value.values.add(key=f"k{i}", value=_any_value(rng, depth + 1))
    return value


ATTR_KEYS = ["gen_ai.operation.name", "gen_ai.agent.name", "flightrec.object.type", "flightrec.object.id",
             "ticket.id", "flightrec.action.name", "gen_ai.usage.input_tokens", "http.status_code", "custom.key"]


def _attributes(rng: random.Random, n: int) -> list[KeyValue]:
    return [KeyValue(key=rng.choice(ATTR_KEYS) + ("" if i == 0 else f".{i}"), value=_any_value(rng)) for i in range(n)]


def valid_span(rng: random.Random, base_ns: int, trace_id: bytes, parent: bytes = b"", name: str = "") -> Span:
    start = base_ns - rng.randrange(NS, 3600 * NS)
    span = Span(
        trace_id=trace_id, span_id=_nonzero(rng, 8), parent_span_id=parent,
        name=name or rng.choice(["invoke_agent triage", "chat gpt-4o", "execute_tool refund", "GET /orders", "step"]),
        kind=rng.randrange(6), start_time_unix_nano=start, end_time_unix_nano=start + rng.randrange(1, 5 * NS),
    )
    span.attributes.extend(_attributes(rng, rng.randrange(6)))
    for i in range(rng.randrange(3)):
        event = span.events.add(time_unix_nano=start + i * 1000, name=f"event {i}")
        event.attributes.extend(_attributes(rng, rng.randrange(3)))
    for _ in range(rng.randrange(3)):
        link = span.links.add(trace_id=_nonzero(rng, 16), span_id=_nonzero(rng, 8))
        link.attributes.extend(_attributes(rng, rng.randrange(2)))
    if rng.random() < 0.5:
        span.status.CopyFrom(Status(code=rng.randrange(3), message=rng.choice(["", "boom", "timeout"])))
    return span


def valid_request(rng: random.Random, base_ns: int, n_spans: int | None = None) -> ExportTraceServiceRequest:
    """A small valid request: one trace of 1-5 spans (a root and children) with every field used."""
    n = n_spans if n_spans is not None else rng.randrange(1, 6)
    trace_id = _nonzero(rng, 16)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=AnyValue(string_value="fuzz-agent"))
    resource_spans.resource.attributes.extend(_attributes(rng, rng.randrange(3)))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = "fuzz", "1.0"
    root = valid_span(rng, base_ns, trace_id)
    scope_spans.spans.append(root)
    for _ in range(n - 1):
        scope_spans.spans.append(valid_span(rng, base_ns, trace_id, parent=root.span_id))
    return request


def to_json_doc(request: ExportTraceServiceRequest) -> dict:
    """OTLP/JSON: lowerCamelCase, enums as integers, 64-bit ints as strings, ids as hex."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)

    def hexify(obj: dict, keys: tuple[str, ...]) -> None:
        for key in keys:
            if key in obj:
                obj[key] = base64.b64decode(obj[key]).hex()

    for span in iter_json_spans(doc):
        hexify(span, ("traceId", "spanId", "parentSpanId"))
        for link in span.get("links", []):
            hexify(link, ("traceId", "spanId"))
    return doc


def iter_json_spans(doc: dict) -> Iterator[dict]:
    for resource_spans in doc.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            yield from scope_spans.get("spans", [])


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def trace_ids_of(request: ExportTraceServiceRequest) -> tuple[str, ...]:
    return tuple(sorted({s.trace_id.hex() for rs in request.resource_spans for ss in rs.scope_spans
                         for s in ss.spans if len(s.trace_id) == 16}))


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


# -- the reference decoder: what the contract says an input deserves ---------------------------


class Refusal(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class Clock:
    """The window in which the server's clock will be when the corpus is sent."""

    low_ns: int
    high_ns: int


def ref_decompress(body: bytes, encoding: str | None, limit: int) -> tuple[bytes, bool]:
    """(decoded bytes, whether the contract leaves the answer open); Refusal when it must be refused."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise Refusal(413, "body over the limit")
        return body, False
    if encoding not in ("gzip", "deflate"):
        raise Refusal(415, f"unsupported Content-Encoding {encoding}")
    out, rest, lenient = b"", body, False
    wbits = 31 if encoding == "gzip" else 15
    while True:
        inflater = zlib.decompressobj(wbits=wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            if encoding == "deflate" and not out and rest is body:
                try:  # raw deflate without the zlib wrapper: some servers take it, some do not
                    raw = zlib.decompressobj(wbits=-15)
                    data = raw.decompress(body, limit + 1)
                    if raw.eof and not raw.unused_data and len(data) <= limit:
                        return data, True
                except zlib.error:
                    pass
            raise Refusal(400, f"not valid {encoding}: {exc}") from exc
        if len(out) > limit:
            raise Refusal(413, "decompressed body over the limit")
        if not inflater.eof:
            raise Refusal(400, f"truncated {encoding}")
        rest = inflater.unused_data
        if not rest:
            return out, lenient
        if encoding == "gzip" and rest[:2] == b"\x1f\x8b":
            lenient = True  # concatenated members: may be accepted (all of them) or refused
            continue
        raise Refusal(400, f"trailing bytes after the {encoding} data")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _hex_id(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("id is not a string")
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def ref_decode_json(body: bytes) -> tuple[ExportTraceServiceRequest, int]:
    """OTLP/JSON as the contract reads it: (request without bad-id spans, spans dropped for bad ids)."""
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Refusal(400, f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise Refusal(400, "not an object")
    dropped = 0

    def listed(obj: dict, camel: str, snake: str) -> list:
        value = obj.get(camel, obj.get(snake)) if camel in obj or snake in obj else None
        if value is None:
            return []
        if not isinstance(value, list):
            raise Refusal(400, f"{camel} is not an array")
        return value

    for resource_spans in listed(doc, "resourceSpans", "resource_spans"):
        if not isinstance(resource_spans, dict):
            raise Refusal(400, "resourceSpans item")
        for scope_spans in listed(resource_spans, "scopeSpans", "scope_spans"):
            if not isinstance(scope_spans, dict):
                raise Refusal(400, "scopeSpans item")
            spans = listed(scope_spans, "spans", "spans")
            kept = []
            for span in spans:
                if not isinstance(span, dict):
                    raise Refusal(400, "span is not an object")
                try:
                    for camel, snake in (("traceId", "trace_id"), ("spanId", "span_id"),
                                         ("parentSpanId", "parent_span_id")):
                        key = camel if camel in span else snake
                        if span.get(key) not in (None, ""):
                            span[key] = _hex_id(span[key])
                    links = span.get("links")
                    if isinstance(links, list):
                        for link in links:
                            if isinstance(link, dict):
                                for camel, snake in (("traceId", "trace_id"), ("spanId", "span_id")):
                                    key = camel if camel in link else snake
                                    if link.get(key) not in (None, ""):
                                        link[key] = _hex_id(link[key])
                except ValueError:
                    dropped += 1
                    continue
                kept.append(span)
            if spans:
                scope_spans["spans"] = kept
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except Exception as exc:  # ParseError, and what the parser lets escape (OverflowError on Infinity)
        raise Refusal(400, f"not OTLP/JSON: {exc}") from exc
    return request, dropped


def span_problems(span: Span, limits: Limits, clock: Clock) -> tuple[bool, bool]:
    """(invalid for sure, the contract leaves it open) for one span."""
    bad = open_ = False
    if len(span.trace_id) != 16 or not any(span.trace_id) or len(span.span_id) != 8 or not any(span.span_id):
        bad = True
    if len(span.parent_span_id) not in (0, 8):
        bad = True
    for link in span.links:
        if len(link.trace_id) != 16 or len(link.span_id) != 8:
            bad = True
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0:
        bad = True
    if end and end < start:
        bad = True
    if end == 0:
        open_ = True

    def check_time(t: int, is_start: bool) -> None:
        nonlocal bad, open_
        if t >= clock.high_ns + limits.future_ns or t >= U63 - 1:
            bad = True
        elif t > clock.low_ns + limits.future_ns - 60 * NS:
            open_ = True
        if limits.retention_days and t:
            oldest_hi = clock.high_ns - limits.retention_days * DAY_NS
            oldest_lo = clock.low_ns - limits.retention_days * DAY_NS
            if t < oldest_lo - 60 * NS:
                if is_start:
                    bad = True
                else:
                    open_ = True
            elif t < oldest_hi + 60 * NS:
                open_ = True

    check_time(start, True)
    if end:
        check_time(end, False)
    for event in span.events:
        if event.time_unix_nano == 0:
            open_ = True
        else:
            check_time(event.time_unix_nano, False)
            if event.time_unix_nano < start or (end and event.time_unix_nano > end):
                open_ = True
    return bad, open_


def judge_request(request: ExportTraceServiceRequest, dropped: int, limits: Limits, clock: Clock,
                  lenient: bool = False, may_503: bool = False) -> Expect:
    spans = span_count(request) + dropped
    rejected, open_ = dropped, lenient
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                bad, unsure = span_problems(span, limits, clock)
                rejected += bad
                open_ = open_ or (unsure and not bad)
    accepted = spans - rejected
    if accepted > limits.max_backlog_spans:
        return Expect("reject", spans=spans, status=413, trace_ids=trace_ids_of(request),
                      note="more valid spans than the backlog can ever hold")
    may_503 = may_503 or accepted > limits.max_backlog_spans // 4
    if lenient:
        return Expect("any", spans=spans, may_503=may_503)
    if open_:
        return Expect("ok", spans=spans, may_503=may_503)
    if rejected:
        return Expect("partial", spans=spans, rejected=rejected, may_503=may_503)
    return Expect("accept", spans=spans, may_503=may_503)


def reference(body: bytes, headers: dict[str, str], limits: Limits, clock: Clock, transport: str = "http") -> Expect:
    """What the contract says ``body`` deserves, decided by the reference decoder."""
    lower = {k.lower(): v for k, v in headers.items()}
    if transport == "grpc":
        kind, encoding = PROTOBUF, None
        if len(body) > limits.max_body_bytes:
            return Expect("reject", note="over grpc.max_receive_message_length")
    else:
        kind = (lower.get("content-type") or "").split(";", 1)[0].strip().lower()
        encoding = lower.get("content-encoding")
        if kind not in PROTOBUF_TYPES | JSON_TYPES:
            return Expect("reject", status=415)
    try:
        raw, lenient = ref_decompress(body, encoding, limits.max_body_bytes)
        if kind in PROTOBUF_TYPES:
            try:
                request, dropped = ExportTraceServiceRequest.FromString(raw), 0
            except (DecodeError, RecursionError) as exc:
                raise Refusal(400, f"not protobuf: {exc}") from exc
        else:
            request, dropped = ref_decode_json(raw)
    except Refusal as refusal:
        return Expect("reject", status=refusal.status, note=str(refusal)[:80])
    return judge_request(request, dropped, limits, clock, lenient=lenient)


# -- the corpus ------------------------------------------------------------------------------


def default_base_ns(now_ns: int | None = None) -> int:
    """A base time for a run starting now: the whole hour two hours ago (spans are before it)."""
    now = time.time_ns() if now_ns is None else now_ns
    return (now // (3600 * NS)) * 3600 * NS - 2 * 3600 * NS


def _flip_bits(rng: random.Random, data: bytes, flips: int) -> bytes:
    out = bytearray(data)
    for _ in range(flips):
        position = rng.randrange(len(out) * 8)
        out[position // 8] ^= 1 << (position % 8)
    return bytes(out)


def _headers(content_type: str | None, encoding: str | None = None) -> dict[str, str]:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return headers


class FuzzCorpus:
    """The corpus; iterate :meth:`http_cases` / :meth:`grpc_cases`, or take :meth:`sample`."""

    def __init__(self, seed: int = 8, limits: Limits | None = None, base_ns: int | None = None) -> None:
        self.seed = seed
        self.limits = limits or Limits()
        self.base_ns = default_base_ns() if base_ns is None else base_ns
        # the server's clock while the corpus is sent: after base + 2 h, before base + 2 days
        self.clock = Clock(low_ns=self.base_ns + 2 * 3600 * NS, high_ns=self.base_ns + 2 * DAY_NS)
        self._http: list[tuple[str, int, Callable[[random.Random, int], Case]]] = [
            ("valid", 300, self._valid),
            ("random_bytes", 1500, self._random_bytes),
            ("truncated_protobuf", 1000, self._truncated_protobuf),
            ("truncated_json", 800, self._truncated_json),
            ("bitflip_protobuf", 2000, self._bitflip_protobuf),
            ("bitflip_json", 800, self._bitflip_json),
            ("bad_utf8", 300, self._bad_utf8),
            ("wrong_id_length", 800, self._wrong_ids),
            ("json_type_error", 700, self._json_type_error),
            ("nan_infinity", 300, self._nan_infinity),
            ("deep_nesting", 48, self._deep_nesting),
            ("huge_attribute", 8, self._huge_attribute),
            ("many_attributes", 3, self._many_attributes),
            ("huge_span_count", 4, self._huge_span_count),
            ("time_edge", 400, self._time_edge),
            ("compression", 800, self._compression),
            ("lying_content_encoding", 200, self._lying_encoding),
            ("lying_content_type", 200, self._lying_type),
        ]
        self._grpc: list[tuple[str, int, Callable[[random.Random, int], Case]]] = [
            ("valid", 40, self._valid),
            ("random_bytes", 200, self._random_bytes),
            ("truncated_protobuf", 150, self._truncated_protobuf),
            ("bitflip_protobuf", 300, self._bitflip_protobuf),
            ("bad_utf8", 40, self._bad_utf8),
            ("wrong_id_length", 80, self._wrong_ids),
            ("deep_nesting", 24, self._deep_nesting),
            ("time_edge", 60, self._time_edge),
            ("structural", 60, self._structural),
            ("huge_attribute", 4, self._huge_attribute),
            ("many_attributes", 1, self._many_attributes),
            ("huge_span_count", 2, self._huge_span_count),
        ]

    # iteration ----------------------------------------------------------------------------

    def class_counts(self, transport: str = "http") -> dict[str, int]:
        return {name: count for name, count, _ in (self._http if transport == "http" else self._grpc)}

    def _cases(self, transport: str, pick: Callable[[str, int], list[int]]) -> Iterator[Case]:
        table = self._http if transport == "http" else self._grpc
        for cls, count, maker in table:
            for index in pick(cls, count):
                self._seed_str = f"{self.seed}/{transport}/{cls}/{index}"
                rng = random.Random(self._seed_str)
                self._transport = transport
                case = maker(rng, index)
                case.transport = transport
                if transport == "grpc":
                    case.headers = {}
                yield case

    def http_cases(self) -> Iterator[Case]:
        return self._cases("http", lambda cls, count: list(range(count)))

    def grpc_cases(self) -> Iterator[Case]:
        return self._cases("grpc", lambda cls, count: list(range(count)))

    def sample(self, per_class: int, transport: str = "http", small_whole: int = 60,
               classes: list[str] | None = None) -> Iterator[Case]:
        """Up to ``per_class`` evenly spaced cases of each class (classes of <= small_whole cases: all)."""
        def pick(cls: str, count: int) -> list[int]:
            if classes is not None and cls not in classes:
                return []
            if count <= max(per_class, small_whole):
                return list(range(count))
            return sorted({i * count // per_class for i in range(per_class)})
        return self._cases(transport, pick)

    def digest(self, transport: str = "http", per_class: int | None = None, classes: list[str] | None = None) -> str:
        """sha256 over every case's class, name, headers, expectation and body (sampled with per_class)."""
        digest = hashlib.sha256()
        cases = self.sample(per_class or 10**9, transport, small_whole=0, classes=classes)
        for case in cases:
            built = case.build()
            digest.update(f"{case.cls}\0{case.name}\0{sorted(case.headers.items())}\0{built.expect}\0".encode())
            digest.update(hashlib.sha256(built.body).digest())
        return digest.hexdigest()

    # helpers -------------------------------------------------------------------------------

    def _case(self, cls: str, name: str, headers: dict[str, str], make: Callable[[], bytes | Built]) -> Case:
        """A case whose expectation comes from the reference decoder unless ``make`` returns a Built."""
        transport = self._transport
        limits, clock = self.limits, self.clock

        def build() -> Built:
            made = make()
            if isinstance(made, Built):
                return made
            return Built(made, reference(made, headers, limits, clock, transport))
        return Case(cls, name, dict(headers), build, transport)

    # classes -------------------------------------------------------------------------------

    def _valid(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        variant = index % 6
        base, grpc = self.base_ns, self._transport == "grpc"

        def make() -> bytes:
            r = random.Random(seed_str)
            request = valid_request(r, base)
            if variant in (0, 1, 2) or grpc:
                return request.SerializeToString()
            if variant in (3, 4):
                return dumps(to_json_doc(request))
            return gzip.compress(request.SerializeToString(), mtime=0)
        headers = {0: _headers(PROTOBUF), 1: _headers("application/protobuf"), 2: _headers(PROTOBUF),
                   3: _headers(JSON), 4: _headers("application/json; charset=utf-8"),
                   5: _headers(PROTOBUF, "gzip")}[variant]
        return self._case("valid", f"valid-{index}-v{variant}", headers, make)

    def _random_bytes(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        size = rng.choice([0, 1, 2, 3, 5, 8, 16]) if index % 10 == 0 else int(rng.paretovariate(1.2) * 16) % 8192
        content_type = PROTOBUF if (self._transport == "grpc" or index % 3) else JSON
        encoding = "gzip" if index % 11 == 5 and self._transport == "http" else None
        data = rng.randbytes(size)
        if index % 7 == 3 and size > 4:  # bytes that look like the start of a request
            data = b"\x0a" + varint(size - 2)[:1] + data[2:]
        return self._case("random_bytes", f"random-{index}-{size}B", _headers(content_type, encoding), lambda: data)

    def _truncated_protobuf(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        request_seed = rng.random()
        base, gz = self.base_ns, self._transport == "http" and index % 9 == 4

        def make() -> bytes:
            r = random.Random(request_seed)
            data = valid_request(r, base).SerializeToString()
            cut = r.randrange(len(data))
            return gzip.compress(data[:cut], mtime=0) if gz else data[:cut]
        return self._case("truncated_protobuf", f"truncated-pb-{index}" + ("-gz" if gz else ""),
                          _headers(PROTOBUF, "gzip" if gz else None), make)

    def _truncated_json(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        request_seed, base = rng.random(), self.base_ns

        def make() -> bytes:
            r = random.Random(request_seed)
            data = dumps(to_json_doc(valid_request(r, base)))
            return data[: r.randrange(len(data))]
        return self._case("truncated_json", f"truncated-json-{index}", _headers(JSON), make)

    def _bitflip_protobuf(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        request_seed, flips, base = rng.random(), rng.choice([1, 1, 1, 2, 3, 8]), self.base_ns

        def make() -> bytes:
            r = random.Random(request_seed)
            return _flip_bits(r, valid_request(r, base).SerializeToString(), flips)
        return self._case("bitflip_protobuf", f"bitflip-pb-{index}-x{flips}", _headers(PROTOBUF), make)

    def _bitflip_json(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        request_seed, flips, base = rng.random(), rng.choice([1, 1, 2, 4]), self.base_ns

        def make() -> bytes:
            r = random.Random(request_seed)
            return _flip_bits(r, dumps(to_json_doc(valid_request(r, base))), flips)
        return self._case("bitflip_json", f"bitflip-json-{index}-x{flips}", _headers(JSON), make)

    BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xed\xa0\x80",
                b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80", b"abc\xfe"]

    def _bad_utf8(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        bad = self.BAD_UTF8[index % len(self.BAD_UTF8)]
        where = ["span.name", "attribute.key", "attribute.string_value", "resource.attribute", "event.name",
                 "status.message", "trace_state", "bytes_value (legal)"][(index // len(self.BAD_UTF8)) % 8]
        as_json = self._transport == "http" and index % 3 == 2
        base = self.base_ns
        name = f"bad-utf8-{index}-{where}-{bad.hex()}-{'json' if as_json else 'pb'}"

        def make() -> Built:
            r = random.Random(seed_str)
            request = valid_request(r, base, n_spans=2)
            span = request.resource_spans[0].scope_spans[0].spans[0]
            marker = "\u2603MARK\u2603"
            if where == "span.name":
                span.name = marker
            elif where == "attribute.key":
                span.attributes.add(key=marker, value=AnyValue(int_value=1))
            elif where == "attribute.string_value":
                span.attributes.add(key="k", value=AnyValue(string_value=marker))
            elif where == "resource.attribute":
                request.resource_spans[0].resource.attributes.add(key="r", value=AnyValue(string_value=marker))
            elif where == "event.name":
                span.events.add(time_unix_nano=span.start_time_unix_nano, name=marker)
            elif where == "status.message":
                span.status.message = marker
            elif where == "trace_state":
                span.trace_state = marker
            else:
                span.attributes.add(key="raw", value=AnyValue(bytes_value=b"\x00\x01" + bad + b"\x02"))
            ids = trace_ids_of(request)
            if where.startswith("bytes_value"):
                body = dumps(to_json_doc(request)) if as_json else request.SerializeToString()
                return Built(body, Expect("accept", spans=2))
            if as_json:
                text = dumps(to_json_doc(request))
                body = text.replace(marker.encode(), bad)
                return Built(body, Expect("reject", spans=2, status=400, trace_ids=ids,
                                          note="JSON text must be UTF-8"))
            body = request.SerializeToString()
            mark = marker.encode()
            assert len(mark) == 10
            # keep the length prefix right: pad the bad bytes to the marker's length
            body = body.replace(mark, (bad + b"x" * 10)[:10])
            return Built(body, Expect("reject", spans=2, status=400, trace_ids=ids,
                                      note="proto3 strings must be UTF-8"))
        headers = _headers(JSON if as_json else PROTOBUF)
        return self._case("bad_utf8", name, headers, make)

    ID_VARIANTS = [
        ("trace_id", 0), ("trace_id", 1), ("trace_id", 8), ("trace_id", 15), ("trace_id", 17), ("trace_id", 32),
        ("trace_id", "zeros"), ("span_id", 0), ("span_id", 4), ("span_id", 7), ("span_id", 9), ("span_id", 16),
        ("span_id", "zeros"), ("parent_span_id", 1), ("parent_span_id", 7), ("parent_span_id", 9),
        ("parent_span_id", 16), ("link.trace_id", 0), ("link.trace_id", 8), ("link.trace_id", 17),
        ("link.span_id", 0), ("link.span_id", 4), ("link.span_id", 16), ("json:odd-hex", 0), ("json:non-hex", 0),
        ("json:base64-not-hex", 0), ("json:link-non-hex", 0), ("json:link-odd-hex", 0),
    ]

    def _wrong_ids(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        field_name, length = self.ID_VARIANTS[index % len(self.ID_VARIANTS)]
        as_json = field_name.startswith("json:") or (self._transport == "http" and index % 2 == 1)
        if field_name.startswith("json:") and self._transport == "grpc":
            field_name, length, as_json = "trace_id", 3, False
        base = self.base_ns
        name = f"ids-{index}-{field_name}-{length}-{'json' if as_json else 'pb'}"

        def make() -> Built:
            r = random.Random(seed_str)
            n = r.randrange(2, 6)
            request = valid_request(r, base, n_spans=n)
            spans = request.resource_spans[0].scope_spans[0].spans
            victim = spans[r.randrange(n)]
            if not victim.links:
                victim.links.add(trace_id=_nonzero(r, 16), span_id=_nonzero(r, 8))
            target_name = field_name.split(":")[0]
            if not field_name.startswith("json:"):
                obj = victim.links[0] if target_name.startswith("link.") else victim
                attr = target_name.removeprefix("link.")
                value = bytes(len(getattr(obj, attr))) if length == "zeros" else _nonzero(r, int(length)) if length else b""
                setattr(obj, attr, value)
                if target_name == "span_id" and victim.parent_span_id == b"":  # root: children now orphans, fine
                    pass
            if as_json:
                doc = to_json_doc(request)
                json_victim = next(s for s in iter_json_spans(doc) if s["name"] == victim.name
                                   and s.get("startTimeUnixNano") == str(victim.start_time_unix_nano))
                if field_name == "json:odd-hex":
                    json_victim["traceId"] = json_victim["traceId"][:-1]
                elif field_name == "json:non-hex":
                    json_victim["spanId"] = "zz" + json_victim["spanId"][2:]
                elif field_name == "json:base64-not-hex":
                    json_victim["traceId"] = base64.b64encode(victim.trace_id).decode()
                elif field_name == "json:link-non-hex":
                    json_victim["links"][0]["spanId"] = "xyz" * 5 + "q"
                elif field_name == "json:link-odd-hex":
                    json_victim["links"][0]["traceId"] = json_victim["links"][0]["traceId"] + "a"
                elif length == 0 and target_name in ("trace_id", "span_id"):
                    json_victim["traceId" if target_name == "trace_id" else "spanId"] = ""
                body = dumps(doc)
            else:
                body = request.SerializeToString()
            return Built(body, Expect("partial", spans=n, rejected=1, note=f"{field_name} of length {length}"))
        return self._case("wrong_id_length", name, _headers(JSON if as_json else PROTOBUF), make)

    # JSON paths in a one-span document, and the wrongly typed values put there
    TYPE_PATHS = [
        ("resourceSpans",), ("resourceSpans", 0), ("resourceSpans", 0, "resource"),
        ("resourceSpans", 0, "resource", "attributes"), ("resourceSpans", 0, "scopeSpans"),
        ("resourceSpans", 0, "scopeSpans", 0), ("resourceSpans", 0, "scopeSpans", 0, "scope"),
        ("resourceSpans", 0, "scopeSpans", 0, "scope", "name"), ("resourceSpans", 0, "scopeSpans", 0, "spans"),
        ("resourceSpans", 0, "scopeSpans", 0, "spans", 0), ("resourceSpans", 0, "schemaUrl"),
        ("@span", "name"), ("@span", "kind"), ("@span", "startTimeUnixNano"), ("@span", "endTimeUnixNano"),
        ("@span", "attributes"), ("@span", "attributes", 0), ("@span", "attributes", 0, "key"),
        ("@span", "attributes", 0, "value"), ("@span", "attributes", 0, "value", "intValue"),
        ("@span", "attributes", 0, "value", "boolValue"), ("@span", "attributes", 0, "value", "arrayValue"),
        ("@span", "attributes", 0, "value", "kvlistValue"), ("@span", "attributes", 0, "value", "bytesValue"),
        ("@span", "events"), ("@span", "events", 0), ("@span", "events", 0, "timeUnixNano"),
        ("@span", "events", 0, "attributes"), ("@span", "links"), ("@span", "links", 0),
        ("@span", "links", 0, "attributes"), ("@span", "status"), ("@span", "status", "code"),
        ("@span", "status", "message"), ("@span", "droppedAttributesCount"), ("@span", "flags"),
        ("@span", "traceState"), ("@span", "traceId"), ("@span", "spanId"),
    ]
    INT_FIELDS = {"kind", "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano", "intValue", "code",
                  "droppedAttributesCount", "flags"}
    STRING_FIELDS = {"name", "key", "message", "traceState", "schemaUrl", "traceId", "spanId", "bytesValue"}
    TYPE_VALUES: list[Any] = [5, -1, 1.5, "x", "", True, None, [], [5], {}, {"a": 1}, "12x", [[]], "SPAN_KIND_NOPE"]

    def _json_doc_one_span(self, r: random.Random) -> tuple[ExportTraceServiceRequest, dict]:
        request = valid_request(r, self.base_ns, n_spans=1)
        span = request.resource_spans[0].scope_spans[0].spans[0]
        del span.attributes[:]
        span.attributes.add(key="a", value=AnyValue(int_value=7))
        if not span.events:
            span.events.add(time_unix_nano=span.start_time_unix_nano, name="e")
        span.events[0].attributes.add(key="e", value=AnyValue(string_value="v"))
        if not span.links:
            span.links.add(trace_id=_nonzero(r, 16), span_id=_nonzero(r, 8))
        span.links[0].attributes.add(key="l", value=AnyValue(bool_value=True))
        span.status.code, span.status.message = 2, "boom"
        span.trace_state, span.flags = "k=v", 1
        span.dropped_attributes_count = 1
        return request, to_json_doc(request)

    def _json_type_error(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        path = self.TYPE_PATHS[index % len(self.TYPE_PATHS)]
        value = self.TYPE_VALUES[(index // len(self.TYPE_PATHS)) % len(self.TYPE_VALUES)]
        limits, clock = self.limits, self.clock
        name = f"type-{index}-{'.'.join(map(str, path))}={json.dumps(value)}"

        def make() -> Built:
            r = random.Random(seed_str)
            request, doc = self._json_doc_one_span(r)
            keys = list(path)
            if keys[0] == "@span":
                keys = ["resourceSpans", 0, "scopeSpans", 0, "spans", 0, *keys[1:]]
            holder = doc
            for key in keys[:-1]:
                holder = holder[key]
            if keys[-1] in ("intValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue"):
                holder.clear()  # the AnyValue becomes {that kind: the wrong value}
            original = holder[keys[-1]] if isinstance(holder, list) else holder.get(keys[-1])
            holder[keys[-1]] = value
            body = dumps(doc)
            verdict = reference(body, _headers(JSON), limits, clock)
            ids = trace_ids_of(request)
            if verdict.outcome == "reject":
                return Built(body, Expect("reject", spans=1, status=400, trace_ids=ids, note="wrongly typed JSON"))
            field_name = str(keys[-1])
            legal = (value is None or value == original
                     or (field_name in self.INT_FIELDS and isinstance(value, int) and not isinstance(value, bool))
                     or (field_name in self.INT_FIELDS and isinstance(value, str) and value.lstrip("-").isdigit())
                     or (field_name in self.STRING_FIELDS and isinstance(value, str)))
            if legal:
                return Built(body, verdict)  # a legal value for the field: the reference decides
            return Built(body, Expect("any", spans=verdict.spans, note="the protobuf JSON mapping lets this pass"))
        return self._case("json_type_error", name, _headers(JSON), make)

    def _nan_infinity(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        constants = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e19", "18446744073709551616", "-1",
                     "9223372036854775808"]
        fields_ = ["kind", "startTimeUnixNano", "endTimeUnixNano", "droppedAttributesCount", "flags", "status.code",
                   "event.timeUnixNano", "attr.intValue", "attr.doubleValue", "attr.doubleValue.string"]
        constant = constants[index % len(constants)]
        where = fields_[(index // len(constants)) % len(fields_)]
        quoted = rng.random() < 0.3 and where in ("startTimeUnixNano", "endTimeUnixNano", "attr.intValue")
        limits, clock = self.limits, self.clock
        name = f"nan-{index}-{where}={constant}" + ("-quoted" if quoted else "")

        def make() -> Built:
            r = random.Random(seed_str)
            request, doc = self._json_doc_one_span(r)
            span = next(iter_json_spans(doc))
            placeholder = "__FUZZ_CONSTANT__"
            if where == "status.code":
                span["status"]["code"] = placeholder
            elif where == "event.timeUnixNano":
                span["events"][0]["timeUnixNano"] = placeholder
            elif where.startswith("attr."):
                span["attributes"][0]["value"] = {where.split(".")[1]: placeholder}
            else:
                span[where] = placeholder
            literal = constant
            if quoted or where == "attr.doubleValue.string":
                literal = '"' + constant + '"'
            body = dumps(doc).replace(f'"{placeholder}"'.encode(), literal.encode())
            ids = trace_ids_of(request)
            if where == "attr.doubleValue":
                return Built(body, Expect("any", spans=1, note="a double may hold it; bare NaN/Infinity is not JSON"))
            bare = constant in ("NaN", "Infinity", "-Infinity") and literal == constant
            verdict = reference(body, _headers(JSON), limits, clock)
            if bare or verdict.outcome == "reject":
                return Built(body, Expect("reject", spans=1, status=400, trace_ids=ids,
                                          note="not a number this field can hold"))
            return Built(body, verdict)  # e.g. 1e19 in a time field: a number, judged as a time
        return self._case("nan_infinity", name, _headers(JSON), make)

    def _deep_nesting(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        depths = [10, 100, 1000, 10000]
        depth = depths[index % 4]
        shape = ["array", "kvlist"][(index // 4) % 2]
        as_json = self._transport == "http" and (index // 8) % 2 == 1
        where = ["span.attributes", "resource.attributes", "event.attributes"][(index // 16) % 3]
        base = self.base_ns
        name = f"nesting-{index}-{shape}-{depth}-{where}-{'json' if as_json else 'pb'}"
        outcome = {10: "accept", 100: "any", 1000: "reject", 10000: "reject"}[depth]

        def make() -> Built:
            r = random.Random(seed_str)
            request = valid_request(r, base, n_spans=1)
            ids = trace_ids_of(request)
            if as_json:
                doc = to_json_doc(request)
                placeholder = "__FUZZ_DEEP__"
                span = next(iter_json_spans(doc))
                if where == "span.attributes":
                    holder = span.setdefault("attributes", [])
                elif where == "resource.attributes":
                    holder = doc["resourceSpans"][0]["resource"]["attributes"]
                else:
                    span["events"] = [{"timeUnixNano": span["startTimeUnixNano"], "name": "deep", "attributes": []}]
                    holder = span["events"][0]["attributes"]
                holder.append({"key": "deep", "value": placeholder})
                if shape == "array":
                    opening, closing = '{"arrayValue":{"values":[', "]}}"
                else:
                    opening, closing = '{"kvlistValue":{"values":[{"key":"k","value":', "}]}}"
                deep = opening * depth + '{"stringValue":"leaf"}' + closing * depth
                body = dumps(doc).replace(f'"{placeholder}"'.encode(), deep.encode())
            else:
                value = nested_any_value(depth, shape)
                kv = ld(1, b"deep") + ld(2, value)
                span = request.resource_spans[0].scope_spans[0].spans[0]
                resource = request.resource_spans[0].resource.SerializeToString()
                if where == "span.attributes":
                    span_bytes = span.SerializeToString() + ld(9, kv)
                elif where == "resource.attributes":
                    span_bytes, resource = span.SerializeToString(), resource + ld(1, kv)
                else:
                    del span.events[:]
                    span_bytes = span.SerializeToString() + ld(11, fixed64(1, span.start_time_unix_nano) + ld(3, kv))
                body = wrap_spans([span_bytes], resource)
            return Built(body, Expect(outcome, spans=1, status=400 if outcome == "reject" else None,
                                      trace_ids=ids if outcome == "reject" else (),
                                      note=f"{depth} levels of AnyValue {shape}"))
        return self._case("deep_nesting", name, _headers(JSON if as_json else PROTOBUF), make)

    def _huge_attribute(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        limit, base = self.limits.max_body_bytes, self.base_ns
        variants = [("under", "pb"), ("over", "pb"), ("under", "json"), ("over", "json"), ("over", "pb-gzip"),
                    ("under", "pb-gzip"), ("over", "pb-chunked"), ("way-over", "pb")]
        if self._transport == "grpc":
            variants = [("under", "pb"), ("over", "pb"), ("under", "pb"), ("way-over", "pb")]
        size, encoding = variants[index % len(variants)]
        name = f"huge-attr-{index}-{size}-{encoding}"
        http = self._transport == "http"

        def make() -> Built:
            r = random.Random(seed_str)
            request = valid_request(r, base, n_spans=1)
            span = request.resource_spans[0].scope_spans[0].spans[0]
            overhead = len(dumps(to_json_doc(request)) if encoding == "json" else request.SerializeToString()) + 64
            target = {"under": limit - overhead - 1024, "over": limit + 1, "way-over": limit * 2}[size]
            span.attributes.add(key="huge", value=AnyValue(string_value="x" * target))
            body = dumps(to_json_doc(request)) if encoding == "json" else request.SerializeToString()
            if size == "under":
                assert len(body) <= limit, (len(body), limit)
                if encoding == "pb-gzip":
                    body = gzip.compress(body, compresslevel=1, mtime=0)
                return Built(body, Expect("accept", spans=1, may_503=True, note=f"{len(body)} B, limit {limit}"))
            if encoding == "pb-gzip":
                body = gzip.compress(body, compresslevel=1, mtime=0)
            return Built(body, Expect("reject", status=413 if http else None,
                                      trace_ids=trace_ids_of(request), note=f"over the {limit} B limit"))
        headers = _headers(JSON if encoding == "json" else PROTOBUF, "gzip" if encoding == "pb-gzip" else None)
        if encoding == "pb-chunked":
            headers["X-Fuzz-Chunked"] = "1"  # the harness sends it without a Content-Length
        return self._case("huge_attribute", name, headers, make)

    def _many_attributes(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        as_json = self._transport == "http" and index == 1
        gz = self._transport == "http" and index == 2
        base, limit = self.base_ns, self.limits.max_body_bytes

        def make() -> Built:
            r = random.Random(seed_str)
            request = valid_request(r, base, n_spans=1)
            span = request.resource_spans[0].scope_spans[0].spans[0]
            del span.attributes[:]
            if as_json:
                span.attributes.add(key="__many__", value=AnyValue(int_value=0))
                many = ",".join(f'{{"key":"a{i}","value":{{"intValue":"{i}"}}}}' for i in range(100_000))
                body = dumps(to_json_doc(request)).replace(b'{"key":"__many__","value":{"intValue":"0"}}',
                                                           many.encode())
            else:
                attributes = b"".join(ld(9, ld(1, b"a%d" % i) + ld(2, b"\x18" + varint(i))) for i in range(100_000))
                body = wrap_spans([span.SerializeToString() + attributes],
                                  request.resource_spans[0].resource.SerializeToString())
            if len(body) > limit:
                return Built(body, Expect("reject", status=413, trace_ids=trace_ids_of(request),
                                          note=f"{len(body)} B is over the limit"))
            if gz:
                body = gzip.compress(body, mtime=0)
            return Built(body, Expect("accept", spans=1, may_503=True, note="100,000 attributes on one span"))
        return self._case("many_attributes", f"many-attrs-{index}-100k-{'json' if as_json else 'gz' if gz else 'pb'}",
                          _headers(JSON if as_json else PROTOBUF, "gzip" if gz else None), make)

    def _huge_span_count(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        limits, base = self.limits, self.base_ns
        tiny = 50  # bytes a tiny span takes on the wire (ids, two times, the field header)
        fits = (limits.max_body_bytes - 1024) // tiny
        variants = ["1M", "backlog+1", "backlog-gzip", "half-backlog"]
        if self._transport == "grpc":
            variants = ["1M", "backlog+1"]
        variant = variants[index % len(variants)]
        http = self._transport == "http"
        count = {"1M": min(1_000_000, fits), "backlog+1": min(limits.max_backlog_spans + 1, fits),
                 "backlog-gzip": limits.max_backlog_spans + 1, "half-backlog": min(limits.max_backlog_spans // 2, fits)}[
            variant]

        def make() -> Built:
            r = random.Random(seed_str)
            trace_id = _nonzero(r, 16)
            start = base - 600 * NS
            # ScopeSpans.spans{trace_id, span_id (i+1, little-endian), start (fixed64), end (fixed64)}: 48 bytes
            tiny_span = struct.Struct("<2s2s16s2sQBQBQ")
            spans = b"".join(tiny_span.pack(b"\x12\x2e", b"\x0a\x10", trace_id, b"\x12\x08", i + 1, 0x39, start + i,
                                            0x41, start + i + 1000) for i in range(count))
            resource_spans = ld(1, SERVICE_RESOURCE) + ld(2, ld(1, ld(1, b"fuzz")) + spans)
            del spans
            body = ld(1, resource_spans)
            if variant == "backlog-gzip":
                body = gzip.compress(body, compresslevel=6, mtime=0)
            raw_size = len(body) if variant != "backlog-gzip" else None
            if raw_size is not None and raw_size > limits.max_body_bytes:
                return Built(body, Expect("reject", status=413, trace_ids=(trace_id.hex(),), note="over the byte limit"))
            if variant == "backlog-gzip" and count * tiny > limits.max_body_bytes:
                return Built(body, Expect("reject", status=413, trace_ids=(trace_id.hex(),),
                                          note="inflates over the byte limit"))
            if count > limits.max_backlog_spans:
                return Built(body, Expect("reject", spans=count, status=413 if http else None,
                                          trace_ids=(trace_id.hex(),),
                                          note=f"{count} spans can never fit a backlog of {limits.max_backlog_spans}"))
            return Built(body, Expect("accept", spans=count, may_503=True, note=f"{count} tiny spans"))
        return self._case("huge_span_count", f"span-count-{index}-{variant}-{count}",
                          _headers(PROTOBUF, "gzip" if variant == "backlog-gzip" else None), make)

    def _time_edge(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        base = self.base_ns
        values = {"0": 0, "1": 1, "2^63-1": U63 - 1, "2^63": U63, "2^64-1": U64 - 1,
                  "far-future": base + 3650 * DAY_NS, "3-days-ahead": base + 3 * DAY_NS,
                  "year-2262": U63 - DAY_NS, "far-past-2001": 1_000_000_000 * NS, "1-hour-ahead": base + 3600 * NS,
                  "retention-edge-minus-2d": base - (self.limits.retention_days + 2) * DAY_NS}
        edges = [(f, v) for f in ("start", "end", "event") for v in values] + [
            ("end-before-start", "1ns"), ("end-before-start", "1h"), ("end-equals-start", "0"),
            ("months-101-future", ""), ("months-101-past", ""), ("months-101-json", ""),
            ("event-before-start", ""), ("zero-duration-root", "")]
        edge, label = edges[index % len(edges)]
        as_json = self._transport == "http" and (index // len(edges)) % 2 == 1
        limits, clock = self.limits, self.clock
        name = f"time-{index}-{edge}-{label}-{'json' if as_json else 'pb'}"

        def make() -> Built:
            r = random.Random(seed_str)
            if edge.startswith("months-101"):
                request = valid_request(r, base, n_spans=101)
                for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
                    months = (i + 1) * 31 * DAY_NS
                    start = base + months if edge != "months-101-past" else base - months - 3600 * NS
                    span.start_time_unix_nano, span.end_time_unix_nano = start, start + 1000
                    del span.events[:]
            else:
                n = r.randrange(2, 5)
                request = valid_request(r, base, n_spans=n)
                span = request.resource_spans[0].scope_spans[0].spans[r.randrange(n)]
                if edge == "start":
                    span.start_time_unix_nano = values[label]
                    span.end_time_unix_nano = max(values[label], span.end_time_unix_nano)
                elif edge == "end":
                    span.end_time_unix_nano = values[label]
                elif edge == "event":
                    span.events.add(time_unix_nano=values[label], name="edge")
                elif edge == "end-before-start":
                    span.end_time_unix_nano = span.start_time_unix_nano - (1 if label == "1ns" else 3600 * NS)
                elif edge == "end-equals-start":
                    span.end_time_unix_nano = span.start_time_unix_nano
                elif edge == "event-before-start":
                    span.events.add(time_unix_nano=span.start_time_unix_nano - NS, name="early")
                else:
                    span.end_time_unix_nano = span.start_time_unix_nano
                    del span.events[:]
            body = dumps(to_json_doc(request)) if as_json else request.SerializeToString()
            return Built(body, judge_request(request, 0, limits, clock))
        return self._case("time_edge", name, _headers(JSON if as_json else PROTOBUF), make)

    def _compression(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        kinds = ["gzip-bitflip", "gzip-truncated", "gzip-trailing-garbage", "gzip-trailing-zeros",
                 "gzip-concatenated", "gzip-bomb", "deflate-valid", "deflate-raw", "deflate-bitflip",
                 "deflate-trailing", "gzip-empty", "gzip-header-only", "gzip-bad-crc", "gzip-bad-isize",
                 "gzip-json-valid", "gzip-uppercase", "encoding-br", "encoding-list", "gzip-of-gzip",
                 "gzip-random-tail-member"]
        kind = kinds[index % len(kinds)]
        if kind == "gzip-bomb" and index // len(kinds) >= 3:
            kind = "gzip-bitflip"  # a few bombs are enough
        base, limit = self.base_ns, self.limits.max_body_bytes
        encoding = {"deflate-valid": "deflate", "deflate-raw": "deflate", "deflate-bitflip": "deflate",
                    "deflate-trailing": "deflate", "gzip-uppercase": "GZIP", "encoding-br": "br",
                    "encoding-list": "gzip, identity"}.get(kind, "gzip")
        content_type = JSON if kind == "gzip-json-valid" else PROTOBUF
        name = f"compression-{index}-{kind}"

        def make() -> bytes | Built:
            r = random.Random(seed_str)
            request = valid_request(r, base)
            data = request.SerializeToString()
            ids = trace_ids_of(request)
            packed = gzip.compress(data, mtime=0)
            if kind == "gzip-bitflip":
                return _flip_bits(r, packed, r.choice([1, 1, 2, 5]))
            if kind == "gzip-truncated":
                return packed[: r.randrange(len(packed))]
            if kind == "gzip-trailing-garbage":
                return packed + r.randbytes(r.randrange(1, 64))
            if kind == "gzip-trailing-zeros":
                return Built(packed + bytes(r.randrange(1, 16)), Expect(
                    "reject", status=400, trace_ids=ids, note="bytes after the gzip member"))
            if kind == "gzip-concatenated":
                other = valid_request(r, base)
                return packed + gzip.compress(other.SerializeToString(), mtime=0)
            if kind == "gzip-bomb":
                bomb = ld(1, ld(2, ld(2, ld(5, b"bomb") + ld(9, ld(1, b"z") + ld(2, ld(1, bytes(limit + 4096)))))))
                return Built(gzip.compress(bomb, compresslevel=9, mtime=0),
                             Expect("reject", status=413, note=f"inflates to {len(bomb)} B"))
            if kind == "deflate-valid":
                return zlib.compress(data)
            if kind == "deflate-raw":
                packer = zlib.compressobj(wbits=-15)
                return packer.compress(data) + packer.flush()
            if kind == "deflate-bitflip":
                return _flip_bits(r, zlib.compress(data), 1)
            if kind == "deflate-trailing":
                return Built(zlib.compress(data) + b"junk", Expect(
                    "reject", status=400, trace_ids=ids, note="bytes after the deflate stream"))
            if kind == "gzip-empty":
                return gzip.compress(b"", mtime=0)
            if kind == "gzip-header-only":
                return packed[:10]
            if kind == "gzip-bad-crc":
                return Built(packed[:-8] + bytes(4) + packed[-4:], Expect("reject", status=400, trace_ids=ids))
            if kind == "gzip-bad-isize":
                return Built(packed[:-4] + struct.pack("<I", len(data) + 1), Expect("reject", status=400, trace_ids=ids))
            if kind == "gzip-json-valid":
                return gzip.compress(dumps(to_json_doc(request)), mtime=0)
            if kind == "gzip-of-gzip":
                return Built(gzip.compress(packed, mtime=0), Expect("reject", status=400, trace_ids=ids,
                                                                    note="gzip inside gzip is not protobuf"))
            if kind == "gzip-random-tail-member":
                return Built(packed + b"\x1f\x8b" + r.randbytes(20), Expect(
                    "reject", status=400, trace_ids=ids, note="a broken second member"))
            if kind == "encoding-list":
                return Built(packed, Expect("any", spans=span_count(request), note="a list of codings"))
            return packed  # gzip-uppercase, encoding-br: the reference decides
        return self._case("compression", name, _headers(content_type, encoding), make)

    def _lying_encoding(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        lies = [("gzip", "plain"), ("identity", "gzip"), ("deflate", "gzip"), ("gzip", "deflate"),
                ("", "gzip"), ("x-gzip", "gzip"), ("compress", "plain"), ("gzip", "json-plain"), ("identity", "gzip-json")]
        says, is_ = lies[index % len(lies)]
        base = self.base_ns

        def make() -> bytes | Built:
            r = random.Random(seed_str)
            request = valid_request(r, base)
            data = dumps(to_json_doc(request)) if is_.endswith("json") else request.SerializeToString()
            if is_.startswith("gzip"):
                data = gzip.compress(data, mtime=0)
            elif is_ == "deflate":
                data = zlib.compress(data)
            if (says, is_) in (("gzip", "deflate"), ("x-gzip", "gzip")):
                return Built(data, Expect("any", spans=span_count(request),
                                          note="common inflaters auto-detect zlib; x-gzip is gzip's alias"))
            if says in ("", "identity") and is_.startswith("gzip"):
                return Built(data, Expect("reject", status=400, trace_ids=trace_ids_of(request),
                                          note="gzip bytes sent as identity"))
            return data
        content_type = JSON if is_.endswith("json") else PROTOBUF
        headers = _headers(content_type, says if says else None)
        if says == "":
            headers["Content-Encoding"] = ""
        return self._case("lying_content_encoding", f"lie-enc-{index}-says-{says or 'empty'}-is-{is_}", headers, make)

    def _lying_type(self, rng: random.Random, index: int) -> Case:
        seed_str = f"{self._seed_str}/body"
        lies = [("application/json", "pb"), ("application/x-protobuf", "json"), ("text/plain", "pb"), (None, "pb"),
                ("", "json"), ("application/grpc", "pb"), ("multipart/form-data; boundary=x", "json"),
                ("application/jsonx", "json"), ("APPLICATION/JSON", "json"), ("application/x-protobuf; charset=x", "pb"),
                ("application/protobuf", "json"), ("application/json; charset=latin-1", "json"),
                ("application/x-ndjson", "json"), ("application/octet-stream", "pb"), ("*/*", "pb"),
                ("application/json, application/x-protobuf", "pb")]
        says, is_ = lies[index % len(lies)]
        base = self.base_ns

        def make() -> bytes:
            r = random.Random(seed_str)
            request = valid_request(r, base)
            return dumps(to_json_doc(request)) if is_ == "json" else request.SerializeToString()
        headers = _headers(says)
        return self._case("lying_content_type", f"lie-type-{index}-says-{says}-is-{is_}", headers, make)

    def _structural(self, rng: random.Random, index: int) -> Case:
        """gRPC: messages that are protobuf-shaped but wrong where it matters."""
        seed_str = f"{self._seed_str}/body"
        base = self.base_ns
        kinds = ["wrong-wire-type", "unknown-fields", "overlong-varint", "length-past-end", "group-tags",
                 "field-zero", "empty", "empty-resource-spans", "span-as-varint", "nested-length-lie",
                 "deprecated-field-numbers", "huge-field-number"]
        kind = kinds[index % len(kinds)]

        def make() -> bytes:
            r = random.Random(seed_str)
            request = valid_request(r, base)
            data = request.SerializeToString()
            if kind == "wrong-wire-type":
                return varint(1 << 3 | 0) + varint(r.randrange(1 << 20)) + data
            if kind == "unknown-fields":
                return data + ld(1000 + r.randrange(1000), r.randbytes(8)) + varint(99 << 3 | 0) + varint(5)
            if kind == "overlong-varint":
                return b"\x0a" + b"\xff" * 11 + data
            if kind == "length-past-end":
                return b"\x0a" + varint(len(data) + r.randrange(1, 1000)) + data
            if kind == "group-tags":
                return varint(1 << 3 | 3) + data + varint(2 << 3 | 4)
            if kind == "field-zero":
                return b"\x00\x00" + data
            if kind == "empty":
                return b""
            if kind == "empty-resource-spans":
                return b"\x0a\x00" * r.randrange(1, 50)
            if kind == "span-as-varint":
                return ld(1, ld(2, varint(2 << 3 | 0) + varint(7)))
            if kind == "nested-length-lie":
                inner = request.resource_spans[0].SerializeToString()
                return b"\x0a" + varint(len(inner) - r.randrange(1, 8)) + inner
            if kind == "deprecated-field-numbers":
                return ld(1, ld(1000, data))  # ResourceSpans with the old instrumentation_library field numbers
            return varint((2**29 - 1) << 3 | 2) + varint(4) + b"abcd" + data
        return self._case("structural", f"structural-{index}-{kind}", {}, make)


# -- judging answers -----------------------------------------------------------------------------


@dataclass
class Verdict:
    """What an answer showed: problems found (empty = as the contract asks) and spans it stored."""

    problems: list[str]
    stored: int = 0
    rejected: int | None = None
    reason: str = ""


def _rpc_status(content_type: str, content: bytes) -> str:
    from google.rpc import status_pb2

    status = status_pb2.Status()
    if content_type.startswith("application/x-protobuf"):
        status.ParseFromString(content)
    else:
        json_format.Parse(content, status)
    return status.message


def judge_http(expect: Expect, status: int, content_type: str, content: bytes) -> Verdict:
    """Judge one OTLP/HTTP answer against the expectation."""
    problems: list[str] = []
    if status >= 500:
        if status == 503 and expect.may_503:
            return Verdict([], 0, reason="503 backlog")
        try:
            reason = _rpc_status(content_type, content)
        except Exception:
            reason = content[:120].decode("utf-8", "replace")
        return Verdict([f"{status} (expected {expect.outcome}): {reason}"], 0, reason=reason)
    if 400 <= status < 500:
        try:
            reason = _rpc_status(content_type, content)
        except Exception as exc:
            return Verdict([f"{status} whose body is not a google.rpc.Status ({exc}): {content[:80]!r}"])
        if not reason:
            problems.append(f"{status} without a reason")
        if expect.outcome in ("partial", "accept", "ok"):
            problems.append(f"{status} (expected {expect.outcome}): {reason}")
        elif expect.status and status != expect.status:
            problems.append(f"{status} (expected {expect.status}): {reason}")
        return Verdict(problems, 0, reason=reason)
    if status != 200:
        return Verdict([f"unexpected status {status}"])
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    reply = ExportTraceServiceResponse()
    try:
        if content_type.startswith("application/x-protobuf"):
            reply.ParseFromString(content)
        else:
            json_format.Parse(content, reply)
    except Exception as exc:
        return Verdict([f"200 whose body is not an ExportTraceServiceResponse ({exc})"])
    rejected = reply.partial_success.rejected_spans
    message = reply.partial_success.error_message
    if rejected and not message:
        problems.append("partial_success without an error_message")
    if expect.outcome == "reject":
        problems.append(f"200 (expected {expect.status or '4xx'}; {expect.note})" +
                        (f", partial: {message}" if rejected else ""))
    elif expect.outcome == "partial":
        if not rejected:
            problems.append(f"200 without partial_success (expected {expect.rejected} rejected; {expect.note})")
        elif expect.rejected is not None and rejected != expect.rejected:
            problems.append(f"partial_success rejected {rejected}, expected {expect.rejected}: {message}")
    elif expect.outcome == "accept" and rejected:
        problems.append(f"partial_success rejected {rejected} of a valid request: {message}")
    stored = max(0, expect.spans - rejected)
    return Verdict(problems, stored, rejected, message)


GRPC_REFUSALS = {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "OUT_OF_RANGE", "FAILED_PRECONDITION"}


def judge_grpc(expect: Expect, code: str, details: str, reply: bytes | None) -> Verdict:
    """Judge one gRPC answer: ``code`` is the StatusCode name, ``reply`` the raw response on OK."""
    if code == "OK":
        http_like = judge_http(expect, 200, "application/x-protobuf", reply or b"")
        return http_like
    if code == "UNAVAILABLE" and expect.may_503:
        return Verdict([], 0, reason=details)
    problems = []
    if code not in GRPC_REFUSALS:
        problems.append(f"{code} (expected {expect.outcome}): {details}")
    elif expect.outcome in ("partial", "accept", "ok"):
        problems.append(f"{code} (expected {expect.outcome}): {details}")
    if not details:
        problems.append(f"{code} without details")
    return Verdict(problems, 0, reason=details)


# -- sending ---------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One case sent: how it was answered and what the contract thinks of that."""

    case: Case
    expect: Expect
    status: str  # "200", "400", ... for HTTP; "OK", "INVALID_ARGUMENT", ... for gRPC; "timeout" / "reset"
    seconds: float
    verdict: Verdict
    body_bytes: int = 0


def post_case(client: Any, case: Case, timeout_s: float = 30.0) -> Sent:
    """POST one case to ``/v1/traces`` on an ``httpx.Client`` (keep-alive); transport failures are recorded."""
    import httpx

    built = case.build()
    headers = dict(case.headers)
    chunked = headers.pop("X-Fuzz-Chunked", None)
    body = built.body
    content: Any = body if not chunked else iter([body[i: i + 65536] for i in range(0, len(body), 65536)])
    started = time.perf_counter()
    try:
        response = client.post("/v1/traces", content=content, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        return Sent(case, built.expect, "timeout", time.perf_counter() - started,
                    Verdict([f"no answer within {timeout_s} s ({type(exc).__name__})"]), len(body))
    except httpx.TransportError as exc:
        return Sent(case, built.expect, "reset", time.perf_counter() - started,
                    Verdict([f"connection failed: {type(exc).__name__}: {exc}"]), len(body))
    seconds = time.perf_counter() - started
    verdict = judge_http(built.expect, response.status_code, response.headers.get("content-type", ""),
                         response.content)
    return Sent(case, built.expect, str(response.status_code), seconds, verdict, len(body))


def call_grpc(channel: Any, case: Case, timeout_s: float = 30.0) -> Sent:
    """Send one case's bytes as the Export request, with identity serializers (no client-side checks)."""
    import grpc

    built = case.build()
    export = channel.unary_unary(EXPORT_METHOD, request_serializer=None, response_deserializer=None)
    started = time.perf_counter()
    try:
        reply = export(built.body, timeout=timeout_s)
        code, details = "OK", ""
    except grpc.RpcError as error:
        reply, code, details = None, error.code().name, error.details() or ""
    seconds = time.perf_counter() - started
    if code == "DEADLINE_EXCEEDED":
        return Sent(case, built.expect, "timeout", seconds, Verdict([f"no answer within {timeout_s} s"]),
                    len(built.body))
    return Sent(case, built.expect, code, seconds, judge_grpc(built.expect, code, details, reply), len(built.body))


def valid_probe(base_ns: int | None = None, seed: str = "probe") -> tuple[bytes, str, int]:
    """A fresh valid protobuf request (its bytes, trace id hex, span count), timed now."""
    rng = random.Random(f"{seed}/{time.time_ns()}")
    request = valid_request(rng, time.time_ns() if base_ns is None else base_ns, n_spans=3)
    return request.SerializeToString(), request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex(), 3


def post_until_accepted(client: Any, body: bytes, deadline_s: float) -> Any:
    """POST a protobuf body as an exporter would: a 503 is retried after its Retry-After, until the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        response = client.post("/v1/traces", content=body, headers={"Content-Type": PROTOBUF})
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(min(float(response.headers.get("retry-after", "1")), 1.0))
