-- The input and output text of LLM and agent spans, read from whichever convention
-- carried it (gen_ai messages, OpenInference input/output.value, legacy prompt/completion
-- attributes), so stories and search need not know the conventions.
--
-- An otel_traces another writer created first (the OpenTelemetry Collector ClickHouse
-- exporter's table: plain MergeTree, its own key, TTL and indexes) is left as it is by 0001's
-- CREATE TABLE IF NOT EXISTS, so it gets 0001's normalized columns and indexes here, and the
-- deduplication window the writer's insert tokens need on a non-replicated table. On a table
-- 0001 created every one of these is already there: no change. This was 0002 as shipped plus
-- these statements; as shipped it added the text columns AFTER UserId, which a table without
-- UserId refuses (on 0001's table they landed at the end either way, UserId being its last
-- column). A store where 0001 ran on such a table and 0002 failed is completed by this too.
ALTER TABLE ${db}.otel_traces${local} ${on_cluster}
    ADD COLUMN IF NOT EXISTS Tenant LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Agent LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Operation LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Model LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS PromptVersion LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS AgentVersion LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS InputTokens UInt32 CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS OutputTokens UInt32 CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CostUsd Float64 CODEC(Gorilla, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Tool LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Objects Array(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Inputs Array(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS ActionName LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS ActionSystem LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS ActionRisk LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS ActionAmount Float64 CODEC(Gorilla, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS ActionCurrency LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Mode LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS GuardrailVerdict LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS HumanDecision LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS SessionId String CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS UserId String CODEC(ZSTD(1)),
    ADD INDEX IF NOT EXISTS idx_agent Agent TYPE set(256) GRANULARITY 4,
    ADD INDEX IF NOT EXISTS idx_ts Timestamp TYPE minmax GRANULARITY 1;

ALTER TABLE ${db}.otel_traces${local} ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE ${db}.otel_traces${local} ${on_cluster}
    ADD COLUMN IF NOT EXISTS InputText String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS OutputText String CODEC(ZSTD(3));
