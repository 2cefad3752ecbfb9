-- With a cluster only (issue 13): how long a Replicated table remembers an insert's deduplication
-- token. ClickHouse keeps the last 10,000 blocks but forgets them after an hour by default
-- (replicated_deduplication_window_seconds = 3600); a WAL segment retried later than that (a shard
-- down for longer, its collector retrying) would be stored twice. A week here, as long as the
-- tokens of single-node tables live (their window has no time limit), on every table whose
-- inserts carry one: spans and logs (the writer), the rows their views derive, and the state
-- tables whose appends are compare-and-swaps by token (audit log, evidence log, leader lease).
ALTER TABLE ${db}.otel_traces${local} ${on_cluster} MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE ${db}.otel_logs${local} ${on_cluster} MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE ${db}.object_links${local} ${on_cluster} MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE ${db}.audit_log ${on_cluster} MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE ${db}.evidence_leaves ${on_cluster} MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE ${db}.evidence_nodes ${on_cluster} MODIFY SETTING replicated_deduplication_window_seconds = 604800;

ALTER TABLE ${db}.leader_lease ${on_cluster} MODIFY SETTING replicated_deduplication_window_seconds = 604800;
