-- When each object was last touched, per tenant and agent: what the objects list orders by
-- (issue 9). One row per (object, tenant, agent) after merges, against one per link in
-- object_links, so "the 50 objects touched last" reads a table the size of the object count
-- and aggregates details over those 50 objects' links only. Fed by every insert into
-- object_links (the link view, re-derivations, manual links); rows of links deleted later
-- (a rule removed) stay until they expire: the list reads the links to confirm each object.
CREATE TABLE IF NOT EXISTS ${db}.object_recency${local} ${on_cluster}
(
    ObjectType LowCardinality(String),
    ObjectId String,
    Tenant LowCardinality(String),
    Agent LowCardinality(String),
    LastSeen SimpleAggregateFunction(max, DateTime64(9))
)
ENGINE = ${aggregating_engine}
ORDER BY (ObjectType, ObjectId, Tenant, Agent);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.object_recency_view ${on_cluster} TO ${db}.object_recency${local}
AS SELECT ObjectType, ObjectId, Tenant, Agent, Timestamp AS LastSeen FROM ${db}.object_links${local};

INSERT INTO ${db}.object_recency${local}
SELECT ObjectType, ObjectId, Tenant, Agent, max(Timestamp) FROM ${db}.object_links${local}
GROUP BY ObjectType, ObjectId, Tenant, Agent;
