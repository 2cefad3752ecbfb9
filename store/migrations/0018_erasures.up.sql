-- Erasures (issue 11, deliverable 6): one row per span whose content a request erased.
-- A span's evidence leaf hashes its record apart from its content (evidence/leaves.py), so
-- erasing content leaves the leaf and every proof through it unchanged; these rows say why the
-- stored content no longer hashes to the leaf's content hash. PriorContentHash is the content
-- hash the leaf holds, ContentHash the stored content's hash after the erasure; AuditSeq is the
-- `erasure.apply` audit entry (hash-chained, signed, itself a leaf) whose details name the request,
-- its span count and a digest of these rows, so a row added without the entry is caught by
-- `flightrec verify --store`. Keys are the attribute keys whose values were erased, prefixed by
-- where they were: `span:`, `resource:`, `event:<n>:`. Kept forever (no TTL), like the audit log.
CREATE TABLE IF NOT EXISTS ${db}.erasures ${on_cluster}
(
    RequestId String,
    ErasedAt DateTime64(3),
    Actor String,
    Subject String,
    Reason String,
    TraceId String,
    SpanId String,
    Keys Array(String),
    PriorContentHash String,
    ContentHash String,
    AuditSeq UInt64
)
ENGINE = ${merge_engine}
ORDER BY (TraceId, SpanId, ErasedAt);
