-- Log records (OTLP /v1/logs): the OpenTelemetry Collector ClickHouse exporter's otel_logs
-- columns, so other tools read them and other writers can fill them. GenAI instrumentations
-- send events (messages, choices, tool calls) as log records carrying their span's trace and
-- span ids; stories join them to their spans by those ids (the bloom index keeps that cheap).
-- Monthly partitions like the spans, so one writer insert never spans more than it may.
CREATE TABLE IF NOT EXISTS ${db}.otel_logs${local} ${on_cluster}
(
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ${merge_engine}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS non_replicated_deduplication_window = 10000;
