"""The store on embedded chDB: migrations, dedup, links, retention, hardening; and the SQL it sends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flightrec.collector.rows import RowBuilder
from flightrec.store import ObjectRef, Store, StoreConfig, parse_dsn
from flightrec.store.migrations import load_migrations
from flightrec.store.retention import RetentionPolicy
from tests.otlp_helpers import BASE_NS, make_request, make_span, price_stored

SNAPSHOTS = Path(__file__).parent / "snapshots"
MS = 1_000_000


def insert(store: Store, spans: list, token: str) -> None:
    store.insert_batch(RowBuilder().request_rows(make_request(spans)), dedup_token=token)
    price_stored(store)


# -- DSN ---------------------------------------------------------------------------------


def test_parse_chdb_dsn_resolves_the_directory(tmp_path: Path) -> None:
    target = parse_dsn(f"chdb://{tmp_path}/data")
    assert target.kind == "chdb" and target.path == str(tmp_path / "data")
    assert parse_dsn("chdb://./rel/dir").path == str(Path("rel/dir").resolve())


def test_parse_server_dsn() -> None:
    target = parse_dsn("https://flight%40rec:p%3Ass@ch.example:9443/traces")
    assert (target.kind, target.host, target.port, target.secure) == ("server", "ch.example", 9443, True)
    assert (target.username, target.password, target.database) == ("flight@rec", "p:ss", "traces")
    assert "p:ss" not in target.describe() and "p:ss" not in repr(target)
    assert parse_dsn("http://ch:8123").port == 8123 and parse_dsn("https://ch").port == 8443


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgres://x/y", "unsupported store DSN"),
        ("chdb://", "names no data directory"),
        ("chdb://memory", "names no data directory"),
        ("http:///db", "names no host"),
        ("http://ch:notaport/db", "invalid port"),
    ],
)
def test_bad_dsn_says_how_to_fix_it(dsn: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dsn(dsn)


def test_bad_database_name_is_refused() -> None:
    with pytest.raises(ValueError):
        StoreConfig(database="bad; DROP")


# -- SQL snapshots (what a server or a cluster would be sent) ------------------------------


@pytest.mark.parametrize(("cluster", "snapshot"), [(None, "migrations_single.sql"), ("fr", "migrations_cluster.sql")])
def test_migration_sql_snapshot(cluster: str | None, snapshot: str) -> None:
    state = f"{cluster}_state" if cluster else None
    rendered = "\n\n".join(m.script() for m in load_migrations("flightrec", cluster, state, RetentionPolicy()))
    path = SNAPSHOTS / snapshot
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered + "\n")
    assert rendered + "\n" == path.read_text()
    if cluster:
        assert "ON CLUSTER fr" in rendered and "ReplicatedReplacingMergeTree(" in rendered
    else:
        assert "ON CLUSTER" not in rendered and "Replicated" not in rendered


def test_spans_table_keeps_the_otel_exporter_columns(store: Store) -> None:
    rows = store.engine.query(
        "columns",
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'otel_traces'",
        {"db": store.db},
    )
    columns = dict(rows)
    expected = {
        "Timestamp": "DateTime64(9)",
        "TraceId": "String",
        "SpanId": "String",
        "ParentSpanId": "String",
        "TraceState": "String",
        "SpanName": "LowCardinality(String)",
        "SpanKind": "LowCardinality(String)",
        "ServiceName": "LowCardinality(String)",
        "ResourceAttributes": "Map(LowCardinality(String), String)",
        "ScopeName": "String",
        "ScopeVersion": "String",
        "SpanAttributes": "Map(LowCardinality(String), String)",
        "Duration": "UInt64",
        "StatusCode": "LowCardinality(String)",
        "StatusMessage": "String",
        "Events.Timestamp": "Array(DateTime64(9))",
        "Events.Name": "Array(LowCardinality(String))",
        "Events.Attributes": "Array(Map(LowCardinality(String), String))",
        "Links.TraceId": "Array(String)",
        "Links.SpanId": "Array(String)",
        "Links.TraceState": "Array(String)",
        "Links.Attributes": "Array(Map(LowCardinality(String), String))",
    }
    assert {name: columns.get(name) for name in expected} == expected


# -- behaviour on embedded chDB -------------------------------------------------------------


def test_migrations_are_recorded_and_idempotent(store: Store) -> None:
    assert store.migrate() == []
    versions = store.engine.query(
        "versions", f"SELECT version FROM {store.db}.flightrec_migrations ORDER BY version"
    )
    assert [v for (v,) in versions] == [m.version for m in load_migrations(store.db)]


def test_a_span_sent_twice_is_stored_once(store: Store) -> None:
    span = make_span("dup", {"ticket.id": "T-1"})
    insert(store, [span], "batch-a")
    insert(store, [span], "batch-b")  # a client resend: another request, same span
    stats = store.stats()
    assert (stats.spans, stats.traces, stats.objects) == (1, 1, 1)
    assert len(store.trace_spans(trace_id=span.trace_id.hex())) == 1
    store.optimize()
    assert store.span_copies() == 1


def test_a_replayed_batch_inserts_nothing(store: Store) -> None:
    spans = [make_span(f"s{i}") for i in range(5)]
    insert(store, spans, "wal-segment-1")
    insert(store, spans, "wal-segment-1")
    assert store.span_copies() == 5  # no copies even before a merge


def test_object_spans_cover_descendants_across_traces(store: Store) -> None:
    trace_a, trace_b = os.urandom(16), os.urandom(16)
    queue_root = make_span("process queue", trace_id=trace_a, start_ns=BASE_NS + 1 * MS)
    ticket_step = make_span("handle", {"ticket.id": "TCK-1"}, trace_id=trace_a, parent=queue_root.span_id, start_ns=BASE_NS + 2 * MS)
    llm = make_span("chat", {"gen_ai.operation.name": "chat"}, trace_id=trace_a, parent=ticket_step.span_id, start_ns=BASE_NS + 3 * MS)
    tool = make_span("tool", trace_id=trace_a, parent=llm.span_id, start_ns=BASE_NS + 4 * MS)
    other = make_span("other ticket", {"ticket.id": "TCK-2"}, trace_id=trace_a, parent=queue_root.span_id, start_ns=BASE_NS + 5 * MS)
    later = make_span("refund", {"flightrec.object.type": "ticket", "flightrec.object.id": "TCK-1"}, trace_id=trace_b, start_ns=BASE_NS + 6 * MS)
    # children first, as they arrive from real SDKs
    insert(store, [tool, llm], "a")
    insert(store, [ticket_step, other, queue_root, later], "b")
    spans = store.object_spans(obj=ObjectRef(type="ticket", id="TCK-1"))
    assert [s.name for s in spans] == ["handle", "chat", "tool", "refund"]
    assert store.object_spans(obj=ObjectRef(type="ticket", id="nope")) == []


def test_span_record_round_trip(store: Store) -> None:
    span = make_span(
        "chat gpt-4o",
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 812,
         "gen_ai.usage.output_tokens": 95, "gen_ai.agent.name": "support-agent"},
        duration_ns=2_500_000,
    )
    event = span.events.add(time_unix_nano=span.start_time_unix_nano + 10, name="exception")
    event.attributes.add(key="exception.message").value.string_value = "boom"
    insert(store, [span], "t")
    (record,) = store.trace_spans(trace_id=span.trace_id.hex())
    assert (record.agent, record.operation, record.model) == ("support-agent", "llm", "gpt-4o")
    assert (record.input_tokens, record.output_tokens, record.duration_ms) == (812, 95, 2.5)
    assert record.start_time.timestamp() == pytest.approx(span.start_time_unix_nano / 1e9)
    assert record.events[0].name == "exception" and record.events[0].attributes == {"exception.message": "boom"}
    assert record.resource_attributes == {"service.name": "test-agent"}


def test_rejections_are_counted(store: Store) -> None:
    store.record_rejections(transport="http", rejected=3, reason="span_id must be 8 bytes")
    store.record_rejections(transport="grpc", rejected=2, reason="x")
    assert store.stats().rejected_spans == 5


def test_retention_ttl_set_changed_and_removed(store: Store) -> None:
    assert "toIntervalDay(180)" in store.table_ttl("otel_traces")  # the default: six months
    store.apply_retention(7)
    assert "toIntervalDay(7)" in store.table_ttl("otel_traces") and "toIntervalDay(7)" in store.table_ttl("object_links")
    store.apply_retention(0)
    assert store.table_ttl("otel_traces") == ""
    store.apply_retention(0)  # removing an absent TTL is fine


def test_embedded_engine_keeps_no_system_logs(store: Store) -> None:
    for i in range(20):
        insert(store, [make_span(f"s{i}")], f"tok{i}")
        store.stats()
    assert store.system_log_tables() == {}
    settings = dict(
        store.engine.query(
            "settings",
            "SELECT name, value FROM system.settings WHERE name IN ('log_queries', 'query_profiler_real_time_period_ns')",
        )
    )
    assert settings == {"log_queries": "0", "query_profiler_real_time_period_ns": "0"}
