"""The reads other tools make of otel_traces (Grafana's ClickHouse data source in OTel mode, ClickStack).

Flight Recorder's own reads go by trace or object; these go by service and time, and by trace id
through the exporter's ``otel_traces_trace_id_ts`` lookup. They are here so the schema that serves
them (migrations 0022-0023) is measured (bench/schema_reads.py) and tested on the statements such a
tool sends, and ``explain`` shows which index or projection the engine picks for each.
"""

from __future__ import annotations

from typing import Any

from flightrec.store.engine import Engine
from pydantic import BaseModel

SERVICE_WINDOW = (
    "ServiceName = {service:String} AND Timestamp >= fromUnixTimestamp64Nano({since:Int64}) "
    "AND Timestamp < fromUnixTimestamp64Nano({until:Int64})"
)
BLOOM_INDEXES = ("idx_res_attr_key", "idx_res_attr_value", "idx_span_attr_key", "idx_span_attr_value")
SPAN_LIST = "TraceId, SpanId, ParentSpanId, ServiceName, SpanName, toUnixTimestamp64Nano(Timestamp), Duration, StatusCode"


class SpanSummary(BaseModel):
    """One span as a trace list shows it."""

    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    name: str
    start_ns: int
    duration_ns: int
    status_code: str


class ServiceSpan(BaseModel):
    """A service's span count and first and last span start."""

    service: str
    spans: int
    first_ns: int
    last_ns: int


class SchemaStorage(BaseModel):
    """What otel_traces and the tool schema cost on disk (``spans_bytes`` includes the projections and indexes)."""

    spans: int
    spans_bytes: int
    lookup_bytes: int
    projection_bytes: dict[str, int]
    index_bytes: dict[str, int]


def _summaries(rows: list[tuple]) -> list[SpanSummary]:
    return [SpanSummary(trace_id=trace, span_id=span, parent_span_id=parent, service=service, name=name,
                        start_ns=start, duration_ns=duration, status_code=status)
            for trace, span, parent, service, name, start, duration, status in rows]


