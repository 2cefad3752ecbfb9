-- Model rates on every node (issue 13). 0010 kept them in a Join table, which lives in one server's
-- memory and cannot be replicated: on a cluster the leader's rates reached only the node its DSN
-- names, and every other shard priced its calls as unknown. The rates are now rows of a state
-- table (replicated to every node) read by the CostUsd ALIAS through a dictionary each node loads
-- from its own replica. The latest row of a (provider, model, day) wins, as the Join's did.
CREATE TABLE IF NOT EXISTS ${db}.model_rates_table ${on_cluster}
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
ENGINE = ${replacing_engine}
ORDER BY (Provider, Model, Day);

-- Reloaded by the writer after each insert (SYSTEM RELOAD DICTIONARY on every node); the lifetime
-- is the bound for a replica whose copy of an insert arrived after that reload. It is the hold
-- dictionary's (0017): a reload in the engine's background is rare, and never due at every exit.
CREATE DICTIONARY IF NOT EXISTS ${db}.model_rates_dict ${on_cluster}
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
PRIMARY KEY Provider, Model, Day
SOURCE(CLICKHOUSE(QUERY 'SELECT Provider, Model, Day, Known, InputRate, OutputRate, CacheReadRate, CacheWriteRate, PerCall, Source FROM ${db}.model_rates_table FINAL'))
LIFETIME(MIN 60 MAX 120)
LAYOUT(COMPLEX_KEY_HASHED());

-- The cost columns read the Join: they go (CostKnown first, an old stored form of it reads CostUsd)
-- and the derivation installs them again right after the migrations, over the dictionary
-- (store/derive.py cost_columns); an ALIAS holds no data, and a stored CostUsd of a store older
-- than 0010 is dropped by that install anyway. Then the Join can go. Its rows cannot be read back
-- (its keys are hashed), so nothing is copied: the rate resolver prices every stored call again
-- from the price package in its first pass (until then, cost reads as unknown, CostKnown = 0).
ALTER TABLE ${db}.otel_traces${local} ${on_cluster} DROP COLUMN IF EXISTS CostKnown,
    DROP COLUMN IF EXISTS CostUsd;

DROP TABLE IF EXISTS ${db}.model_rates ${on_cluster};
