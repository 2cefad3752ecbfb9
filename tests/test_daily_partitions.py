"""Spans and log records in daily partitions (issue 13, migration 0029), on real parts in chDB.

A new store is daily with ``ttl_only_drop_parts``; a store from before 0029 is rebuilt by the
migration with every row, index, projection and view it had; a node that takes over a half-applied
rebuild finishes it (a step skipped once done is never run twice, so no row is lost or doubled and
the tables are not exchanged back). Inserts over more days than one insert may create: test_writer,
test_ingest_engine.
"""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from flightrec.collector.prepare import SegmentPreparer
from flightrec.collector.wal import WalRecord
from flightrec.store import Store
from flightrec.store.migrations import load_migrations, migrate
from tests.monthly_partitions import rebuild_by_month
from tests.otlp_helpers import BASE_NS, make_request, make_span

DAY_NS = 86_400 * 10**9
DAYS = 5
REBUILT = ("otel_traces", "otel_logs")


def fill(store: Store, first: int = 0, days: int = DAYS) -> list[str]:
    """A ticket span and a log record on each of ``days`` days, from ``first`` days ago on; their trace ids."""
    spans = [make_span(f"day-{day}", {"ticket.id": f"TCK-{day}"}, trace_id=uuid.uuid4().bytes,
                       start_ns=BASE_NS - day * DAY_NS) for day in range(first, first + days)]
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    for span in spans:
        records.add(time_unix_nano=span.start_time_unix_nano, trace_id=span.trace_id, span_id=span.span_id,
                    event_name="gen_ai.choice", body={"string_value": "done"})
    records = [WalRecord(spans=len(spans), payload=make_request(spans).SerializeToString()),
               WalRecord(spans=len(spans), payload=logs.SerializeToString(), signal="logs")]
    store.insert_prepared(SegmentPreparer(store.insert_types()).prepare_records(records))  # the writer's path
    return [span.trace_id.hex() for span in spans]


def table(store: Store, name: str) -> dict:
    (row,) = store.engine.query("t", "SELECT partition_key, engine_full FROM system.tables "
                                "WHERE database = {db:String} AND name = {name:String}", {"db": store.db, "name": name})
    return {"partition_key": row[0], "engine_full": row[1]}


def contents(store: Store) -> dict[str, tuple]:
    """Every row of each table, as a count and an order-free hash of all its values (as text: a NULL in
    a Nullable column would make the hash of the whole row NULL)."""
    return {name: store.engine.query("t", f"SELECT count(), groupBitXor(cityHash64(toString(tuple(*)))) "
                                     f"FROM {store.db}.{name}")[0]
            for name in (*REBUILT, "object_links", "otel_traces_trace_id_ts")}


def structure(store: Store, name: str) -> tuple:
    """A table's columns (with their defaults), skip indexes and projections."""
    args = {"db": store.db, "name": name}
    columns = store.engine.query("t", "SELECT name, type, default_kind, default_expression FROM system.columns "
                                 "WHERE database = {db:String} AND table = {name:String} ORDER BY position", args)
    indexes = store.engine.query("t", "SELECT name, expr, type_full FROM system.data_skipping_indices "
                                 "WHERE database = {db:String} AND table = {name:String} ORDER BY name", args)
    create = store.engine.query("t", "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
                                "AND name = {name:String}", args)[0][0]
    return columns, indexes, create.count("PROJECTION ")


def back_to_monthly(store: Store) -> None:
    """The store as it was before 0029: spans and logs partitioned by month, 0029 not recorded."""
    for name in REBUILT:
        rebuild_by_month(store, name)
        assert table(store, name)["partition_key"] == "toYYYYMM(Timestamp)"
    store.engine.command("t", f"ALTER TABLE {store.db}.flightrec_migrations DELETE WHERE version = 29",
                         settings={"mutations_sync": 2})


def rebuild_statements(store: Store) -> list[str]:
    (migration,) = [m for m in load_migrations(store.db) if m.version == 29]
    return migration.statements


