-- The evidence log (issue 11): every stored span and every audit entry is a leaf of one
-- append-only RFC 9162 Merkle tree, whose roots the server signs as checkpoints.
--
-- Finding new spans from any writer: a DEFAULT applies to every writer's inserts (ours, the
-- OpenTelemetry Collector exporter's, a hand-written INSERT), so the sequencer reads rows by the
-- time they were inserted, with a look-back window, and anti-joins what is already a leaf. Rows
-- stored before this column existed read it as the time of the query until a merge writes it.
ALTER TABLE ${db}.otel_traces${local} ${on_cluster} ADD COLUMN IF NOT EXISTS InsertedAt DateTime64(6) DEFAULT now64(6) CODEC(Delta(8), ZSTD(1));

-- Leaves, in order: Idx is the leaf index. A batch of leaves is appended as a compare-and-swap
-- (the insert deduplication token names the tree size and root it extends), so two server
-- processes on one ClickHouse write one log. RecordHash and ContentHash are SHA-256 (hex) of the
-- span's canonical record and content (for an audit entry: the entry's hash, and ''); the leaf
-- data is recomputed from them (evidence/leaves.py). Seen is the source row's InsertedAt (spans)
-- or the entry's time; Time is the span's start (retention may expire the span later). Batch is
-- the tree size the leaf's batch started at (a crash between leaves and nodes is repaired from it).
-- A plain MergeTree: a second row for an index stays visible to verification.
CREATE TABLE IF NOT EXISTS ${db}.evidence_leaves ${on_cluster}
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
ENGINE = ${merge_engine}
ORDER BY Idx
SETTINGS non_replicated_deduplication_window = 10000;

-- Every complete subtree above the leaves (Level >= 1; level 0 is evidence_leaves.LeafHash):
-- 2^Level leaves from Idx * 2^Level. Proofs read O(log^2 n) of these; none is ever recomputed.
CREATE TABLE IF NOT EXISTS ${db}.evidence_nodes ${on_cluster}
(
    Level UInt8,
    Idx UInt64,
    Hash String
)
ENGINE = ${merge_engine}
ORDER BY (Level, Idx)
SETTINGS non_replicated_deduplication_window = 10000;

-- Signed checkpoints, C2SP signed-note format (Note is the whole signed note, as served).
CREATE TABLE IF NOT EXISTS ${db}.evidence_checkpoints ${on_cluster}
(
    Size UInt64,
    RootHash String,
    Time DateTime64(6),
    Origin String,
    KeyId String,
    Note String
)
ENGINE = ${merge_engine}
ORDER BY (Size, Time);
