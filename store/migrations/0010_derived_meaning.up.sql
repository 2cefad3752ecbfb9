-- Meaning derived by the engine (store/derive.py): the derived columns of otel_traces are
-- DEFAULT expressions compiled from the rules and installed at start, links come from a
-- materialized view over them. What the expressions need that is not a span's own row:
-- Rates of (provider, model, day), USD per token, resolved from the price package by the
-- collector and read by the CostUsd ALIAS through joinGet (Known = 0: no price anywhere).
CREATE TABLE IF NOT EXISTS ${db}.model_rates ${on_cluster}
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

-- Each link derived by the view carries the version of the rules that made it, so a
-- re-derivation inserts the new links before it deletes the old ones (no story goes empty).
ALTER TABLE ${db}.object_links${local} ${on_cluster} ADD COLUMN IF NOT EXISTS RulesVersion UInt64 DEFAULT 0;

-- Which rule set was installed, and which one derived the stored history, when, over how many spans.
CREATE TABLE IF NOT EXISTS ${db}.derivations ${on_cluster}
(
    AppliedAt DateTime64(3) DEFAULT now64(3),
    Kind LowCardinality(String),
    Fingerprint String,
    Version UInt64,
    Rules String,
    Spans UInt64
)
ENGINE = ${merge_engine}
ORDER BY AppliedAt;
