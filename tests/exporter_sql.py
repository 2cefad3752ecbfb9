"""The OpenTelemetry Collector (contrib) ClickHouse exporter's traces SQL, reproduced for tests.

Copied from open-telemetry/opentelemetry-collector-contrib, ``exporter/clickhouseexporter/``
(Apache-2.0), text unchanged except where a comment says so:

- ``internal/sqltemplates/traces_table.sql`` at f92a5763be13aeb59ecf6f8b47e31d54109191bb: the
  ``fmt.Sprintf`` template (database, table, ON CLUSTER, engine, TTL) with the layout of PR
  #34245 "Upgrade trace table" (ORDER BY (ServiceName, SpanName, toDateTime(Timestamp)), daily
  partitions, bloom filter indexes, ``ttl_only_drop_parts``). :data:`TRACES_TABLE_SQL`.
- ``internal/sqltemplates/traces_table.sql`` at 2bf6b9e1f8c8716ab54eaac1635e56b4d0649900: the
  newest stored version, a Go ``text/template`` (backticked identifiers, ``Delta(8)``/``T64``
  codecs, two ALIAS columns, text indexes when the server has full-text search and bloom
  filters otherwise, a tokenbf index on ``lower(SpanName)``, PRIMARY KEY (ServiceName, SpanName,
  toDateTime(Timestamp)) with ``Timestamp`` added to the ORDER BY). :data:`TRACES_TABLE_TMPL_LATEST`.
- ``internal/sqltemplates/traces_id_ts_lookup_table.sql`` at 61540ced55e993255df9bcfca48ed89a87d3914f
  and ``traces_id_ts_lookup_mv.sql`` at 57b29d74154d72320747c8dd2a0b4a1629a39187: the trace id ->
  time lookup table and the materialized view that fills it from every insert into the spans table.
- ``internal/sqltemplates/traces_insert.sql`` at 61540ced55e993255df9bcfca48ed89a87d3914f: the
  22-column INSERT. ``exporter_traces.go`` still renders it with
  ``fmt.Sprintf(sqltemplates.TracesInsert, cfg.database(), cfg.TracesTableName)`` next to the
  template DDL, so it is the INSERT of both table versions.
- ``exporter_traces.go`` ``pushTraceData`` (newest stored version): the values appended per span,
  which :func:`exporter_row` mirrors; ``internal.GenerateTTLExpr`` (``TTL toDateTime(Timestamp) +
  toIntervalDay(N)``), ``Config.tableEngineString`` (default ``MergeTree()``) and
  ``Config.clusterString`` (``ON CLUSTER name``), which the render functions mirror.

chDB (4.4, ClickHouse 26.x) takes both DDL versions as written, codecs and SETTINGS included
(the bloom-filter branch; the text-index branch too, see tests/test_exporter_table.py): no
adaptation was needed. The exporter sends its INSERT through clickhouse-go's ``PrepareBatch``,
which sends ``INSERT INTO "db"."table" (<the 22 columns>) FORMAT Native`` with the appended
rows; :func:`exporter_insert` does the same through clickhouse-connect with the column list
parsed out of the verbatim statement.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# -- the exporter's text -------------------------------------------------------------------

# internal/sqltemplates/traces_table.sql @ f92a5763be13aeb59ecf6f8b47e31d54109191bb (verbatim;
# %s = database, table, ON CLUSTER clause, engine, TTL clause).
TRACES_TABLE_SQL = """CREATE TABLE IF NOT EXISTS "%s"."%s" %s (
                                     Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
                      Timestamp DateTime64(9),
    Name LowCardinality(String),
    Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
                     TraceId String,
                     SpanId String,
                     TraceState String,
                     Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
    ) ENGINE = %s
    PARTITION BY toDate(Timestamp)
    ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
    %s
    SETTINGS index_granularity=8192, ttl_only_drop_parts = 1