class ToolReads:
    """Named statements shaped like a trace tool's reads."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine = engine
        self.db = db
        # what an ALTER of the spans' storage names (on a cluster: the local table on every shard)
        topology = engine.topology
        self._spans_storage = f"{db}.{topology.storage_name('otel_traces')} {topology.on_cluster('otel_traces')}"

    def _service_roots_sql(self) -> str:
        return (f"SELECT {SPAN_LIST} FROM {self.db}.otel_traces WHERE {SERVICE_WINDOW} AND ParentSpanId = '' "
                "ORDER BY Timestamp DESC LIMIT {limit:UInt32}")

    def service_roots(self, *, service: str, since_ns: int, until_ns: int, limit: int = 100,
                      settings: dict[str, Any] | None = None) -> list[SpanSummary]:
        """The root spans of one service in ``[since, until)``, newest first: a trace search's list."""
        rows = self.engine.query("service_roots", self._service_roots_sql(),
                                 {"service": service, "since": since_ns, "until": until_ns, "limit": limit}, settings)
        return _summaries(rows)

    def service_span_counts(self, *, service: str, since_ns: int, until_ns: int,
                            settings: dict[str, Any] | None = None) -> dict[str, int]:
        """Spans per span name of one service in ``[since, until)``: a dashboard's panel."""
        rows = self.engine.query(
            "service_span_counts",
            f"SELECT SpanName, count() FROM {self.db}.otel_traces WHERE {SERVICE_WINDOW} GROUP BY SpanName",
            {"service": service, "since": since_ns, "until": until_ns}, settings)
        return {name: int(count) for name, count in rows}

    def services(self) -> list[ServiceSpan]:
        """Every service with its span count and time range: a tool's service picker."""
        rows = self.engine.query(
            "tool_services",
            f"SELECT ServiceName, count(), toUnixTimestamp64Nano(min(Timestamp)), toUnixTimestamp64Nano(max(Timestamp)) "
            f"FROM {self.db}.otel_traces GROUP BY ServiceName ORDER BY ServiceName",
        )
        return [ServiceSpan(service=service, spans=spans, first_ns=first, last_ns=last)
                for service, spans, first, last in rows]

    def spans_with_attribute(self, *, key: str, value: str, limit: int = 1000,
                             settings: dict[str, Any] | None = None) -> list[SpanSummary]:
        """Spans whose attribute ``key`` is ``value`` (a tool's attribute filter; the map bloom filters)."""
        rows = self.engine.query(
            "spans_with_attribute",
            f"SELECT {SPAN_LIST} FROM {self.db}.otel_traces WHERE SpanAttributes[{{key:String}}] = {{value:String}} "
            "ORDER BY Timestamp LIMIT {limit:UInt32}",
            {"key": key, "value": value, "limit": limit}, settings)
        return _summaries(rows)

    def trace_by_lookup(self, *, trace_id: str, settings: dict[str, Any] | None = None) -> list[SpanSummary]:
        """One trace's spans the way Grafana reads them in OTel mode: its time bounds from the lookup
        table first, then its spans within them (a trace missing from the lookup returns nothing)."""
        rows = self.engine.query(
            "trace_by_lookup",
            f"WITH (SELECT min(Start) FROM {self.db}.otel_traces_trace_id_ts WHERE TraceId = {{trace_id:String}}) "
            f"AS trace_start, (SELECT max(End) + 1 FROM {self.db}.otel_traces_trace_id_ts "
            "WHERE TraceId = {trace_id:String}) AS trace_end "
            f"SELECT {SPAN_LIST} FROM {self.db}.otel_traces WHERE TraceId = {{trace_id:String}} "
            "AND Timestamp >= trace_start AND Timestamp <= trace_end ORDER BY Timestamp",
            {"trace_id": trace_id}, settings)
        return _summaries(rows)

    def explain_service_roots(self, *, service: str, since_ns: int, until_ns: int) -> str:
        """``EXPLAIN indexes = 1`` of :meth:`service_roots`: which projection and indexes it reads."""
        return self._explain(self._service_roots_sql(),
                             {"service": service, "since": since_ns, "until": until_ns, "limit": 100})

    def explain_attribute_filter(self, *, key: str, value: str) -> str:
        """``EXPLAIN indexes = 1`` of spans whose attribute ``key`` is ``value`` (the map bloom filters)."""
        return self._explain(f"SELECT TraceId, SpanId FROM {self.db}.otel_traces WHERE SpanAttributes[{{key:String}}] "
                             "= {value:String}", {"key": key, "value": value})

    def explain_attribute_value(self, *, value: str) -> str:
        """``EXPLAIN indexes = 1`` of spans with ``value`` under any attribute key."""
        return self._explain(f"SELECT TraceId, SpanId FROM {self.db}.otel_traces WHERE has(mapValues(SpanAttributes), "
                             "{value:String})", {"value": value})

    def explain_resource_key(self, *, key: str) -> str:
        """``EXPLAIN indexes = 1`` of spans whose resource has ``key``."""
        return self._explain(f"SELECT TraceId, SpanId FROM {self.db}.otel_traces WHERE mapContains(ResourceAttributes, "
                             "{key:String})", {"key": key})

    def explain_trace(self, *, trace_id: str) -> str:
        """``EXPLAIN indexes = 1`` of one trace's spans (the story's read, by the table's key)."""
        return self._explain(f"SELECT {SPAN_LIST} FROM {self.db}.otel_traces WHERE TraceId = {{trace_id:String}}",
                             {"trace_id": trace_id})

    def storage(self) -> SchemaStorage:
        """Bytes on disk of otel_traces, its projections and skip indexes, and the lookup table."""
        # this node's storage: on a cluster, the local tables of its shard
        spans, lookup = (self.engine.topology.storage_name(t) for t in ("otel_traces", "otel_traces_trace_id_ts"))
        table = self.engine.query(
            "tool_storage_table",
            "SELECT table, sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = {db:String} AND active "
            "AND table IN ({spans:String}, {lookup:String}) GROUP BY table", {"db": self.db, "spans": spans, "lookup": lookup})
        projections = self.engine.query(
            "tool_storage_projections",
            "SELECT name, sum(bytes_on_disk) FROM system.projection_parts WHERE database = {db:String} "
            "AND table = {spans:String} AND active GROUP BY name", {"db": self.db, "spans": spans})
        indexes = self.engine.query(
            "tool_storage_indexes",
            "SELECT name, data_compressed_bytes FROM system.data_skipping_indices WHERE database = {db:String} "
            "AND table = {spans:String}", {"db": self.db, "spans": spans})
        sizes = {name: (int(size), int(rows)) for name, size, rows in table}
        spans_bytes, span_count = sizes.get(spans, (0, 0))
        return SchemaStorage(spans=span_count, spans_bytes=spans_bytes, lookup_bytes=sizes.get(lookup, (0, 0))[0],
                             projection_bytes={name: int(size) for name, size in projections},
                             index_bytes={name: int(size) for name, size in indexes})

    def rebuild_tool_schema(self, what: str) -> None:
        """Drop and build again, synchronously, the ``projection`` or the ``bloom filters`` of the stored
        parts: what migration 0022 costs a store that already holds spans (bench/schema_reads.py)."""
        if what == "projection":
            names = [("PROJECTION", "by_service_time")]
        elif what == "bloom filters":
            names = [("INDEX", name) for name in BLOOM_INDEXES]
        else:
            raise ValueError(f"nothing to rebuild called {what!r}: 'projection' or 'bloom filters'")
        for verb in ("CLEAR", "MATERIALIZE"):
            self.engine.command(f"{verb.lower()}_tool_schema", f"ALTER TABLE {self._spans_storage} "
                                + ", ".join(f"{verb} {kind} {name}" for kind, name in names),
                                settings={"mutations_sync": 2})

    def _explain(self, sql: str, params: dict[str, Any]) -> str:
        return "\n".join(row[0] for row in self.engine.query("explain", f"EXPLAIN indexes = 1 {sql}", params))
