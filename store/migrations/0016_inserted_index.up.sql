-- The evidence sequencer reads spans by the time they were inserted (0015): a minmax index on
-- InsertedAt lets it skip every granule older than what it looks for, so a pass reads the new
-- rows, not the whole table (parts hold contiguous insert times).
ALTER TABLE ${db}.otel_traces${local} ${on_cluster} ADD INDEX IF NOT EXISTS idx_inserted InsertedAt TYPE minmax GRANULARITY 1;
