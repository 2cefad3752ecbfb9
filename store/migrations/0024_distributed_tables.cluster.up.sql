-- With a cluster only (issue 13): the Distributed tables every query reads and every insert writes,
-- over the sharded *_local tables. Sharded by trace, so a trace's spans, its links, its log records
-- and their lookup rows live on one shard: the link view (otel_traces -> object_links) and the
-- recency view (object_links -> object_recency) read and write local tables on the shard that got
-- the rows, and trace-local reads stay local. The key is deterministic (never rand()): a retried
-- insert sends each shard the same rows, so each shard's deduplication by the insert's token holds.
-- A Distributed table takes its columns from its local table here (AS); later column changes of a
-- sharded table are repeated on its twin by the loader (store/migrations.py).
CREATE TABLE IF NOT EXISTS ${db}.otel_traces ${on_cluster} AS ${db}.otel_traces${local}
ENGINE = Distributed(${cluster}, ${db}, otel_traces${local}, cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS ${db}.object_links ${on_cluster} AS ${db}.object_links${local}
ENGINE = Distributed(${cluster}, ${db}, object_links${local}, cityHash64(TraceId));

-- Log records go with their span's trace (stories join them by trace id); a record outside any trace
-- (TraceId '') lands on one shard, as every such record hashes alike.
CREATE TABLE IF NOT EXISTS ${db}.otel_logs ${on_cluster} AS ${db}.otel_logs${local}
ENGINE = Distributed(${cluster}, ${db}, otel_logs${local}, cityHash64(TraceId));

-- Fed on each shard by the recency view from that shard's links, so one object has a row per shard
-- that holds one of its traces; readers take max(LastSeen) over the Distributed table. Nothing
-- inserts through it; the key only places a direct insert by object.
CREATE TABLE IF NOT EXISTS ${db}.object_recency ${on_cluster} AS ${db}.object_recency${local}
ENGINE = Distributed(${cluster}, ${db}, object_recency${local}, cityHash64(ObjectType, ObjectId));

-- The (TraceId -> first and last time) lookup Grafana's OTel mode reads (0023): per trace, so with it.
CREATE TABLE IF NOT EXISTS ${db}.otel_traces_trace_id_ts ${on_cluster} AS ${db}.otel_traces_trace_id_ts${local}
ENGINE = Distributed(${cluster}, ${db}, otel_traces_trace_id_ts${local}, cityHash64(TraceId));
