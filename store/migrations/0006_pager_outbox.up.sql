-- The pager outbox: one entry per alert transition and destination, one row per version
-- (the newest version is the entry's state: pending, delivered or failed). A pending entry
-- is sent by the delivery loop when its NextAttemptAt has come, after any older pending
-- entry of the same destination and alert; it survives restarts because it lives here.
CREATE TABLE IF NOT EXISTS ${db}.pager_outbox ${on_cluster}
(
    EntryId String,
    Version UInt64,
    Router LowCardinality(String),
    DedupKey String,
    Change LowCardinality(String),
    Status LowCardinality(String),
    Attempts UInt32,
    NextAttemptAt DateTime64(6),
    CreatedAt DateTime64(6),
    UpdatedAt DateTime64(6),
    StatusCode UInt16,
    LastError String,
    Body String CODEC(ZSTD(3))
)
ENGINE = ${replacing_engine}
ORDER BY (EntryId, Version)
TTL toDateTime(CreatedAt) + toIntervalDay(30);