def test_a_new_store_keeps_spans_and_logs_by_day_with_ttl_only_drop_parts(store: Store) -> None:
    for name in REBUILT:
        assert table(store, name)["partition_key"] == "toDate(Timestamp)"
        assert "ttl_only_drop_parts = 1" in table(store, name)["engine_full"]
    assert table(store, "object_links")["partition_key"] == "toYYYYMM(Timestamp)"  # read by object over all time
    fill(store)
    for name in REBUILT:
        days = store.engine.query("t", "SELECT uniqExact(partition_id) FROM system.parts WHERE database = {db:String} "
                                  "AND table = {name:String} AND active", {"db": store.db, "name": name})[0][0]
        assert days == DAYS, name


def test_a_store_from_before_the_daily_partitions_is_rebuilt_with_every_row_index_and_view(store: Store) -> None:
    """150 days: more than the 100 partitions one insert may create (a block read from monthly parts holds
    many days), so the copy must allow any number."""
    fill(store, days=150)
    before_structure = {name: structure(store, name) for name in REBUILT}
    back_to_monthly(store)
    before = contents(store)
    assert before["otel_traces"][0] == before["otel_logs"][0] == 150
    assert migrate(store.engine, store.db, retention=store.config.retention_policy()) == [29]
    assert contents(store) == before
    for name in REBUILT:
        assert table(store, name)["partition_key"] == "toDate(Timestamp)"
        assert structure(store, name) == before_structure[name]
    assert store.engine.query("t", "SELECT count() FROM system.tables WHERE database = {db:String} "
                              "AND name LIKE '%\\\\_daily'", {"db": store.db}) == [(0,)]
    # The views follow the table's name: a span stored after the rebuild gets its links and lookup row.
    [trace, *_] = fill(store, first=150)
    links = store.engine.query("t", f"SELECT ObjectId FROM {store.db}.object_links WHERE TraceId = {{t:String}}",
                               {"t": trace})
    assert links == [("TCK-150",)]
    assert store.engine.query("t", f"SELECT count() FROM {store.db}.otel_traces_trace_id_ts WHERE TraceId = "
                              "{t:String}", {"t": trace}) == [(1,)]
    # The rebuilt tables were created with their TTLs: the next start alters none and rewrites nothing.
    assert store.apply_retention() == []
    assert all(store.retention.mutation_count(name) == 0 for name in REBUILT)


@pytest.mark.parametrize("done", [1, 2, 3, 4], ids=["created", "truncated", "copied", "exchanged"])
def test_a_rebuild_half_applied_by_a_node_that_died_is_finished_by_the_next(store: Store, done: int) -> None:
    """The first ``done`` steps of the spans' rebuild ran, then its node died; the next node's migrate
    finishes it: each row once, daily, no table left over (the exchange was not undone)."""
    fill(store)
    back_to_monthly(store)
    before = contents(store)
    for statement in rebuild_statements(store)[:done]:
        store.engine.command("t", statement)
    assert migrate(store.engine, store.db, retention=store.config.retention_policy()) == [29]
    assert contents(store) == before
    assert table(store, "otel_traces")["partition_key"] == "toDate(Timestamp)"
    assert store.engine.query("t", "SELECT name FROM system.tables WHERE database = {db:String} "
                              "AND name LIKE '%daily%'", {"db": store.db}) == []


def test_every_step_of_a_rebuild_that_may_not_run_twice_is_guarded() -> None:
    """The create, truncate, copy and exchange are skipped once the table is daily; the drop of the old
    storage is the last step, safe to repeat (IF EXISTS)."""
    (migration,) = [m for m in load_migrations("fr") if m.version == 29]
    for statement in migration.statements:
        if statement.startswith("DROP TABLE IF EXISTS"):
            assert statement not in migration.unless
        else:
            assert "partition_key LIKE 'toDate(%'" in migration.unless[statement], statement


