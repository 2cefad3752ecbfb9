-- What the tools people already use read fast (issue 13, deliverable 4).
--
-- Bloom filters over the attribute maps' keys and values, as the OpenTelemetry Collector's ClickHouse
-- exporter defines them (same names, expressions, types and granularity), so a filter like
-- SpanAttributes['http.route'] = '/refund' or mapContains(ResourceAttributes, 'k8s.pod.name') from
-- Grafana, ClickStack or a hand-written query skips the granules that cannot hold it. An otel_traces
-- the exporter created first has them already: IF NOT EXISTS leaves them. ADD INDEX covers new parts;
-- MATERIALIZE INDEX builds them for the stored parts as a background mutation (it reads the two map
-- columns and writes only the index files; until it is through, an old part is read in full).
ALTER TABLE ${db}.otel_traces${local} ${on_cluster}
    ADD INDEX IF NOT EXISTS idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    ADD INDEX IF NOT EXISTS idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    ADD INDEX IF NOT EXISTS idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    ADD INDEX IF NOT EXISTS idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE ${db}.otel_traces${local} ${on_cluster}
    MATERIALIZE INDEX idx_res_attr_key, MATERIALIZE INDEX idx_res_attr_value,
    MATERIALIZE INDEX idx_span_attr_key, MATERIALIZE INDEX idx_span_attr_value;

-- Time-range reads by service (Grafana's trace search, ClickStack's search and charts: a service, a
-- time window, newest first) on a table ordered by trace: a projection ordered as the exporter orders
-- its table (ServiceName, SpanName, time), holding the columns a trace list shows, so such a read is
-- a range of the projection instead of a scan of every part. Trace lookups keep the table's own key.
-- A projection on a Replacing table must say what a merge that collapses rows does to it: rebuild.
-- It costs the projection's columns once more on disk (bench/RESULTS.md) and its sort at each insert.
ALTER TABLE ${db}.otel_traces${local} ${on_cluster} MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

ALTER TABLE ${db}.otel_traces${local} ${on_cluster}
    ADD PROJECTION IF NOT EXISTS by_service_time
    (
        SELECT Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration, StatusCode
        ORDER BY ServiceName, SpanName, toDateTime(Timestamp), Timestamp
    );

ALTER TABLE ${db}.otel_traces${local} ${on_cluster} MATERIALIZE PROJECTION by_service_time;
