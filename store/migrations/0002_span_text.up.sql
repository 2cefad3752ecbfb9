-- The input and output text of LLM and agent spans, read from whichever convention
-- carried it (gen_ai messages, OpenInference input/output.value, legacy prompt/completion
-- attributes), so stories and search need not know the conventions.
ALTER TABLE ${db}.otel_traces ${on_cluster}
    ADD COLUMN IF NOT EXISTS InputText String CODEC(ZSTD(3)) AFTER UserId,
    ADD COLUMN IF NOT EXISTS OutputText String CODEC(ZSTD(3)) AFTER InputText;
