-- Legal holds (issue 11, deliverable 5): what is held outlives its retention TTL.
-- A hold names an object (type:id: the traces linked to it), an agent (its spans) or a trace.
-- Each change (placed, released) is a new row with a higher Version; the latest row per Id
-- is the hold's state, and the history stays (every act is in the audit log as well).
CREATE TABLE IF NOT EXISTS ${db}.legal_holds ${on_cluster}
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
ENGINE = ${replacing_engine}
ORDER BY Id;

-- The holds in force, by their latest row (argMax, not FINAL: a WHERE over FINAL filtered rows
-- before they were collapsed and kept a released hold in force).
CREATE VIEW IF NOT EXISTS ${db}.legal_holds_active ${on_cluster} AS
SELECT Id, argMax(Kind, Version) AS HoldKind, argMax(ObjectType, Version) AS HoldObjectType,
       argMax(Key, Version) AS HoldKey, argMax(Released, Version) AS HoldReleased
FROM ${db}.legal_holds GROUP BY Id HAVING HoldReleased = 0;

-- The held keys the TTLs ask about: ('trace', TraceId) for a held trace and for every trace linked
-- to a held object, ('agent', name) for a held agent. Written by HoldsRepository.refresh (on every
-- hold, release and server start) as a new generation; readers take the newest one only, so a
-- refresh never shows an empty set. Each node reads its own links, so with spans and links
-- sharded by trace it finds exactly the traces it stores.
CREATE TABLE IF NOT EXISTS ${db}.legal_hold_keys_table ${on_cluster}
(
    Generation UInt64,
    Kind LowCardinality(String),
    Key String
)
ENGINE = ${merge_engine}
ORDER BY (Generation, Kind, Key);

-- The TTLs' lookup (dictHas in TTL ... DELETE WHERE), reloaded after every refresh. It reads the
-- keys table, not the links: ClickHouse refuses a TTL on object_links whose dictionary reads
-- object_links (cyclic dependencies, checked). A dictionary that cannot load fails the TTL
-- evaluation: nothing is deleted, and inserts into the tables wait (the WAL keeps them).
CREATE DICTIONARY IF NOT EXISTS ${db}.legal_hold_keys ${on_cluster}
(
    Kind String,
    Key String,
    Held UInt8 DEFAULT 1
)
PRIMARY KEY Kind, Key
SOURCE(CLICKHOUSE(QUERY 'SELECT Kind, Key, toUInt8(1) AS Held FROM ${db}.legal_hold_keys_table WHERE Generation = (SELECT max(Generation) FROM ${db}.legal_hold_keys_table)'))
LIFETIME(MIN 60 MAX 120)
LAYOUT(COMPLEX_KEY_HASHED());
