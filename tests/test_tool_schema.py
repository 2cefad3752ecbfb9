"""The schema other tools read (issue 13, deliverable 4), on embedded chDB.

The exporter's bloom filters on the attribute maps skip granules, the service-and-time projection
serves a trace search while a trace lookup keeps the table's key, and the exporter's
``otel_traces_trace_id_ts`` lookup fills from new inserts (any writer's) and from the backfill of
rows stored before it. Retention of the lookup and its holds: tests/test_retention.py.
"""

from __future__ import annotations

import re
import uuid

import pytest

from flightrec.collector.rows import RowBuilder
from flightrec.store import Store
from flightrec.store.migrations import load_migrations

from tests.otlp_helpers import BASE_NS, make_request, make_span

SPANS = 4096  # four 1024-row granules in one part
SERVICES = ("svc-a", "svc-b", "svc-c", "svc-d")
NEEDLE_TRACE = "f" * 32


def fill(store: Store) -> None:
    """One insert (one part) of SPANS spans: four services, a second apart, one needle attribute."""
    request = None
    for index, service in enumerate(SERVICES):
        spans = [make_span(f"op-{i % 7}", attrs={"http.route": f"/r/{i % 3}"}, start_ns=BASE_NS + (index * 1024 + i) * 10**9,
                           trace_id=uuid.uuid4().bytes) for i in range(SPANS // len(SERVICES))]
        if index == 0:
            spans.pop()
        part = make_request(spans, resource={"service.name": service})
        if request is None:
            request = part
        else:
            request.resource_spans.extend(part.resource_spans)
    needle = make_span("needle", attrs={"needle.key": "needle-value"}, trace_id=bytes.fromhex(NEEDLE_TRACE),
                       start_ns=BASE_NS)
    request.resource_spans.extend(make_request([needle], resource={"service.name": "svc-a",
                                                                    "needle.host": "h1"}).resource_spans)
    store.insert_batch(RowBuilder().request_rows(request), dedup_token=uuid.uuid4().hex)
    parts = store.engine.query("t", "SELECT count() FROM system.parts WHERE database = {db:String} "
                               "AND table = 'otel_traces' AND active", {"db": store.db})[0][0]
    assert parts == 1


def skipped_by(plan: str, index: str) -> tuple[int, int]:
    """(granules kept, granules before) by the named skip index in an EXPLAIN indexes = 1 plan."""
    match = re.search(rf"Name: {index}\n(?:.*\n)*?\s*Granules: (\d+)/(\d+)", plan)
    assert match, plan
    return int(match.group(1)), int(match.group(2))


def test_the_exporters_map_bloom_filters_exist_and_skip_granules(store: Store) -> None:
    rows = store.engine.query("t", "SELECT name, expr, type_full, granularity FROM system.data_skipping_indices "
                              "WHERE database = {db:String} AND table = 'otel_traces'", {"db": store.db})
    indexes = {name: (expr, kind, granularity) for name, expr, kind, granularity in rows}
    for name, expr in (("idx_res_attr_key", "mapKeys(ResourceAttributes)"),
                       ("idx_res_attr_value", "mapValues(ResourceAttributes)"),
                       ("idx_span_attr_key", "mapKeys(SpanAttributes)"),
                       ("idx_span_attr_value", "mapValues(SpanAttributes)")):
        assert indexes[name] == (expr, "bloom_filter(0.01)", 1)
    fill(store)
    reads = store.tool_reads
    assert skipped_by(reads.explain_attribute_filter(key="needle.key", value="needle-value"),
                      "idx_span_attr_key") == (1, 4)
    assert skipped_by(reads.explain_attribute_value(value="needle-value"), "idx_span_attr_value") == (1, 4)
    assert skipped_by(reads.explain_resource_key(key="needle.host"), "idx_res_attr_key") == (1, 4)
    assert skipped_by(reads.explain_attribute_value(value="/r/1"), "idx_span_attr_value") == (4, 4)  # in every granule
    found = store.engine.query("t", f"SELECT TraceId FROM {store.db}.otel_traces "
                               "WHERE SpanAttributes['needle.key'] = 'needle-value'")
    assert found == [(NEEDLE_TRACE,)]


def test_a_service_window_reads_the_projection_and_a_trace_reads_the_key(store: Store) -> None:
    fill(store)
    reads = store.tool_reads
    since, until = BASE_NS + 1024 * 10**9, BASE_NS + 1124 * 10**9  # svc-b's first 100 seconds
    plan = reads.explain_service_roots(service="svc-b", since_ns=since, until_ns=until)
    assert "ReadFromMergeTree (by_service_time)" in plan, plan
    roots = reads.service_roots(service="svc-b", since_ns=since, until_ns=until, limit=1000)
    assert len(roots) == 100 and {r.service for r in roots} == {"svc-b"}
    assert [r.start_ns for r in roots] == sorted((r.start_ns for r in roots), reverse=True)
    without = reads.service_roots(service="svc-b", since_ns=since, until_ns=until, limit=1000,
                                  settings={"optimize_use_projections": 0})
    assert without == roots  # the projection answers what the table answers
    counts = reads.service_span_counts(service="svc-b", since_ns=since, until_ns=until)
    assert sum(counts.values()) == 100
    trace = reads.explain_trace(trace_id=NEEDLE_TRACE)
    assert "ReadFromMergeTree (by_service_time)" not in trace and "Granules: 1/4" in trace, trace


def test_the_tool_schema_builds_again_over_stored_parts(store: Store) -> None:
    fill(store)
    reads = store.tool_reads
    since, until = BASE_NS, BASE_NS + 4096 * 10**9
    before = reads.service_roots(service="svc-c", since_ns=since, until_ns=until, limit=2000)
    for what in ("projection", "bloom filters"):
        reads.rebuild_tool_schema(what)
    assert "ReadFromMergeTree (by_service_time)" in reads.explain_service_roots(service="svc-c", since_ns=since,
                                                                                until_ns=until)
    assert reads.service_roots(service="svc-c", since_ns=since, until_ns=until, limit=2000) == before
    assert skipped_by(reads.explain_attribute_value(value="needle-value"), "idx_span_attr_value") == (1, 4)
    with pytest.raises(ValueError, match="nothing to rebuild called 'indexes': 'projection' or 'bloom filters'"):
        reads.rebuild_tool_schema("indexes")


def test_the_lookup_table_fills_from_new_inserts(store: Store) -> None:
    trace = uuid.uuid4().hex
    spans = [make_span("first", trace_id=bytes.fromhex(trace), start_ns=BASE_NS),
             make_span("last", trace_id=bytes.fromhex(trace), start_ns=BASE_NS + 90 * 10**9)]
    store.insert_batch(RowBuilder().request_rows(make_request(spans)), dedup_token=uuid.uuid4().hex)
    later = make_span("later", trace_id=bytes.fromhex(trace), start_ns=BASE_NS + 300 * 10**9)
    store.insert_batch(RowBuilder().request_rows(make_request([later])), dedup_token=uuid.uuid4().hex)
    assert store.trace_window(trace_ids=[trace]) == (BASE_NS // 10**9, BASE_NS // 10**9 + 300)
    assert [s.name for s in store.tool_reads.trace_by_lookup(trace_id=trace)] == ["first", "last", "later"]
    store.optimize()  # merged: one row per trace
    rows = store.engine.query("t", f"SELECT count() FROM {store.db}.otel_traces_trace_id_ts "
                              "WHERE TraceId = {t:String}", {"t": trace})
    assert rows == [(1,)]
    assert store.trace_window(trace_ids=["0" * 32]) is None
    assert store.tool_reads.trace_by_lookup(trace_id="0" * 32) == []


def test_the_lookup_table_is_the_exporters_and_its_backfill_covers_stored_rows(store: Store) -> None:
    created = store.engine.query("t", "SELECT name, engine_full, sorting_key, partition_key FROM system.tables "
                                 "WHERE database = {db:String} AND name LIKE 'otel_traces_trace_id_ts%'", {"db": store.db})
    tables = {name: (engine, key, partition) for name, engine, key, partition in created}
    assert tables["otel_traces_trace_id_ts"][0].startswith("AggregatingMergeTree PARTITION BY toStartOfWeek(Start)")
    assert tables["otel_traces_trace_id_ts"][1:] == ("(TraceId)", "toStartOfWeek(Start)")
    assert "otel_traces_trace_id_ts_mv" in tables
    columns = dict(store.engine.query("t", "SELECT name, type FROM system.columns WHERE database = {db:String} "
                                      "AND table = 'otel_traces_trace_id_ts'", {"db": store.db}))
    assert columns == {"TraceId": "String", "Start": "SimpleAggregateFunction(min, DateTime)",
                       "End": "SimpleAggregateFunction(max, DateTime)"}
    # A store whose spans were written before migration 0023: no view, no lookup table.
    store.engine.command("t", f"DROP VIEW {store.db}.otel_traces_trace_id_ts_mv")
    store.engine.command("t", f"DROP TABLE {store.db}.otel_traces_trace_id_ts")
    traces = [uuid.uuid4().hex for _ in range(3)]
    spans = [make_span(f"s{i}", trace_id=bytes.fromhex(t), start_ns=BASE_NS + i * 60 * 10**9)
             for t in traces for i in range(2)]
    store.insert_batch(RowBuilder().request_rows(make_request(spans)), dedup_token=uuid.uuid4().hex)
    (migration,) = [m for m in load_migrations(store.db) if m.name == "trace_id_ts"]
    for statement in migration.statements:
        store.engine.command("t", statement)
    for trace in traces:
        assert store.trace_window(trace_ids=[trace]) == (BASE_NS // 10**9, BASE_NS // 10**9 + 60)
        assert len(store.tool_reads.trace_by_lookup(trace_id=trace)) == 2
