-- Kill switches: the latest row per (scope, name) is in force.
CREATE TABLE IF NOT EXISTS ${db}.controls ${on_cluster}
(
    Scope LowCardinality(String),
    Name String,
    State LowCardinality(String),
    MaxPerMinute UInt32,
    Actor String,
    Reason String,
    UpdatedAt DateTime64(6)
)
ENGINE = ${replacing_engine}
ORDER BY (Scope, Name);

-- Undo plans, one JSON document per version: every step's progress is a new version,
-- so an interrupted execution resumes from what was recorded.
CREATE TABLE IF NOT EXISTS ${db}.rollback_plans ${on_cluster}
(
    PlanId String,
    Version UInt64,
    Status LowCardinality(String),
    Author String,
    Body String CODEC(ZSTD(3)),
    UpdatedAt DateTime64(6)
)
ENGINE = ${replacing_engine}
ORDER BY PlanId;

-- The audit trail of people's acts, hash-chained: each entry's hash covers the previous one.
CREATE TABLE IF NOT EXISTS ${db}.audit_log ${on_cluster}
(
    Seq UInt64,
    Time DateTime64(6),
    Actor String,
    Act LowCardinality(String),
    Subject String,
    Details String,
    PrevHash String,
    Hash String
)
ENGINE = ${merge_engine}
ORDER BY Seq;
