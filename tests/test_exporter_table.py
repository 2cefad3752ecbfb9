"""An otel_traces the OpenTelemetry Collector ClickHouse exporter created first (issue 15, deliverable 2).

On real chDB: the exporter's own DDL (tests/exporter_sql.py, both its PR #34245 layout and the
newest template, bloom-filter and text-index branches) makes the table before Flight Recorder
opens the database; our migrations must then succeed, twice, and leave the exporter's engine,
key and indexes alone; rows the exporter inserts with its own 22-column INSERT are read back
through the store; our writer shares the table.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flightrec.collector.rows import RowBuilder
from flightrec.store import ObjectRef, Store, StoreConfig, open_store
from flightrec.store.engine import Engine
from flightrec.store.migrations import load_migrations, migrate
from flightrec.store.models import SPAN_COLUMN_NAMES
from flightrec.stories.narrate import narrate
from tests import exporter_sql as ex
from tests.otlp_helpers import BASE_NS, make_request, make_span, price_stored

MS = 1_000_000
ALL_VERSIONS = [m.version for m in load_migrations("x")]
EXPORTER_INDEXES = {"idx_trace_id", "idx_res_attr_key", "idx_span_attr_key", "idx_duration"}

VARIANTS = {
    "pr34245": {"version": "pr34245"},
    "latest-bloom": {"version": "latest", "full_text_search": False},
    "latest-text": {"version": "latest", "full_text_search": True},
}


@pytest.fixture(params=list(VARIANTS))
def exporter_store(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[Store]:
    """A database whose otel_traces (and its lookup table and view) the exporter created, then opened by us."""
    config = StoreConfig(dsn=f"chdb://{chdb_dir}", database=f"x_{uuid.uuid4().hex[:10]}")
    engine = Engine(config.target())
    try:
        engine.command("exporter_create_database", f"CREATE DATABASE IF NOT EXISTS {config.database}")
        for statement in ex.exporter_ddl(config.database, ttl_days=180, **VARIANTS[request.param]):
            engine.command("exporter_ddl", statement)
    finally:
        engine.close()  # one chDB client at a time in this process
    store = open_store(config)  # migrations and retention, as `flightrec serve` does
    yield store
    store.engine.command("drop_test_database", f"DROP DATABASE IF EXISTS {store.db}")
    store.close()


def table_info(store: Store, database: str, table: str = "otel_traces") -> tuple[str, str, str]:
    [(engine, sorting_key, primary_key)] = store.engine.query(
        "t", "SELECT engine, sorting_key, primary_key FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": database, "t": table},
    )
    return engine, sorting_key, primary_key


def column_types(store: Store, database: str) -> dict[str, str]:
    rows = store.engine.query(
        "t", "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'otel_traces'",
        {"db": database},
    )
    return dict(rows)


def hex_id(size: int) -> str:
    return os.urandom(size).hex()


def genai_run(trace_id: str) -> list[ex.ExporterSpan]:
    """An agent run as the exporter receives it from a GenAI instrumentation: agent, LLM call, tool call."""
    root, llm, tool = hex_id(8), hex_id(8), hex_id(8)
    resource = {"service.name": "support-svc", "service.version": "1.4.0"}
    return [
        ex.ExporterSpan(
            trace_id=trace_id, span_id=root, name="invoke_agent support-agent", kind="Server",
            start_ns=BASE_NS, end_ns=BASE_NS + 900 * MS, status_code="Ok", resource=resource,
            scope_name="opentelemetry.instrumentation.openai_agents", scope_version="0.1.0",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-agent",
                        "gen_ai.conversation.id": "conv-7", "ticket.id": "TCK-9"},
        ),
        ex.ExporterSpan(
            trace_id=trace_id, span_id=llm, parent_span_id=root, name="chat gpt-4o", kind="Client",
            start_ns=BASE_NS + 10 * MS, end_ns=BASE_NS + 610 * MS, resource=resource,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.provider.name": "openai",
                        "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30},
            events=[ex.ExporterEvent(time_ns=BASE_NS + 600 * MS, name="gen_ai.choice",
                                     attributes={"finish_reason": "tool_calls", "index": 0})],
        ),
        ex.ExporterSpan(
            trace_id=trace_id, span_id=tool, parent_span_id=root, name="execute_tool lookup_ticket",
            start_ns=BASE_NS + 620 * MS, end_ns=BASE_NS + 700 * MS, resource=resource,
            status_code="Error", status_message="ticket service timed out",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_ticket"},
            links=[ex.ExporterLink(trace_id=hex_id(16), span_id=hex_id(8), attributes={"link.kind": "cause"})],
        ),
    ]


# -- the fixture itself -----------------------------------------------------------------------


def test_the_exporter_insert_names_22_columns_and_our_insert_starts_with_them() -> None:
    columns = ex.insert_columns()
    assert len(columns) == 22 and columns[15:] == [
        "Events.Timestamp", "Events.Name", "Events.Attributes",
        "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
    ]
    assert list(SPAN_COLUMN_NAMES[:22]) == columns


def test_the_exporter_ddl_renders_as_the_exporter_does() -> None:
    fmt = ex.render_traces_table("otel", ttl_days=3)
    assert fmt.startswith('CREATE TABLE IF NOT EXISTS "otel"."otel_traces"  (')
    assert "ENGINE = MergeTree()" in fmt and "TTL toDateTime(Timestamp) + toIntervalDay(3)" in fmt
    assert "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))" in fmt
    latest = ex.render_traces_table("otel", cluster="c1", version="latest")
    assert latest.startswith("CREATE TABLE IF NOT EXISTS `otel`.`otel_traces` ON CLUSTER c1 (")
    assert "bloom_filter" in latest and "TYPE text(" not in latest and "{{" not in latest
    assert "SpanAttributeItems Array(String) ALIAS" in latest and "GRANULARITY 1,\n    INDEX idx_duration" in latest
    text = ex.render_traces_table("otel", version="latest", full_text_search=True)
    assert "TYPE text(tokenizer = 'array'),\n    INDEX idx_duration" in text and "bloom_filter" not in text


# -- migrations on the exporter's table -----------------------------------------------------------


def test_migrations_succeed_on_the_exporters_table_and_are_idempotent(exporter_store: Store) -> None:
    store = exporter_store
    applied = store.engine.query("versions", f"SELECT version FROM {store.db}.flightrec_migrations ORDER BY version")
    assert [row[0] for row in applied] == ALL_VERSIONS
    assert store.migrate() == [] and migrate(store.engine, store.db) == []

    # The exporter's table stays the exporter's: engine, key, indexes, its lookup view.
    engine, sorting_key, _ = table_info(store, store.db)
    assert engine == "MergeTree"
    assert sorting_key.startswith("ServiceName, SpanName, toDateTime(Timestamp)")
    indexes = {row[0] for row in store.engine.query(
        "t", "SELECT name FROM system.data_skipping_indices WHERE database = {db:String} AND table = 'otel_traces'",
        {"db": store.db})}
    assert EXPORTER_INDEXES | {"idx_agent", "idx_ts"} <= indexes
    assert table_info(store, store.db, "otel_traces_trace_id_ts_mv")[0] == "MaterializedView"
    # Our retention (180 days, with the legal-hold WHERE) replaces the exporter's plain 180-day TTL.
    assert store.table_ttl("otel_traces").startswith("toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT (dictHas(")

    # Every column we insert is there with the type our own table gives it.
    ours = f"{store.db}_ours"
    migrate(store.engine, ours)
    try:
        expected = column_types(store, ours)
        assert table_info(store, ours)[0] == "ReplacingMergeTree"
    finally:
        store.engine.command("drop", f"DROP DATABASE IF EXISTS {ours}")
    actual = column_types(store, store.db)
    assert {name: actual.get(name) for name in SPAN_COLUMN_NAMES} == {name: expected[name] for name in SPAN_COLUMN_NAMES}
    assert store.insert_types()["otel_traces"]  # the native encoder's view of the insert resolves


def test_migrations_complete_a_store_where_0002_failed_on_the_exporters_table(chdb_dir: Path) -> None:
    """0001 recorded, 0002 as shipped refused the table (AFTER UserId): reopening finishes the job."""
    config = StoreConfig(dsn=f"chdb://{chdb_dir}", database=f"x_{uuid.uuid4().hex[:10]}")
    engine = Engine(config.target())
    try:
        engine.command("d", f"CREATE DATABASE {config.database}")
        engine.command("ddl", ex.render_traces_table(config.database, ttl_days=180))
        first = load_migrations(config.database)[0]
        assert first.version == 1
        engine.command("m", f"CREATE TABLE {config.database}.flightrec_migrations "
                            "(version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version")
        for statement in first.statements:
            engine.command("migration_0001", statement)
        engine.insert("r", f"{config.database}.flightrec_migrations", [[1], [first.name]], ["version", "name"])
        assert migrate(engine, config.database) == ALL_VERSIONS[1:]
        [(count,)] = engine.query("c", "SELECT count() FROM system.columns WHERE database = {db:String} "
                                       "AND table = 'otel_traces' AND name IN {names:Array(String)}",
                                  {"db": config.database, "names": list(SPAN_COLUMN_NAMES)})
        assert count == len(SPAN_COLUMN_NAMES)
    finally:
        engine.command("drop", f"DROP DATABASE IF EXISTS {config.database}")
        engine.close()


# -- rows the exporter inserts, read through the store ---------------------------------------------


def test_exporter_rows_read_through_the_store(exporter_store: Store) -> None:
    store = exporter_store
    trace_id = hex_id(16)
    sent = genai_run(trace_id)
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", sent)

    spans = store.trace_spans(trace_id=trace_id)
    assert [span.name for span in spans] == [span.name for span in sent]
    root, llm, tool = spans
    assert (root.parent_span_id, llm.parent_span_id, tool.parent_span_id) == ("", sent[0].span_id, sent[0].span_id)
    assert (root.kind, llm.kind, root.status_code, tool.status_code) == ("Server", "Client", "Ok", "Error")
    assert tool.status_message == "ticket service timed out"
    assert root.service == "support-svc" and root.resource_attributes["service.version"] == "1.4.0"
    assert root.attributes["ticket.id"] == "TCK-9" and root.attributes["gen_ai.agent.name"] == "support-agent"
    assert llm.attributes["gen_ai.usage.input_tokens"] == "120" and llm.attributes["gen_ai.request.model"] == "gpt-4o"
    assert root.start_time.timestamp() == pytest.approx(BASE_NS / 1e9) and root.duration_ms == pytest.approx(900)
    assert [(event.name, event.attributes) for event in llm.events] == [
        ("gen_ai.choice", {"finish_reason": "tool_calls", "index": "0"})]
    [(links,)] = store.engine.query(
        "t", f"SELECT Links.Attributes FROM {store.db}.otel_traces WHERE SpanId = {{id:String}}", {"id": tool.span_id})
    assert links == [{"link.kind": "cause"}]

    # Rows another writer stored carry no identity hash; the engine derives our columns. Its
    # gpt-4o call is unpriced until the rate resolver has seen the model, then priced.
    hashes = store.stored_span_hashes(trace_ids=[trace_id])
    assert set(hashes.values()) == {0} and len(hashes) == 3
    assert not spans[1].cost_known
    assert price_stored(store) >= 1
    root, llm, tool = store.trace_spans(trace_id=trace_id)
    assert llm.cost_known and llm.cost_usd > 0 and root.cost_usd == 0 and root.cost_known

    # Queries that read the table whole work on a plain MergeTree (no FINAL), each span once.
    stats = store.stats()
    assert (stats.spans, stats.traces) == (3, 1)
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", sent[:1])  # the exporter retries one span
    assert store.span_copies() == 4
    assert (store.stats().spans, len(store.trace_spans(trace_id=trace_id))) == (3, 3)
    assert store.find_traces(id_prefix=trace_id[:10]) == [trace_id]
    assert store.run_flags(trace_ids=[trace_id])[trace_id].failed is False
    store.optimize()


def test_our_writer_shares_the_exporters_table(exporter_store: Store) -> None:
    store = exporter_store
    exporter_trace = hex_id(16)
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", genai_run(exporter_trace))

    ours = make_span("invoke_agent refund-agent", {"gen_ai.operation.name": "invoke_agent",
                                                   "gen_ai.agent.name": "refund-agent", "ticket.id": "TCK-9"})
    batch = RowBuilder().request_rows(make_request([ours]))
    store.insert_batch(batch, dedup_token="segment-1")
    store.insert_batch(batch, dedup_token="segment-1")  # a replay: the deduplication window holds here too
    assert store.span_copies() == 4

    [span] = store.trace_spans(trace_id=ours.trace_id.hex())
    assert (span.agent, span.operation) == ("refund-agent", "agent")
    assert store.stored_span_hashes(trace_ids=[ours.trace_id.hex()])[(ours.trace_id.hex(), ours.span_id.hex())] != 0
    assert ObjectRef(type="ticket", id="TCK-9") in [
        ObjectRef(type=activity.type, id=activity.id) for activity in store.recent_objects()]
    assert store.stats().traces == 2


def test_exporter_rows_get_our_derived_fields(exporter_store: Store) -> None:
    """Rows another writer stored get the fields and links our rules derive, from the engine, at insert."""
    store = exporter_store
    trace_id = hex_id(16)
    ex.exporter_insert(store.engine._client, store.db, "otel_traces", genai_run(trace_id))

    root, llm, tool = store.trace_spans(trace_id=trace_id)
    assert (root.agent, root.operation, root.session_id) == ("support-agent", "agent", "conv-7")
    assert (llm.operation, llm.model, llm.input_tokens, llm.output_tokens) == ("llm", "gpt-4o-2024-08-06", 120, 30)
    assert (tool.operation, tool.tool) == ("tool", "lookup_ticket")
    ticket = ObjectRef(type="ticket", id="TCK-9")
    spans = store.object_spans(obj=ticket)
    assert {span.span_id for span in spans} == {root.span_id, llm.span_id, tool.span_id}
    story = narrate(ticket, spans)
    assert story.traces == [trace_id] and "support-agent" in story.agents and story.steps
