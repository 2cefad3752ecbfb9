-- Where a link came from: 'span' (derived from a span's attributes) or 'manual' (an auditor
-- attached a trace to an object by hand, POST /api/links). Re-deriving links from the rules
-- replaces derived links only; manual ones are the record of a person's act (also audited).
ALTER TABLE ${db}.object_links${local} ${on_cluster} ADD COLUMN IF NOT EXISTS Source LowCardinality(String) DEFAULT 'span';
