-- People and agents who hold tokens (issue 10). A token is shown once when created; only
-- its SHA-256 is kept. Each change (create, revoke) is a new row with a higher Version, so
-- the latest row per Name is the principal's state and the history stays.
CREATE TABLE IF NOT EXISTS ${db}.principals ${on_cluster}
(
    Name String,
    Kind LowCardinality(String),
    Roles Array(LowCardinality(String)),
    Agents Array(String),
    TokenHash String,
    TokenHint String,
    CreatedAt DateTime64(3),
    CreatedBy String,
    Revoked UInt8 DEFAULT 0,
    Version UInt64
)
ENGINE = ${replacing_engine}
ORDER BY Name;
