-- The leader lease (issue 13): several `flightrec serve` processes on one ClickHouse elect one
-- leader for the server's own periodic work (detector passes, paging, the evidence sequencer,
-- rates, retention, re-derivation); flightrec/leader.py has the protocol.
--
-- Every change of a lease (a new term, a renewal, a release) is the next Version, inserted with
-- the deduplication token `lease:<name>:<version>`: a renewal and a takeover racing for one
-- version send one token, the engine keeps the first insert and drops the others whatever their
-- data, and each writer reads the version back to learn who won (the audit log's compare-and-swap,
-- migration 0013). A version is inserted only while its predecessor is the newest (INSERT ... SELECT
-- ... WHERE), so the last row inserted is the newest version, the one a ReplacingMergeTree keeps
-- as parts merge: the table stays about one row a lease. The deduplication window needs to cover
-- racing inserts only, never history: 100 blocks.
-- A state table: with a cluster it must be on the one-shard state cluster, replicated to every node,
-- so every collector reads one lease (a per-shard lease would elect one leader per shard).
CREATE TABLE IF NOT EXISTS ${db}.leader_lease ${on_cluster}
(
    Lease LowCardinality(String),
    Version UInt64,
    Term UInt64,
    Holder String,
    Released UInt8 DEFAULT 0,
    Expires DateTime64(6),
    Written DateTime64(6) DEFAULT now64(6)
)
ENGINE = ${replacing_engine}
ORDER BY Lease
SETTINGS non_replicated_deduplication_window = 100;
