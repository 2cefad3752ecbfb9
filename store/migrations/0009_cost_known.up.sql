-- An unknown price is not 0 USD: CostKnown is 0 on an LLM call that used tokens and has
-- neither a reported cost nor a price (CostUsd then stays 0), 1 otherwise, so sums of
-- CostUsd stay sums of known costs and countIf(CostKnown = 0) says how many calls they miss.
-- Rows stored before, or inserted without the column, take the expression: tokens priced at
-- 0 USD were priced by a table that did not know the model.
ALTER TABLE ${db}.otel_traces${local} ${on_cluster} ADD COLUMN IF NOT EXISTS CostKnown UInt8
    DEFAULT if(CostUsd = 0 AND (InputTokens + OutputTokens) > 0, 0, 1) CODEC(ZSTD(1));
