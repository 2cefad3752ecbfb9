-- The trace id -> time lookup the OpenTelemetry Collector's ClickHouse exporter creates beside
-- otel_traces (names, columns, engine, partitioning and key as its traces_id_ts_lookup templates),
-- which Grafana's ClickHouse data source reads in OTel mode to bound a trace's time before it reads
-- the trace's spans (some versions fail with an unknown table without it). One row per trace after
-- merges: its first and last span start, in seconds. Its TTL is set by store/retention.py with the
-- spans' retention and their legal holds (a held trace keeps its lookup row, else Grafana finds none
-- of its spans). A table or view the exporter made first is left as it is.
CREATE TABLE IF NOT EXISTS ${db}.otel_traces_trace_id_ts${local} ${on_cluster}
(
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
)
ENGINE = ${aggregating_engine}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- Every insert into otel_traces, by any writer, on the node that stores it (a trace and its lookup
-- row stay on one shard). The view keeps the exporter's name in every mode: nothing reads a view.
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.otel_traces_trace_id_ts_mv ${on_cluster}
TO ${db}.otel_traces_trace_id_ts${local}
AS SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End
FROM ${db}.otel_traces${local}
WHERE TraceId != ''
GROUP BY TraceId;

-- The spans stored before the view existed (on one node; a cluster's sharded tables are new with
-- issue 13, so there its storage starts empty and the view fills it).
INSERT INTO ${db}.otel_traces_trace_id_ts${local}
SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End
FROM ${db}.otel_traces${local}
WHERE TraceId != ''
GROUP BY TraceId;