"""

# internal/sqltemplates/traces_table.sql @ 2bf6b9e1f8c8716ab54eaac1635e56b4d0649900 (verbatim Go
# text/template; rendered by _render_go_template below).
TRACES_TABLE_TMPL_LATEST = """CREATE TABLE IF NOT EXISTS {{ident .Database}}.{{ident .TableName}} {{.ClusterString}} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(SpanAttributes, 'Array(Tuple(String, String))')),
{{- if .HasFullTextSearch}}
    INDEX idx_trace_id TraceId TYPE text(tokenizer = 'array'),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE text(tokenizer = 'array'),
    INDEX idx_res_attr_items ResourceAttributeItems TYPE text(tokenizer = 'array'),
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE text(tokenizer = 'array'),
    INDEX idx_span_attr_items SpanAttributeItems TYPE text(tokenizer = 'array'),
{{- else}}
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
{{- end}}
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {{.Engine}}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
{{.TTL}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

# internal/sqltemplates/traces_id_ts_lookup_table.sql @ 61540ced55e993255df9bcfca48ed89a87d3914f
# (verbatim; %s = database, traces table, ON CLUSTER clause, engine, TTL clause).
TRACES_ID_TS_TABLE_SQL = """CREATE TABLE IF NOT EXISTS "%s"."%s_trace_id_ts" %s (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = %s
    PARTITION BY toDate(Start)
    ORDER BY (TraceId, Start)
    %s
    SETTINGS index_granularity=8192, ttl_only_drop_parts = 1"""

# internal/sqltemplates/traces_id_ts_lookup_mv.sql @ 57b29d74154d72320747c8dd2a0b4a1629a39187
# (verbatim; %s = database, table, ON CLUSTER clause, database, table, database, table).
TRACES_ID_TS_MV_SQL = """CREATE MATERIALIZED VIEW IF NOT EXISTS "%s"."%s_trace_id_ts_mv" %s
TO "%s"."%s_trace_id_ts"
AS SELECT
              TraceId,
              min(Timestamp) as Start,
              max(Timestamp) as End
   FROM "%s"."%s"
   WHERE TraceId != ''
   GROUP BY TraceId
"""

# internal/sqltemplates/traces_insert.sql @ 61540ced55e993255df9bcfca48ed89a87d3914f (verbatim;
# %s = database, table).
TRACES_INSERT_SQL = """INSERT INTO "%s"."%s" (
    Timestamp,
    TraceId,
    SpanId,
    ParentSpanId,
    TraceState,
    SpanName,
    SpanKind,
    ServiceName,
    ResourceAttributes,
    ScopeName,
    ScopeVersion,
    SpanAttributes,
    Duration,
    StatusCode,
    StatusMessage,
    Events.Timestamp,
    Events.Name,
    Events.Attributes,
    Links.TraceId,
    Links.SpanId,
    Links.TraceState,
    Links.Attributes
) VALUES (
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?,
    ?
    )
"""

# -- rendering, as the exporter's Go code does it ---------------------------------------------


def ttl_expr(ttl_days: int, time_field: str = "toDateTime(Timestamp)") -> str:
    """``internal.GenerateTTLExpr`` for a whole number of days ('' for none)."""
    return f"TTL {time_field} + toIntervalDay({ttl_days})" if ttl_days > 0 else ""


def cluster_string(cluster: str = "") -> str:
    """``Config.clusterString``."""
    return f"ON CLUSTER {cluster}" if cluster else ""


def _ident(name: str) -> str:
    """The template function ``ident``: backticks, embedded backticks escaped."""
    return "`" + name.replace("`", "\\`") + "`"


_IF_FULL_TEXT = re.compile(
    r"\s*\{\{- if \.HasFullTextSearch\}\}(?P<yes>.*?)\s*\{\{- else\}\}(?P<no>.*?)\s*\{\{- end\}\}", re.S
)


def _render_go_template(template: str, *, database: str, table: str, cluster: str, engine: str, ttl: str,
                        full_text_search: bool) -> str:
    """Render the few text/template actions traces_table.sql uses (``{{-`` trims the whitespace before it)."""
    text = _IF_FULL_TEXT.sub(lambda m: m.group("yes" if full_text_search else "no"), template)
    for action, value in (
        ("{{ident .Database}}", _ident(database)),
        ("{{ident .TableName}}", _ident(table)),
        ("{{.ClusterString}}", cluster),
        ("{{.Engine}}", engine),
        ("{{.TTL}}", ttl),
    ):
        text = text.replace(action, value)
    assert "{{" not in text, text
    return text


def render_traces_table(
    database: str,
    table: str = "otel_traces",
    *,
    ttl_days: int = 0,
    cluster: str = "",
    engine: str = "MergeTree()",
    version: str = "pr34245",
    full_text_search: bool = False,
) -> str:
    """The exporter's CREATE TABLE for its spans table.

    ``version``: ``"pr34245"`` (the fmt template, f92a5763) or ``"latest"`` (the text/template,
    2bf6b9e1; ``full_text_search`` picks its text-index branch, which the exporter takes when the
    server's version has full-text search, else the bloom-filter one).
    """
    ttl = ttl_expr(ttl_days)
    if version == "pr34245":
        return TRACES_TABLE_SQL % (database, table, cluster_string(cluster), engine, ttl)
    if version == "latest":
        return _render_go_template(
            TRACES_TABLE_TMPL_LATEST, database=database, table=table, cluster=cluster_string(cluster),
            engine=engine, ttl=ttl, full_text_search=full_text_search,
        )
    raise ValueError(f"unknown exporter DDL version {version!r}")


def render_trace_id_ts_table(database: str, table: str = "otel_traces", *, ttl_days: int = 0, cluster: str = "",
                             engine: str = "MergeTree()") -> str:
    return TRACES_ID_TS_TABLE_SQL % (database, table, cluster_string(cluster), engine,
                                     ttl_expr(ttl_days, "toDateTime(Start)"))


def render_trace_id_ts_mv(database: str, table: str = "otel_traces", *, cluster: str = "") -> str:
    return TRACES_ID_TS_MV_SQL % (database, table, cluster_string(cluster), database, table, database, table)


def exporter_ddl(database: str, table: str = "otel_traces", **options: Any) -> list[str]:
    """Every statement ``createTraceTables`` runs, in its order: spans table, lookup table, view."""
    ttl_days = options.get("ttl_days", 0)
    cluster = options.get("cluster", "")
    engine = options.get("engine", "MergeTree()")
    return [
        render_traces_table(database, table, **options),
        render_trace_id_ts_table(database, table, ttl_days=ttl_days, cluster=cluster, engine=engine),
        render_trace_id_ts_mv(database, table, cluster=cluster),
    ]


def render_traces_insert(database: str, table: str = "otel_traces") -> str:
    """``renderInsertTracesSQL``."""
    return TRACES_INSERT_SQL % (database, table)


_INSERT = re.compile(r'^INSERT INTO "(?P<db>[^"]+)"\."(?P<table>[^"]+)" \((?P<columns>.*?)\) VALUES', re.S)


def insert_columns(sql: str = TRACES_INSERT_SQL % ("db", "t")) -> list[str]:
    """The column list of the exporter's INSERT, in its order (22 names, Nested ones dotted)."""
    match = _INSERT.match(sql)
    assert match, sql
    return [name.strip() for name in match.group("columns").split(",")]


# -- the rows the exporter appends --------------------------------------------------------------


@dataclass
class ExporterEvent:
    time_ns: int
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExporterLink:
    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExporterSpan:
    """One span as pdata hands it to ``pushTraceData`` (ids as hex, times in ns since the epoch)."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: str = ""
    trace_state: str = ""
    kind: str = "Internal"  # ptrace.SpanKind.String(): Unspecified, Internal, Server, Client, Producer, Consumer
    status_code: str = "Unset"  # ptrace.StatusCode.String(): Unset, Ok, Error
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=lambda: {"service.name": "exporter-agent"})
    scope_name: str = ""
    scope_version: str = ""
    events: list[ExporterEvent] = field(default_factory=list)
    links: list[ExporterLink] = field(default_factory=list)


def _as_string(value: Any) -> str:
    """``pcommon.Value.AsString``: strings as they are, bool/int/double printed, arrays and maps as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # Go prints doubles without an exponent; the same for the values tests use
    return json.dumps(value, separators=(",", ":"))


def _attributes_to_map(attributes: dict[str, Any]) -> dict[str, str]:
    """``internal.AttributesToMap``."""
    return {key: _as_string(value) for key, value in attributes.items()}


def exporter_row(span: ExporterSpan) -> list[Any]:
    """The 22 values ``batch.Append`` gets for one span, in the INSERT's column order."""
    return [
        span.start_ns,  # span.StartTimestamp().AsTime() (DateTime64(9): nanosecond ticks)
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.trace_state,
        span.name,
        span.kind,
        _as_string(span.resource.get("service.name", "")),  # internal.GetServiceName
        _attributes_to_map(span.resource),
        span.scope_name,
        span.scope_version,
        _attributes_to_map(span.attributes),
        span.end_ns - span.start_ns,
        span.status_code,
        span.status_message,
        [event.time_ns for event in span.events],
        [event.name for event in span.events],
        [_attributes_to_map(event.attributes) for event in span.events],
        [link.trace_id for link in span.links],
        [link.span_id for link in span.links],
        [link.trace_state for link in span.links],
        [_attributes_to_map(link.attributes) for link in span.links],
    ]


def exporter_insert(client: Any, database: str, table: str, spans: list[ExporterSpan]) -> None:
    """Insert ``spans`` as the exporter does: one batch, exactly its 22 columns, nothing else.

    ``client`` is a clickhouse-connect client; the columns the exporter does not name (all of
    Flight Recorder's) get their DEFAULTs, as they would on rows the exporter writes.
    """
    sql = render_traces_insert(database, table)
    match = _INSERT.match(sql)
    assert match
    client.insert(
        f'"{match.group("db")}"."{match.group("table")}"',
        [exporter_row(span) for span in spans],
        column_names=insert_columns(sql),
    )
