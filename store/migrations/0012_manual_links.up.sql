-- Links people attached by hand (POST /api/links), kept apart as well: in object_links a derived
-- link with the same key replaces a manual one at merge time, and re-deriving deletes derived
-- links, so a re-derivation puts these back from here (their record is also in the audit log).
CREATE TABLE IF NOT EXISTS ${db}.manual_links ${on_cluster}
(
    ObjectType LowCardinality(String),
    ObjectId String,
    TraceId String,
    SpanId String,
    Timestamp DateTime64(9),
    Tenant LowCardinality(String),
    Agent LowCardinality(String)
)
ENGINE = ${replacing_engine}
ORDER BY (ObjectType, ObjectId, TraceId, SpanId);
