"""OTLP requests parsed and flattened by the engine: the schema, the structure, the statements.

ClickHouse reads OTLP ``ExportTraceServiceRequest`` bytes itself with its ``Protobuf`` input
format (varint length-delimited messages: a WAL segment's payloads are one input), given a
schema that is wire-compatible with opentelemetry-proto: same field numbers and wire types,
so the engine reads any sender's bytes. The schema travels inline in each statement
(``format_schema_source = 'string'``): nothing to install on a server.

Wire compatibility, field by field, is what :data:`TRACE_SCHEMA` declares; tests round-trip a
request holding every AnyValue kind, nested values to :data:`DEPTH` and beyond, events, links,
resource and scope attributes against the Python path's rows column by column. AnyValue's
nested ``ArrayValue`` / ``KeyValueList`` are declared :data:`DEPTH` levels deep; below that a
nested value's bytes are kept as ``{"otlp.protobuf.base64": "<its protobuf bytes>"}`` in its
JSON (nothing is dropped, and the Python path renders those levels as plain JSON: the one
place the two differ). ``input_format_protobuf_oneof_presence`` tells which member of
AnyValue's oneof is set, so an empty string and an unset value stay apart.

Rendering matches ``collector/rows.py``: strings as is, ints in decimal, bools ``true``/``false``,
doubles as Python's ``repr`` (the same digits; past Python's fixed range, |x| >= 1e16 or < 1e-4,
ClickHouse's layout ``1e-7`` instead of ``1e-07``), arrays and maps as compact JSON
(``json.dumps``), bytes as base64; ids as lowercase hex; a map with a key twice keeps the last
value, like a Python dict.

ContentHash (insert-once identity) is the engine's ``sipHash64`` over the span as parsed with
its resource and scope; it differs from the Python path's digest of the same span, so a copy
of a span stored by the Python path and resent after the switch counts as differing (refused,
the first copy kept, as for any differing copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from flightrec.store.engine import Engine
from flightrec.store.models import SPAN_COLUMN_NAMES

DEPTH = 2  # AnyValue levels under an attribute parsed as values (arrays of arrays of ... maps)

_KINDS = ("none", "string_value", "bool_value", "int_value", "double_value", "array_value", "kvlist_value",
          "bytes_value")
_ENUM = "Enum8(" + ", ".join(f"'{kind}' = {number}" for number, kind in enumerate(_KINDS)) + ")"


def _any_value_messages() -> str:
    """AnyValue0 (an attribute's value) .. AnyValue{DEPTH}; the deepest keeps nested values as bytes."""
    parts = []
    for level in range(DEPTH + 1):
        nested = level < DEPTH
        array, kvlist = (f"ArrayValue{level + 1}", f"KeyValueList{level + 1}") if nested else ("bytes", "bytes")
        parts.append(
            f"message AnyValue{level} {{ oneof value {{ string string_value = 1; bool bool_value = 2; "
            f"int64 int_value = 3; double double_value = 4; {array} array_value = 5; {kvlist} kvlist_value = 6; "
            f"bytes bytes_value = 7; }} }}"
        )
        if level:
            parts.append(f"message ArrayValue{level} {{ repeated AnyValue{level} values = 1; }}")
            parts.append(f"message KeyValueList{level} {{ repeated KeyValue{level} values = 1; }}")
        parts.append(f"message KeyValue{level} {{ string key = 1; AnyValue{level} value = 2; }}")
    return "\n".join(parts)


TRACE_SCHEMA = f"""syntax = "proto3";
{_any_value_messages()}
message Resource {{ repeated KeyValue0 attributes = 1; uint32 dropped_attributes_count = 2; }}
message InstrumentationScope {{ string name = 1; string version = 2; repeated KeyValue0 attributes = 3;
  uint32 dropped_attributes_count = 4; }}
message Event {{ fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue0 attributes = 3;
  uint32 dropped_attributes_count = 4; }}
message Link {{ bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue0 attributes = 4;
  uint32 dropped_attributes_count = 5; fixed32 flags = 6; }}
message Status {{ string message = 2; int32 code = 3; }}
message Span {{ bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  fixed32 flags = 16; string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8; repeated KeyValue0 attributes = 9; uint32 dropped_attributes_count = 10;
  repeated Event events = 11; uint32 dropped_events_count = 12; repeated Link links = 13;
  uint32 dropped_links_count = 14; Status status = 15; }}
message ScopeSpans {{ InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }}
message ResourceSpans {{ Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }}
message ExportTraceServiceRequest {{ repeated ResourceSpans resource_spans = 1; }}
"""

# Only what the identity check and the partition split need: the engine skips every other field.
KEY_SCHEMA = """syntax = "proto3";
message Span { bytes trace_id = 1; bytes span_id = 2; fixed64 start_time_unix_nano = 7; }
message ScopeSpans { repeated Span spans = 2; }
message ResourceSpans { repeated ScopeSpans scope_spans = 2; }
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
"""


def _any_value_type(level: int) -> str:
    if level < DEPTH:
        inner = _any_value_type(level + 1)
        array = f"Tuple(values Array({inner}))"
        kvlist = f"Tuple(values Array(Tuple(key String, value {inner})))"
    else:
        array = kvlist = "String"
    return (f"Tuple(value {_ENUM}, string_value String, bool_value UInt8, int_value Int64, double_value Float64, "
            f"array_value {array}, kvlist_value {kvlist}, bytes_value String)")


_KEY_VALUES = f"Array(Tuple(key String, value {_any_value_type(0)}))"
TRACE_STRUCTURE = (
    "resource_spans Array(Tuple("
    f"resource Tuple(attributes {_KEY_VALUES}, dropped_attributes_count UInt32), "
    "scope_spans Array(Tuple("
    f"scope Tuple(name String, version String, attributes {_KEY_VALUES}, dropped_attributes_count UInt32), "
    "spans Array(Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, flags UInt32, "
    "name String, kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, "
    f"attributes {_KEY_VALUES}, dropped_attributes_count UInt32, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {_KEY_VALUES}, "
    "dropped_attributes_count UInt32)), dropped_events_count UInt32, "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {_KEY_VALUES}, "
    "dropped_attributes_count UInt32, flags UInt32)), dropped_links_count UInt32, "
    "status Tuple(message String, code Int32))), "
    "schema_url String)), "
    "schema_url String))"
)
KEY_STRUCTURE = ("resource_spans Array(Tuple(scope_spans Array(Tuple(spans Array(Tuple("
                 "trace_id String, span_id String, start_time_unix_nano UInt64))))))")


def _quote(text: str) -> str:
    """A string literal of our own constant text (schema, structure): backslashes and quotes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", " ") + "'"


def format_settings(schema: str) -> dict[str, Any]:
    """The settings every statement reading OTLP bytes carries."""
    return {
        "format_schema_source": "string",
        "format_schema": schema,
        "format_schema_message_name": "ExportTraceServiceRequest",
        "input_format_protobuf_oneof_presence": 1,
        "output_format_json_escape_forward_slashes": 0,
    }


# -- rendering: AnyValue to the text the attribute maps hold (collector/rows.py's any_value_to_str) --------

def _python_float(x: str, json: bool) -> str:
    """Python's ``repr`` of a Float64 (``json``: json.dumps's NaN/Infinity) for the values spans carry:
    ClickHouse prints the same shortest digits, without Python's '.0' on integral values. Past
    Python's fixed range (|x| >= 1e16 or < 1e-4) the layout differs (``1e-07`` vs ``1e-7``): the
    same number, read back the same by every reader (they parse it)."""
    nan, inf = ("'NaN'", "'Infinity'") if json else ("'nan'", "'inf'")
    return (f"multiIf(isNaN({x}), {nan}, isInfinite({x}), if({x} > 0, {inf}, concat('-', {inf})), "
            f"{x} = floor({x}) AND abs({x}) < 1e16, concat(if({x} = 0 AND toString({x}) = '-0', '-', ''), "
            f"toString(toInt64({x})), '.0'), toString({x}))")


def _json(v: str, level: int) -> str:
    """An AnyValue (tuple expression ``v`` at ``level``) as compact JSON, as json.dumps writes it.

    An array's items and a map's entries are rendered by one expression over both (one of them is
    empty: a oneof), so the statement grows linearly with DEPTH."""
    if level < DEPTH:
        item = f"i{level}"
        items = (f"arrayConcat(arrayMap(x -> tuple('', x), {v}.array_value.values), "
                 f"arrayMap(x -> tuple(x.key, x.value), {v}.kvlist_value.values))")
        bound = f"arrayMap({item} -> ({item}.1, {_json(f'{item}.2', level + 1)}), {items})"
        nested = (f"arrayMap(p -> if({v}.value = 'array_value', "
                  f"concat('[', arrayStringConcat(arrayMap(q -> q.2, p), ','), ']'), "
                  f"{_json_object('arrayMap(q -> q.1, p)', 'arrayMap(q -> q.2, p)')}), [{bound}])[1]")
    else:
        nested = ("concat('{\"otlp.protobuf.base64\":', toJSONString(base64Encode("
                  f"if({v}.value = 'array_value', {v}.array_value, {v}.kvlist_value))), '}}')")
    return (f"multiIf({v}.value = 'string_value', toJSONString({v}.string_value), {_scalars(v, True)}, "
            f"{v}.value IN ('array_value', 'kvlist_value'), {nested}, "
            f"{v}.value = 'bytes_value', toJSONString(base64Encode({v}.bytes_value)), 'null')")


def _json_object(keys: str, values: str) -> str:
    """``{"k":v,...}`` from parallel arrays; a key twice keeps its first place and its last value (a dict)."""
    return f"concat('{{', arrayStringConcat(arrayMap(e -> concat(toJSONString(e.1), ':', e.2), {_last_wins(keys, values)}), ','), '}}')"


def _last_wins(keys: str, values: str) -> str:
    """(key, value) pairs with each key once, in first-seen order, with its last value (a Python dict)."""
    return (f"arrayMap(kv -> if(length(arrayDistinct(kv.1)) = length(kv.1), arrayZip(kv.1, kv.2), "
            "arrayMap(k -> (k, kv.2[length(kv.1) + 1 - indexOf(arrayReverse(kv.1), k)]), arrayDistinct(kv.1))), "
            f"[({keys}, {values})])[1]")


def _scalars(v: str, json: bool) -> str:
    """The int, bool and double branches of a ``multiIf`` over an AnyValue (the same in text and JSON)."""
    return (f"{v}.value = 'int_value', toString({v}.int_value), "
            f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
            f"{v}.value = 'double_value', {_python_float(f'{v}.double_value', json)}")


def _text(v: str) -> str:
    """An attribute's AnyValue as the map's string (rows.any_value_to_str)."""
    return (f"multiIf({v}.value = 'string_value', {v}.string_value, {_scalars(v, False)}, "
            f"{v}.value = 'none', '', {_json(v, 0)})")


def _values(attributes: str) -> str:
    """Every AnyValue of a KeyValue array as the maps' strings (rows.any_value_to_str).

    Strings (most values) are taken as they are; only the others are rendered, over the filtered
    array: the engine evaluates both branches of an ``if`` inside a lambda."""
    other = "a.value.value != 'string_value'"
    rendered = f"arrayMap(a -> {_text('a.value')}, arrayFilter(a -> {other}, {attributes}))"
    values = (f"arrayMap((a, i) -> if({other}, _r[i], a.value.string_value), {attributes}, "
              f"arrayCumSum(arrayMap(a -> toUInt32({other}), {attributes})))")
    return f"arrayMap(_r -> {values}, [{rendered}])[1]"


def _map(offset: str, length: str) -> str:
    """The Map column of ``length`` attributes from ``offset`` in the span's rendered ``_k``/``_v``
    (a key twice: the last value, as a Python dict keeps)."""
    pairs = _last_wins(f"arraySlice(_k, {offset}, {length})", f"arraySlice(_v, {offset}, {length})")
    return f"arrayMap(p -> mapFromArrays(arrayMap(e -> e.1, p), arrayMap(e -> e.2, p)), [{pairs}])[1]"


# Every attribute list of a span in one array, rendered by one expression (its text is most of what the
# engine analyses per statement: one rendering instead of five took the fixed cost of a statement from
# ~0.4 s to ~0.1 s): resource, scope, span, each event's, each link's, in that order.
_LISTS = ("arrayConcat(rs.resource.attributes, ss.scope.attributes, s.attributes, "
          "arrayFlatten(arrayMap(e -> e.attributes, s.events)), arrayFlatten(arrayMap(l -> l.attributes, s.links)))")
_LENGTHS = ("length(rs.resource.attributes) AS _nr, length(ss.scope.attributes) AS _nc, "
            "length(s.attributes) AS _ns, arrayMap(e -> length(e.attributes), s.events) AS _ne, "
            "arrayMap(l -> length(l.attributes), s.links) AS _nl")
_EVENTS_AT = "_nr + _nc + _ns + 1"
_LINKS_AT = f"{_EVENTS_AT} + arraySum(_ne)"


def _maps_at(lengths: str, base: str) -> str:
    """One map per event (or link): their attributes follow each other from ``base``."""
    return f"arrayMap((n, c) -> {_map(f'{base} + c - n', 'n')}, {lengths}, arrayCumSum({lengths}))"


def _hex(value: str) -> str:
    return f"lower(hex({value}))"


_SPAN_KINDS = "['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer']"
_STATUS_CODES = "['Unset', 'Ok', 'Error']"

# otel_traces' insert columns (SPAN_COLUMN_NAMES) over one span ``s`` of scope ``ss`` of resource ``rs``.
_SELECT: dict[str, str] = {
    "Timestamp": "fromUnixTimestamp64Nano(accurateCast(s.start_time_unix_nano, 'Int64'))",
    "TraceId": _hex("s.trace_id"),
    "SpanId": _hex("s.span_id"),
    "ParentSpanId": _hex("s.parent_span_id"),
    "TraceState": "s.trace_state",
    "SpanName": "s.name",
    "SpanKind": f"if(s.kind BETWEEN 0 AND 5, {_SPAN_KINDS}[s.kind + 1], 'Unspecified')",
    "ServiceName": "ResourceAttributes['service.name']",
    "ResourceAttributes": _map("1", "_nr"),
    "ScopeName": "ss.scope.name",
    "ScopeVersion": "ss.scope.version",
    "SpanAttributes": _map("_nr + _nc + 1", "_ns"),
    "Duration": "greatest(s.end_time_unix_nano, s.start_time_unix_nano) - s.start_time_unix_nano",
    "StatusCode": f"if(s.status.code BETWEEN 0 AND 2, {_STATUS_CODES}[s.status.code + 1], 'Unset')",
    "StatusMessage": "s.status.message",
    "Events.Timestamp": "arrayMap(e -> fromUnixTimestamp64Nano(accurateCast(e.time_unix_nano, 'Int64')), s.events)",
    "Events.Name": "arrayMap(e -> e.name, s.events)",
    "Events.Attributes": _maps_at("_ne", _EVENTS_AT),
    "Links.TraceId": f"arrayMap(l -> {_hex('l.trace_id')}, s.links)",
    "Links.SpanId": f"arrayMap(l -> {_hex('l.span_id')}, s.links)",
    "Links.TraceState": "arrayMap(l -> l.trace_state, s.links)",
    "Links.Attributes": _maps_at("_nl", _LINKS_AT),
    "ContentHash": "0",
}
assert tuple(_SELECT) == SPAN_COLUMN_NAMES, "one expression per insert column, in order"


class SegmentSource(BaseModel):
    """Where a statement reads a segment's OTLP bytes: a file the engine reads (embedded) or, on a
    server, the insert body (``input``) and an external table (``segment``) for a SELECT."""

    path: str = Field(default="", description="varint length-delimited requests in a file (embedded)")
    body: bytes = Field(default=b"", description="the same bytes, sent with the statement (server)")

    def table(self, structure: str, *, insert: bool) -> str:
        if self.path:
            return f"file({{path:String}}, 'Protobuf', {_quote(structure)})"
        return f"input({_quote(structure)})" if insert else "segment"


_SPANS_FROM = ("ARRAY JOIN resource_spans AS rs ARRAY JOIN rs.scope_spans AS ss ARRAY JOIN ss.spans AS s")


def spans_query(source: SegmentSource, *, numbered: bool = False, insert: bool = False) -> str:
    """Every span of the segment as otel_traces' insert columns (``_n``: its place in the segment).

    ContentHash hashes the span as stored (every column) plus what the columns leave out (flags,
    dropped counts, schema URLs, scope attributes): hashing the parsed nested tuples themselves
    cost 20 us a span, the rendered columns a fraction of that."""
    inner = ", ".join(f"{expression} AS `{name}`" for name, expression in _SELECT.items() if name != "ContentHash")
    stored = ", ".join(f"`{name}`" for name in SPAN_COLUMN_NAMES if name != "ContentHash")
    extra = ("s.flags, s.dropped_attributes_count, s.dropped_events_count, s.dropped_links_count, "
             "arrayMap(e -> e.dropped_attributes_count, s.events), "
             "arrayMap(l -> (l.flags, l.dropped_attributes_count), s.links), rs.schema_url, ss.schema_url, "
             f"rs.resource.dropped_attributes_count, {_map('_nr + 1', '_nc')}, ss.scope.dropped_attributes_count")
    number = ", rowNumberInAllBlocks() AS _n" if numbered else ""
    return (f"SELECT {stored}, if(_h = 0, 1, _h) AS ContentHash{', _n' if numbered else ''} FROM ("
            f"SELECT {inner}, sipHash64({stored}, {extra}) AS _h{number} FROM ("
            f"SELECT rs, ss, s, {_LENGTHS}, arrayMap(a -> a.key, _a) AS _k, {_values('_a')} AS _v FROM ("
            f"SELECT rs, ss, s, {_LISTS} AS _a "
            f"FROM {source.table(TRACE_STRUCTURE, insert=insert)} {_SPANS_FROM})))")


def keys_query(source: SegmentSource) -> str:
    return (f"SELECT {_hex('s.trace_id')} AS trace_id, {_hex('s.span_id')} AS span_id, "
            f"toYYYYMMDD(fromUnixTimestamp64Nano(accurateCast(s.start_time_unix_nano, 'Int64'))) AS day "
            f"FROM {source.table(KEY_STRUCTURE, insert=False)} {_SPANS_FROM}")


def insert_statement(source: SegmentSource, database: str, *, skip: Sequence[tuple[str, str]] = (),
                     days: Sequence[int] = (), first_copies: bool = False,
                     table: str = "otel_traces") -> tuple[str, dict[str, Any]]:
    """The INSERT ... SELECT of a segment's spans and its parameters (see :meth:`OtlpRepository.insert_spans`);
    on a server it ends ``FORMAT Protobuf`` and the segment's bytes are its body."""
    where, params = [], {}
    if skip:
        where.append("(TraceId, SpanId) NOT IN {skip:Array(Tuple(String, String))}")
        params["skip"] = list(skip)
    if days:
        where.append("toYYYYMMDD(Timestamp) IN {days:Array(UInt32)}")
        params["days"] = list(days)
    select = spans_query(source, numbered=first_copies, insert=True)
    if first_copies:
        select = (f"SELECT {', '.join(f'`{name}`' for name in SPAN_COLUMN_NAMES)} FROM ({select}) "
                  "ORDER BY _n LIMIT 1 BY TraceId, SpanId")
    if where:
        select = f"SELECT * FROM ({select}) WHERE {' AND '.join(where)}"
    columns = ", ".join(f"`{name}`" for name in SPAN_COLUMN_NAMES)
    sql = f"INSERT INTO {database}.{table} ({columns}) {select}"
    if source.path:
        return sql, {**params, "path": source.path}
    return f"{sql} FORMAT Protobuf", params


