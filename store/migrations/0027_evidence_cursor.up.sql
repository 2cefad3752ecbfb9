-- The evidence sequencer appends spans past a cursor on (InsertedAt, TraceId, SpanId) with one
-- INSERT ... SELECT that hashes in the engine (issue 11): no leaf row travels through Python.
-- Sequencer names the process that appended a leaf, so a compare-and-swap loser (whose insert
-- the deduplication token dropped) learns from the rows read back that the batch is not its own.
-- The minmax index on Seen (the source span's InsertedAt) lets "is this new span a leaf yet?"
-- read only the leaves appended since the cursor, not the whole log.
ALTER TABLE ${db}.evidence_leaves ${on_cluster} ADD COLUMN IF NOT EXISTS Sequencer String DEFAULT '';
ALTER TABLE ${db}.evidence_leaves ${on_cluster} ADD INDEX IF NOT EXISTS idx_seen Seen TYPE minmax GRANULARITY 1;
