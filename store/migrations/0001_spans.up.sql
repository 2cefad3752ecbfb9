-- Spans: the OpenTelemetry Collector ClickHouse exporter's otel_traces columns and
-- types (so Grafana's trace view and other ClickHouse tooling read it), plus the
-- normalized columns Flight Recorder derives from the conventions.
-- Ordered by trace: a trace or an object's traces come back without a full scan,
-- and ReplacingMergeTree keeps one row per (TraceId, SpanId) however often it is sent.
-- Small granules (1024 rows) and monthly partitions: a story reads a few dozen traces
-- scattered over the key space, and each trace costs a granule of every wide column
-- (the attribute maps) to decompress; 8192-row granules and daily parts made that the
-- whole of a story's latency (bench/story.py).
CREATE TABLE IF NOT EXISTS ${db}.otel_traces${local} ${on_cluster}
(
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
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested
    (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested
    (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Tenant LowCardinality(String) CODEC(ZSTD(1)),
    Agent LowCardinality(String) CODEC(ZSTD(1)),
    Operation LowCardinality(String) CODEC(ZSTD(1)),
    Model LowCardinality(String) CODEC(ZSTD(1)),
    PromptVersion LowCardinality(String) CODEC(ZSTD(1)),
    AgentVersion LowCardinality(String) CODEC(ZSTD(1)),
    InputTokens UInt32 CODEC(T64, ZSTD(1)),
    OutputTokens UInt32 CODEC(T64, ZSTD(1)),
    CostUsd Float64 CODEC(Gorilla, ZSTD(1)),
    Tool LowCardinality(String) CODEC(ZSTD(1)),
    Objects Array(String) CODEC(ZSTD(1)),
    Inputs Array(String) CODEC(ZSTD(1)),
    ActionName LowCardinality(String) CODEC(ZSTD(1)),
    ActionSystem LowCardinality(String) CODEC(ZSTD(1)),
    ActionRisk LowCardinality(String) CODEC(ZSTD(1)),
    ActionAmount Float64 CODEC(Gorilla, ZSTD(1)),
    ActionCurrency LowCardinality(String) CODEC(ZSTD(1)),
    Mode LowCardinality(String) CODEC(ZSTD(1)),
    GuardrailVerdict LowCardinality(String) CODEC(ZSTD(1)),
    HumanDecision LowCardinality(String) CODEC(ZSTD(1)),
    SessionId String CODEC(ZSTD(1)),
    UserId String CODEC(ZSTD(1)),
    INDEX idx_agent Agent TYPE set(256) GRANULARITY 4,
    INDEX idx_ts Timestamp TYPE minmax GRANULARITY 1
)
ENGINE = ${replacing_engine}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TraceId, SpanId)
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 10000;

-- Links: one row per (object, span that names it). Ordered by object, so one
-- object's anchors are a range read; descendants are resolved when reading.
CREATE TABLE IF NOT EXISTS ${db}.object_links${local} ${on_cluster}
(
    ObjectType LowCardinality(String),
    ObjectId String,
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    Tenant LowCardinality(String),
    Agent LowCardinality(String)
)
ENGINE = ${replacing_engine}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (ObjectType, ObjectId, TraceId, SpanId)
SETTINGS non_replicated_deduplication_window = 10000;

-- Rejected spans, one row per rejecting request, so the count survives restarts.
CREATE TABLE IF NOT EXISTS ${db}.ingest_rejections ${on_cluster}
(
    Timestamp DateTime64(3),
    Transport LowCardinality(String),
    Rejected UInt64,
    Reason String
)
ENGINE = ${merge_engine}
ORDER BY Timestamp;
