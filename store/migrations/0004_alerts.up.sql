-- Alerts, one row per version: the newest version of a dedup key is the alert's state.
CREATE TABLE IF NOT EXISTS ${db}.alerts ${on_cluster}
(
    DedupKey String,
    Version UInt64,
    Status LowCardinality(String),
    Detector LowCardinality(String),
    Agent LowCardinality(String),
    Body String CODEC(ZSTD(3)),
    UpdatedAt DateTime64(6)
)
ENGINE = ${replacing_engine}
ORDER BY DedupKey;
