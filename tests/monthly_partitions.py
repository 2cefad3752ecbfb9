"""A store's spans or logs table rebuilt with monthly partitions, as before migration 0029 (tests, bench)."""

from __future__ import annotations

from flightrec.store import Store

ORDER_BY = {"otel_traces": "(TraceId, SpanId)", "otel_logs": "(ServiceName, TimestampTime, Timestamp)"}
ENGINE = {"otel_traces": "ReplacingMergeTree", "otel_logs": "MergeTree"}


def engine_full(store: Store, name: str) -> str:
    return store.engine.query("t", "SELECT engine_full FROM system.tables WHERE database = {db:String} "
                              "AND name = {name:String}", {"db": store.db, "name": name})[0][0]


def rebuild_by_month(store: Store, name: str) -> None:
    """The table with ``PARTITION BY toYYYYMM(Timestamp)``: the same rows, columns, indexes, projections,
    TTL and settings (but ttl_only_drop_parts), exchanged by name so its views follow."""
    full = engine_full(store, name)
    ttl = " TTL " + full.split(" TTL ", 1)[1].split(" SETTINGS ", 1)[0] if " TTL " in full else ""
    settings = full.split(" SETTINGS ", 1)[1].replace(", ttl_only_drop_parts = 1", "")
    db = store.db
    for sql in (f"CREATE TABLE {db}.{name}_monthly AS {db}.{name} ENGINE = {ENGINE[name]} "
                f"PARTITION BY toYYYYMM(Timestamp) ORDER BY {ORDER_BY[name]}{ttl} SETTINGS {settings}",
                f"INSERT INTO {db}.{name}_monthly SELECT * FROM {db}.{name} "
                "SETTINGS max_partitions_per_insert_block = 0",
                f"EXCHANGE TABLES {db}.{name} AND {db}.{name}_monthly",
                f"DROP TABLE {db}.{name}_monthly SYNC"):
        store.engine.command("t", sql)
