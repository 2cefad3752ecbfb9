-- The audit log, second format (issue 10): one writer at a time with several server processes,
-- canonical hashes, signed heads.
--
-- Appends are a compare-and-swap: the entry for sequence number N is inserted with the
-- deduplication token (N, previous hash), so when two writers race for N the engine keeps the
-- first insert and drops the second; the loser reads N back, sees another hash and retries at
-- N + 1. A MergeTree deduplicates by token only with a deduplication window (Replicated tables
-- keep theirs in Keeper; the setting is accepted and unused there).
ALTER TABLE ${db}.audit_log ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;

-- How an entry's hash is computed: 1 = the first format (Python json.dumps of a list), 2 = RFC 8785
-- canonical JSON of an object. Entries written before this migration read 1 and verify as before.
ALTER TABLE ${db}.audit_log ${on_cluster} ADD COLUMN IF NOT EXISTS Format UInt8 DEFAULT 1;

-- Signed heads: after each append the server signs (seq, hash, time) with its Ed25519 key (kept in
-- the data directory, outside the store). A verifier checks each signature and that the entry at
-- Seq still has Hash; the server also keeps its newest head in a file beside the key, so removing
-- entries and heads together is caught too.
CREATE TABLE IF NOT EXISTS ${db}.audit_heads ${on_cluster}
(
    Seq UInt64,
    Hash String,
    Time DateTime64(6),
    KeyId String,
    Signature String
)
ENGINE = ${merge_engine}
ORDER BY Seq;
