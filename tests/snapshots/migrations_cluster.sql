-- 0001_spans
CREATE TABLE IF NOT EXISTS flightrec.otel_traces_local ON CLUSTER fr
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TraceId, SpanId)
TTL toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT (dictHas('flightrec.legal_hold_keys', tuple('trace', TraceId)) OR dictHas('flightrec.legal_hold_keys', tuple('agent', toString(Agent))))
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS flightrec.object_links_local ON CLUSTER fr
(
    ObjectType LowCardinality(String),
    ObjectId String,
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    Tenant LowCardinality(String),
    Agent LowCardinality(String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (ObjectType, ObjectId, TraceId, SpanId)
TTL toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT (dictHas('flightrec.legal_hold_keys', tuple('trace', TraceId)) OR dictHas('flightrec.legal_hold_keys', tuple('agent', toString(Agent))))
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS flightrec.ingest_rejections ON CLUSTER fr_state
(
    Timestamp DateTime64(3),
    Transport LowCardinality(String),
    Rejected UInt64,
    Reason String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY Timestamp;

-- 0002_span_text
ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr
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

ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr
    ADD COLUMN IF NOT EXISTS InputText String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS OutputText String CODEC(ZSTD(3));

-- 0003_controls_rollback_audit
CREATE TABLE IF NOT EXISTS flightrec.controls ON CLUSTER fr_state
(
    Scope LowCardinality(String),
    Name String,
    State LowCardinality(String),
    MaxPerMinute UInt32,
    Actor String,
    Reason String,
    UpdatedAt DateTime64(6)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (Scope, Name);

CREATE TABLE IF NOT EXISTS flightrec.rollback_plans ON CLUSTER fr_state
(
    PlanId String,
    Version UInt64,
    Status LowCardinality(String),
    Author String,
    Body String CODEC(ZSTD(3)),
    UpdatedAt DateTime64(6)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY PlanId;

CREATE TABLE IF NOT EXISTS flightrec.audit_log ON CLUSTER fr_state
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY Seq;

-- 0004_alerts
CREATE TABLE IF NOT EXISTS flightrec.alerts ON CLUSTER fr_state
(
    DedupKey String,
    Version UInt64,
    Status LowCardinality(String),
    Detector LowCardinality(String),
    Agent LowCardinality(String),
    Body String CODEC(ZSTD(3)),
    UpdatedAt DateTime64(6)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY DedupKey;

-- 0005_span_identity
ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr ADD COLUMN IF NOT EXISTS ContentHash UInt64 DEFAULT 0 CODEC(ZSTD(1));

-- 0006_pager_outbox
CREATE TABLE IF NOT EXISTS flightrec.pager_outbox ON CLUSTER fr_state
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (EntryId, Version)
TTL toDateTime(CreatedAt) + toIntervalDay(30);

-- 0007_logs
CREATE TABLE IF NOT EXISTS flightrec.otel_logs_local ON CLUSTER fr
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (ServiceName, TimestampTime, Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT dictHas('flightrec.legal_hold_keys', tuple('trace', TraceId))
SETTINGS non_replicated_deduplication_window = 10000;

-- 0008_link_source
ALTER TABLE flightrec.object_links_local ON CLUSTER fr ADD COLUMN IF NOT EXISTS Source LowCardinality(String) DEFAULT 'span';

-- 0009_cost_known
ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr ADD COLUMN IF NOT EXISTS CostKnown UInt8
    DEFAULT if(CostUsd = 0 AND (InputTokens + OutputTokens) > 0, 0, 1) CODEC(ZSTD(1));

-- 0010_derived_meaning
CREATE TABLE IF NOT EXISTS flightrec.model_rates ON CLUSTER fr_state
(
    Provider String,
    Model String,
    Day Date,
    Known UInt8,
    InputRate Float64,
    OutputRate Float64,
    CacheReadRate Float64,
    CacheWriteRate Float64,
    PerCall Float64,
    Source String
)
ENGINE = Join(ANY, LEFT, Provider, Model, Day)
SETTINGS join_any_take_last_row = 1;

ALTER TABLE flightrec.object_links_local ON CLUSTER fr ADD COLUMN IF NOT EXISTS RulesVersion UInt64 DEFAULT 0;

CREATE TABLE IF NOT EXISTS flightrec.derivations ON CLUSTER fr_state
(
    AppliedAt DateTime64(3) DEFAULT now64(3),
    Kind LowCardinality(String),
    Fingerprint String,
    Version UInt64,
    Rules String,
    Spans UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY AppliedAt;

-- 0011_principals
CREATE TABLE IF NOT EXISTS flightrec.principals ON CLUSTER fr_state
(
    Name String,
    Kind LowCardinality(String),
    Roles Array(LowCardinality(String)),
    Agents Array(String),
    TokenHash String,
    TokenHint String,
    CreatedAt DateTime64(3),
    CreatedBy String,
    Revoked UInt8 DEFAULT 0,
    Version UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY Name;

-- 0012_manual_links
CREATE TABLE IF NOT EXISTS flightrec.manual_links ON CLUSTER fr_state
(
    ObjectType LowCardinality(String),
    ObjectId String,
    TraceId String,
    SpanId String,
    Timestamp DateTime64(9),
    Tenant LowCardinality(String),
    Agent LowCardinality(String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (ObjectType, ObjectId, TraceId, SpanId);

-- 0013_audit_v2
ALTER TABLE flightrec.audit_log ON CLUSTER fr_state MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE flightrec.audit_log ON CLUSTER fr_state ADD COLUMN IF NOT EXISTS Format UInt8 DEFAULT 1;

CREATE TABLE IF NOT EXISTS flightrec.audit_heads ON CLUSTER fr_state
(
    Seq UInt64,
    Hash String,
    Time DateTime64(6),
    KeyId String,
    Signature String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY Seq;

-- 0014_principal_scope
ALTER TABLE flightrec.principals ON CLUSTER fr_state ADD COLUMN IF NOT EXISTS Services Array(String) AFTER Agents;

ALTER TABLE flightrec.principals ON CLUSTER fr_state ADD COLUMN IF NOT EXISTS Tenant String DEFAULT '' AFTER Services;

-- 0015_evidence_log
ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr ADD COLUMN IF NOT EXISTS InsertedAt DateTime64(6) DEFAULT now64(6) CODEC(Delta(8), ZSTD(1));

CREATE TABLE IF NOT EXISTS flightrec.evidence_leaves ON CLUSTER fr_state
(
    Idx UInt64,
    Kind LowCardinality(String),
    TraceId String,
    SpanId String,
    AuditSeq UInt64,
    RecordHash String,
    ContentHash String,
    LeafHash String,
    Time DateTime64(9),
    Seen DateTime64(6),
    Batch UInt64,
    SequencedAt DateTime64(6) DEFAULT now64(6),
    PROJECTION by_ref (SELECT * ORDER BY Kind, TraceId, SpanId, AuditSeq)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY Idx
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS flightrec.evidence_nodes ON CLUSTER fr_state
(
    Level UInt8,
    Idx UInt64,
    Hash String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (Level, Idx)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS flightrec.evidence_checkpoints ON CLUSTER fr_state
(
    Size UInt64,
    RootHash String,
    Time DateTime64(6),
    Origin String,
    KeyId String,
    Note String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (Size, Time);

-- 0016_inserted_index
ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr ADD INDEX IF NOT EXISTS idx_inserted InsertedAt TYPE minmax GRANULARITY 1;

-- 0017_legal_holds
CREATE TABLE IF NOT EXISTS flightrec.legal_holds ON CLUSTER fr_state
(
    Id String,
    Kind LowCardinality(String),
    ObjectType String,
    Key String,
    Reason String,
    CreatedAt DateTime64(3),
    CreatedBy String,
    Released UInt8 DEFAULT 0,
    ReleasedAt DateTime64(3) DEFAULT 0,
    ReleasedBy String DEFAULT '',
    ReleaseReason String DEFAULT '',
    Version UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY Id;

CREATE VIEW IF NOT EXISTS flightrec.legal_holds_active ON CLUSTER fr_state AS
SELECT Id, argMax(Kind, Version) AS HoldKind, argMax(ObjectType, Version) AS HoldObjectType,
       argMax(Key, Version) AS HoldKey, argMax(Released, Version) AS HoldReleased
FROM flightrec.legal_holds GROUP BY Id HAVING HoldReleased = 0;

CREATE TABLE IF NOT EXISTS flightrec.legal_hold_keys_table ON CLUSTER fr_state
(
    Generation UInt64,
    Kind LowCardinality(String),
    Key String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (Generation, Kind, Key);

CREATE DICTIONARY IF NOT EXISTS flightrec.legal_hold_keys ON CLUSTER fr_state
(
    Kind String,
    Key String,
    Held UInt8 DEFAULT 1
)
PRIMARY KEY Kind, Key
SOURCE(CLICKHOUSE(QUERY 'SELECT Kind, Key, toUInt8(1) AS Held FROM flightrec.legal_hold_keys_table WHERE Generation = (SELECT max(Generation) FROM flightrec.legal_hold_keys_table)'))
LIFETIME(MIN 60 MAX 120)
LAYOUT(COMPLEX_KEY_HASHED());

-- 0018_erasures
CREATE TABLE IF NOT EXISTS flightrec.erasures ON CLUSTER fr_state
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (TraceId, SpanId, ErasedAt);

-- 0019_leader_lease
CREATE TABLE IF NOT EXISTS flightrec.leader_lease ON CLUSTER fr_state
(
    Lease LowCardinality(String),
    Version UInt64,
    Term UInt64,
    Holder String,
    Released UInt8 DEFAULT 0,
    Expires DateTime64(6),
    Written DateTime64(6) DEFAULT now64(6)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY Lease
SETTINGS non_replicated_deduplication_window = 100;

-- 0021_object_recency
CREATE TABLE IF NOT EXISTS flightrec.object_recency_local ON CLUSTER fr
(
    ObjectType LowCardinality(String),
    ObjectId String,
    Tenant LowCardinality(String),
    Agent LowCardinality(String),
    LastSeen SimpleAggregateFunction(max, DateTime64(9))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (ObjectType, ObjectId, Tenant, Agent)
TTL toDateTime(LastSeen) + toIntervalDay(180);

CREATE MATERIALIZED VIEW IF NOT EXISTS flightrec.object_recency_view ON CLUSTER fr TO flightrec.object_recency_local
AS SELECT ObjectType, ObjectId, Tenant, Agent, Timestamp AS LastSeen FROM flightrec.object_links_local;

INSERT INTO flightrec.object_recency_local
SELECT ObjectType, ObjectId, Tenant, Agent, max(Timestamp) FROM flightrec.object_links_local
GROUP BY ObjectType, ObjectId, Tenant, Agent;

-- 0022_tool_indexes
ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr
    ADD INDEX IF NOT EXISTS idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    ADD INDEX IF NOT EXISTS idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    ADD INDEX IF NOT EXISTS idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    ADD INDEX IF NOT EXISTS idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr
    MATERIALIZE INDEX idx_res_attr_key, MATERIALIZE INDEX idx_res_attr_value,
    MATERIALIZE INDEX idx_span_attr_key, MATERIALIZE INDEX idx_span_attr_value;

ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr
    ADD PROJECTION IF NOT EXISTS by_service_time
    (
        SELECT Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration, StatusCode
        ORDER BY ServiceName, SpanName, toDateTime(Timestamp), Timestamp
    );

ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr MATERIALIZE PROJECTION by_service_time;

-- 0023_trace_id_ts
CREATE TABLE IF NOT EXISTS flightrec.otel_traces_trace_id_ts_local ON CLUSTER fr
(
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
TTL toDateTime(End) + toIntervalDay(180) WHERE NOT dictHas('flightrec.legal_hold_keys', tuple('trace', TraceId))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS flightrec.otel_traces_trace_id_ts_mv ON CLUSTER fr
TO flightrec.otel_traces_trace_id_ts_local
AS SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End
FROM flightrec.otel_traces_local
WHERE TraceId != ''
GROUP BY TraceId;

INSERT INTO flightrec.otel_traces_trace_id_ts_local
SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End
FROM flightrec.otel_traces_local
WHERE TraceId != ''
GROUP BY TraceId;

-- 0024_distributed_tables
CREATE TABLE IF NOT EXISTS flightrec.otel_traces ON CLUSTER fr AS flightrec.otel_traces_local
ENGINE = Distributed(fr, flightrec, otel_traces_local, cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS flightrec.object_links ON CLUSTER fr AS flightrec.object_links_local
ENGINE = Distributed(fr, flightrec, object_links_local, cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS flightrec.otel_logs ON CLUSTER fr AS flightrec.otel_logs_local
ENGINE = Distributed(fr, flightrec, otel_logs_local, cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS flightrec.object_recency ON CLUSTER fr AS flightrec.object_recency_local
ENGINE = Distributed(fr, flightrec, object_recency_local, cityHash64(ObjectType, ObjectId));

CREATE TABLE IF NOT EXISTS flightrec.otel_traces_trace_id_ts ON CLUSTER fr AS flightrec.otel_traces_trace_id_ts_local
ENGINE = Distributed(fr, flightrec, otel_traces_trace_id_ts_local, cityHash64(TraceId));

-- 0025_deduplication_window
ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE flightrec.otel_logs_local ON CLUSTER fr MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE flightrec.object_links_local ON CLUSTER fr MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE flightrec.audit_log ON CLUSTER fr_state MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE flightrec.evidence_leaves ON CLUSTER fr_state MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE flightrec.evidence_nodes ON CLUSTER fr_state MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE flightrec.leader_lease ON CLUSTER fr_state MODIFY SETTING replicated_deduplication_window_seconds = 604800;

-- 0027_evidence_cursor
ALTER TABLE flightrec.evidence_leaves ON CLUSTER fr_state ADD COLUMN IF NOT EXISTS Sequencer String DEFAULT '';

ALTER TABLE flightrec.evidence_leaves ON CLUSTER fr_state ADD INDEX IF NOT EXISTS idx_seen Seen TYPE minmax GRANULARITY 1;

-- 0028_replicated_rates
CREATE TABLE IF NOT EXISTS flightrec.model_rates_table ON CLUSTER fr_state
(
    Provider String,
    Model String,
    Day Date,
    Known UInt8,
    InputRate Float64,
    OutputRate Float64,
    CacheReadRate Float64,
    CacheWriteRate Float64,
    PerCall Float64,
    Source String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/state/{database}/{table}', '{replica}')
ORDER BY (Provider, Model, Day);

CREATE DICTIONARY IF NOT EXISTS flightrec.model_rates_dict ON CLUSTER fr_state
(
    Provider String,
    Model String,
    Day Date,
    Known UInt8,
    InputRate Float64,
    OutputRate Float64,
    CacheReadRate Float64,
    CacheWriteRate Float64,
    PerCall Float64,
    Source String
)
PRIMARY KEY Provider, Model, Day
SOURCE(CLICKHOUSE(QUERY 'SELECT Provider, Model, Day, Known, InputRate, OutputRate, CacheReadRate, CacheWriteRate, PerCall, Source FROM flightrec.model_rates_table FINAL'))
LIFETIME(MIN 60 MAX 120)
LAYOUT(COMPLEX_KEY_HASHED());

ALTER TABLE flightrec.otel_traces_local ON CLUSTER fr DROP COLUMN IF EXISTS CostKnown,
    DROP COLUMN IF EXISTS CostUsd;

ALTER TABLE flightrec.otel_traces ON CLUSTER fr DROP COLUMN IF EXISTS CostKnown, DROP COLUMN IF EXISTS CostUsd;

DROP TABLE IF EXISTS flightrec.model_rates ON CLUSTER fr_state;

-- 0029_daily_partitions
-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_traces_local' AND partition_key LIKE 'toDate(%'
CREATE TABLE IF NOT EXISTS flightrec.otel_traces_daily_local ON CLUSTER fr AS flightrec.otel_traces_local
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toDate(Timestamp)
ORDER BY (TraceId, SpanId)
TTL toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT (dictHas('flightrec.legal_hold_keys', tuple('trace', TraceId)) OR dictHas('flightrec.legal_hold_keys', tuple('agent', toString(Agent))))
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 10000,
    replicated_deduplication_window_seconds = 604800, deduplicate_merge_projection_mode = 'rebuild',
    ttl_only_drop_parts = 1;

-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_traces_local' AND partition_key LIKE 'toDate(%'
TRUNCATE TABLE flightrec.otel_traces_daily_local ON CLUSTER fr;

-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_traces_local' AND partition_key LIKE 'toDate(%'
INSERT INTO FUNCTION cluster('fr', 'flightrec', 'otel_traces_daily_local', cityHash64(TraceId)) SELECT * FROM flightrec.otel_traces SETTINGS distributed_foreground_insert = 1, insert_quorum = 'auto', insert_quorum_parallel = 1, insert_deduplicate = 0, max_partitions_per_insert_block = 0, max_replica_delay_for_distributed_queries = 1, fallback_to_stale_replicas_for_distributed_queries = 0;

-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_traces_local' AND partition_key LIKE 'toDate(%'
EXCHANGE TABLES flightrec.otel_traces_local AND flightrec.otel_traces_daily_local ON CLUSTER fr;

DROP TABLE IF EXISTS flightrec.otel_traces_daily_local ON CLUSTER fr SYNC;

-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_logs_local' AND partition_key LIKE 'toDate(%'
CREATE TABLE IF NOT EXISTS flightrec.otel_logs_daily_local ON CLUSTER fr AS flightrec.otel_logs_local
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, TimestampTime, Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT dictHas('flightrec.legal_hold_keys', tuple('trace', TraceId))
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window_seconds = 604800,
    ttl_only_drop_parts = 1;

-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_logs_local' AND partition_key LIKE 'toDate(%'
TRUNCATE TABLE flightrec.otel_logs_daily_local ON CLUSTER fr;

-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_logs_local' AND partition_key LIKE 'toDate(%'
INSERT INTO FUNCTION cluster('fr', 'flightrec', 'otel_logs_daily_local', cityHash64(TraceId)) SELECT * FROM flightrec.otel_logs SETTINGS distributed_foreground_insert = 1, insert_quorum = 'auto', insert_quorum_parallel = 1, insert_deduplicate = 0, max_partitions_per_insert_block = 0, max_replica_delay_for_distributed_queries = 1, fallback_to_stale_replicas_for_distributed_queries = 0;

-- unless: SELECT count() FROM system.tables WHERE database = 'flightrec' AND name = 'otel_logs_local' AND partition_key LIKE 'toDate(%'
EXCHANGE TABLES flightrec.otel_logs_local AND flightrec.otel_logs_daily_local ON CLUSTER fr;

DROP TABLE IF EXISTS flightrec.otel_logs_daily_local ON CLUSTER fr SYNC;
