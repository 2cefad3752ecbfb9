-- Daily partitions for the spans and the log records (issue 13), with ttl_only_drop_parts: a day
-- past its retention goes as whole parts, not by rewriting them row by row, and Grafana and
-- ClickStack read a time range from the days it covers. A partition key cannot be altered, so each
-- table is rebuilt: a copy with the new key (columns, defaults, indexes and projections taken from
-- the table AS it is), filled from it, exchanged with it by name (the views that read or fill it
-- follow the name), and the old storage dropped. The TTL is the retention's (store/migrations.py).
-- On a cluster the copy reads every shard and writes each row to its trace's shard
-- (store/topology.py spread_over_shards); each copy takes its own Keeper path, named at its CREATE.
-- Each step but the last is skipped once the table is daily ("-- unless:"), so a node that takes
-- over a half-applied rebuild finishes it instead of exchanging the tables back; the copy starts
-- from an empty table and is not deduplicated, so a copy begun again leaves no row out or twice;
-- it may create any number of daily partitions (a block read from monthly parts holds many days).
-- A table already daily (toDate(Timestamp), or toDate(TimestampTime) as the OpenTelemetry
-- Collector's exporter creates otel_logs) is left as it is.
-- The links stay monthly: a story reads an object's links across all time, and daily partitions
-- would give every such read thirty times the parts to look into.

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_traces${local}' AND partition_key LIKE 'toDate(%'
CREATE TABLE IF NOT EXISTS ${db}.otel_traces_daily${local} ${on_cluster} AS ${db}.otel_traces${local}
ENGINE = ${replacing_engine}
PARTITION BY toDate(Timestamp)
ORDER BY (TraceId, SpanId)
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 10000,
    replicated_deduplication_window_seconds = 604800, deduplicate_merge_projection_mode = 'rebuild',
    ttl_only_drop_parts = 1;

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_traces${local}' AND partition_key LIKE 'toDate(%'
TRUNCATE TABLE ${db}.otel_traces_daily${local} ${on_cluster};

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_traces${local}' AND partition_key LIKE 'toDate(%'
INSERT INTO ${db}.otel_traces_daily${local} SELECT * FROM ${db}.otel_traces${local}
SETTINGS insert_deduplicate = 0, max_partitions_per_insert_block = 0;

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_traces${local}' AND partition_key LIKE 'toDate(%'
EXCHANGE TABLES ${db}.otel_traces${local} AND ${db}.otel_traces_daily${local} ${on_cluster};

DROP TABLE IF EXISTS ${db}.otel_traces_daily${local} ${on_cluster} SYNC;

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_logs${local}' AND partition_key LIKE 'toDate(%'
CREATE TABLE IF NOT EXISTS ${db}.otel_logs_daily${local} ${on_cluster} AS ${db}.otel_logs${local}
ENGINE = ${merge_engine}
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window_seconds = 604800,
    ttl_only_drop_parts = 1;

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_logs${local}' AND partition_key LIKE 'toDate(%'
TRUNCATE TABLE ${db}.otel_logs_daily${local} ${on_cluster};

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_logs${local}' AND partition_key LIKE 'toDate(%'
INSERT INTO ${db}.otel_logs_daily${local} SELECT * FROM ${db}.otel_logs${local}
SETTINGS insert_deduplicate = 0, max_partitions_per_insert_block = 0;

-- unless: SELECT count() FROM system.tables WHERE database = '${db}' AND name = 'otel_logs${local}' AND partition_key LIKE 'toDate(%'
EXCHANGE TABLES ${db}.otel_logs${local} AND ${db}.otel_logs_daily${local} ${on_cluster};

DROP TABLE IF EXISTS ${db}.otel_logs_daily${local} ${on_cluster} SYNC