class SpanKeys(BaseModel):
    """Every span of a segment, in order: ids and the day (partition, as YYYYMMDD) it falls in."""

    trace_ids: list[str]
    span_ids: list[str]
    days: list[int]


class OtlpRepository:
    """Named statements over a segment's OTLP bytes, parsed by the engine."""

    def __init__(self, engine: Engine, database: str) -> None:
        self.engine = engine
        self.db = database

    @staticmethod
    def _reading(source: SegmentSource, structure: str) -> dict[str, Any]:
        """The parameters (embedded: the file) or external table (server: the bytes) a SELECT reads."""
        if source.path:
            return {"params": {"path": source.path}}
        return {"params": {}, "external": {"name": "segment", "data": source.body, "fmt": "Protobuf",
                                           "structure": structure}}

    def span_keys(self, source: SegmentSource) -> SpanKeys:
        """The ids and days of a segment's spans (a parse that skips all but three fields)."""
        columns = self.engine.query_columns(
            "segment_span_keys", keys_query(source), settings=format_settings(KEY_SCHEMA),
            **self._reading(source, KEY_STRUCTURE))
        return SpanKeys(trace_ids=columns["trace_id"], span_ids=columns["span_id"], days=columns["day"])

    def span_hashes(self, source: SegmentSource, *, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str, int]]:
        """``(trace id, span id, content hash)`` of the segment's copies of these spans, in segment order."""
        sql = (f"SELECT TraceId, SpanId, ContentHash FROM ({spans_query(source, numbered=True)}) "
               "WHERE (TraceId, SpanId) IN {keys:Array(Tuple(String, String))} ORDER BY _n")
        reading = self._reading(source, TRACE_STRUCTURE)
        reading["params"]["keys"] = list(keys)
        return [tuple(row) for row in self.engine.query(
            "segment_span_hashes", sql, settings=format_settings(TRACE_SCHEMA), **reading)]

    def insert_spans(self, source: SegmentSource, *, token: str, skip: Sequence[tuple[str, str]] = (),
                     days: Sequence[int] = (), first_copies: bool = False, table: str = "otel_traces") -> None:
        """Insert the segment's spans into otel_traces (the engine derives every other column).

        ``skip``: spans left out (already stored); ``days``: only spans in these partitions (a
        segment spread over more days than one insert may create is inserted in groups);
        ``first_copies``: a span twice in the segment is inserted once, its first copy.
        ``token`` is the insert's deduplication token: a retry or a replay inserts nothing twice.
        ``table``: another table with the insert columns (bench/ingest.py's stage sinks).
        """
        sql, params = insert_statement(source, self.db, skip=skip, days=days, first_copies=first_copies,
                                       table=table)
        settings = {**format_settings(TRACE_SCHEMA), "insert_deduplication_token": token}
        self.engine.command("insert_spans_otlp", sql, params, settings=settings, data=None if source.path else source.body)

    def create_stage_sinks(self) -> tuple[str, str]:
        """Two tables with otel_traces' insert columns only, to measure ingest by stage (bench/ingest.py):
        a ``Null`` one (what parsing and flattening cost) and a MergeTree one without derived columns
        (what writing parts costs; otel_traces minus it is what deriving costs)."""
        columns = ", ".join(f"`{name}`" for name in SPAN_COLUMN_NAMES)
        for table, engine in (("stage_parsed", "Null"), ("stage_written", "MergeTree ORDER BY (TraceId, SpanId)")):
            self.engine.command("create_stage_sink", f"CREATE TABLE IF NOT EXISTS {self.db}.{table} ENGINE = {engine} "
                                f"EMPTY AS SELECT {columns} FROM {self.db}.otel_traces")
        return "stage_parsed", "stage_written"
