-- Span identity is insert-once: the writer keeps the first stored copy of a
-- (TraceId, SpanId) and compares later copies by this hash of the span as received
-- (resource, scope and span bytes). 0 marks rows written by another writer.
ALTER TABLE ${db}.otel_traces${local} ${on_cluster} ADD COLUMN IF NOT EXISTS ContentHash UInt64 DEFAULT 0 CODEC(ZSTD(1));