def parts_read(store: Store, trace_id: str) -> str:
    """'read/total' parts of otel_traces after partition pruning, in the plan of the statement
    ``Store.trace_spans`` sends (its SQL and parameters as the engine got them)."""
    sent = []
    query = store.engine.query

    def keep(name: str, sql: str, params: dict | None = None, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name == "trace_spans":
            sent.append((sql, params))
        return query(name, sql, params, *args, **kwargs)

    store.engine.query = keep  # type: ignore[method-assign]
    try:
        store.trace_spans(trace_id=trace_id)
    finally:
        del store.engine.query
    [(sql, params)] = sent
    plan = "\n".join(row[0] for row in store.engine.query("t", f"EXPLAIN indexes = 1 {sql}", params))
    return plan.split("Min-Max", 1)[1].split("Parts: ", 1)[1].split("\n", 1)[0].strip()


def test_a_trace_is_read_from_its_own_days_and_whole_when_the_bound_could_leave_a_span_out(store: Store) -> None:
    store.engine.command("t", f"SYSTEM STOP MERGES {store.db}.otel_traces")  # the parts counted below stay apart
    traces = fill(store)
    first = traces[DAYS - 1]  # its root DAYS - 1 days ago; a span of it two days later, sent later
    late = make_span("late", trace_id=bytes.fromhex(first), start_ns=BASE_NS - (DAYS - 3) * DAY_NS)
    store.insert_prepared(SegmentPreparer(store.insert_types()).prepare_records(
        [WalRecord(spans=1, payload=make_request([late]).SerializeToString())]))
    window = store.trace_window(trace_ids=[first])
    assert window == ((BASE_NS - (DAYS - 1) * DAY_NS) // 10**9, late.start_time_unix_nano // 10**9)
    assert {span.name for span in store.trace_spans(trace_id=first)} == {f"day-{DAYS - 1}", "late"}
    # the parts of the three days it spans (one a day, and the late span's own), of the DAYS + 1 stored
    assert parts_read(store, first) == f"4/{DAYS + 1}"
    # No lookup row for a trace (a tool's insert, a lost view part): no bound, every span read.
    store.engine.command("t", f"ALTER TABLE {store.db}.otel_traces_trace_id_ts DELETE WHERE TraceId = {{t:String}}",
                         {"t": traces[1]}, settings={"mutations_sync": 2})
    assert store.trace_window(trace_ids=[traces[1]]) is None
    assert store.trace_window(trace_ids=traces[1:3]) is None
    assert [span.name for span in store.trace_spans(trace_id=traces[1])] == ["day-1"]
    # An agent's legal hold keeps its spans past retention but not their lookup rows: no bound while one is in force.
    hold = store.holds.add(kind="agent", key="held-agent", reason="matter", created_by="compliance")
    assert store.trace_window(trace_ids=[first]) is None
    assert {span.name for span in store.trace_spans(trace_id=first)} == {f"day-{DAYS - 1}", "late"}
    assert parts_read(store, first) == f"{DAYS + 1}/{DAYS + 1}"  # every day's parts
    store.holds.release(hold=hold, released_by="compliance", reason="closed")
    assert store.trace_window(trace_ids=[first]) == window


def test_a_story_shows_the_log_records_of_its_spans_from_their_own_days(store: Store) -> None:
    """Log records are read from an hour before the trace's first span to a day after its last one ends:
    a record sent minutes after its span ended is shown, one stamped a week later is not read."""
    [trace] = fill(store, first=3, days=1)
    [span] = store.trace_spans(trace_id=trace)
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    end_ns = int(span.end_time.timestamp()) * 10**9
    for name, at in (("late.minutes", end_ns + 600 * 10**9), ("late.week", end_ns + 7 * DAY_NS)):
        records.add(time_unix_nano=at, trace_id=bytes.fromhex(trace), span_id=bytes.fromhex(span.span_id),
                    event_name=name, body={"string_value": name})
    store.insert_prepared(SegmentPreparer(store.insert_types()).prepare_records(
        [WalRecord(spans=2, payload=logs.SerializeToString(), signal="logs")]))
    [read] = store.trace_spans(trace_id=trace)
    assert [event.name for event in read.events if event.name.startswith(("gen_ai", "late"))] == [
        "gen_ai.choice", "late.minutes"]
