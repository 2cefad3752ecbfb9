"""Where each table lives: one node, or a sharded data cluster plus a one-shard state cluster.

On one node every table is itself. With a cluster (issue 13) the per-trace tables are sharded:
``<name>_local`` Replicated tables on the data cluster plus a ``Distributed`` table ``<name>``
sharded by ``cityHash64(TraceId)``, so a trace, its links, its log records and what is derived
from them live on one shard. Every other table (controls, alerts, plans, the audit and evidence
logs, principals, holds, erasures, migrations) is state: one Replicated table per node on the
state cluster, a single shard whose replicas are every node, so every node reads it alike.

Queries read and insert through the Distributed names; what acts on storage (ALTER of columns,
TTLs, mutations, OPTIMIZE, system tables' rows) names the ``_local`` table ON CLUSTER; an ``IN`` or
``JOIN`` whose subquery reads a sharded table is ``GLOBAL`` (ClickHouse's default
``distributed_product_mode = 'deny'`` refuses the plain form over a Distributed table). Each of
these is a rendering value here, so single-node SQL is unchanged: one code path, not two.

The sharded tables are the ones the cluster-only migration files create Distributed twins for.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from pydantic import BaseModel, Field, model_validator

# CREATE TABLE IF NOT EXISTS ${db}.<name> ${on_cluster} AS ${db}.<name>${local}
#     ENGINE = Distributed(${cluster}, ${db}, <name>${local}, <sharding key>);
DISTRIBUTED_DDL = re.compile(
    r"CREATE TABLE IF NOT EXISTS \$\{db\}\.(?P<name>\w+) \$\{on_cluster\}\s+AS \$\{db\}\.(?P=name)\$\{local\}\s+"
    r"ENGINE = Distributed\(\$\{cluster\}, \$\{db\}, (?P=name)\$\{local\}, (?P<key>[^;]+)\);"
)
# The same statement rendered: CREATE TABLE IF NOT EXISTS db.<name> ON CLUSTER c AS db.<name>_local ENGINE = Distributed(
DISTRIBUTED_CREATE = re.compile(r"^CREATE TABLE IF NOT EXISTS \w+\.(\w+) ON CLUSTER \S+\s+AS \w+\.\1_local\s+"
                                r"ENGINE = Distributed\(")
LOCAL_SUFFIX = "_local"
NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
CLUSTER_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
DATA_KEEPER_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
STATE_KEEPER_PATH = "/clickhouse/tables/state/{database}/{table}"
# Inserts into a Distributed table: written to every shard's replicas before the insert returns
# (not queued on the initiator's disk, where a lost node would lose what the WAL already forgot),
# and on a majority of each shard's replicas (2 of 2 in the pinned deployment): an insert a shard
# cannot take that way fails and stays in the WAL, to be retried. The insert's deduplication token
# reaches each shard with its rows (deterministic sharding key: a retry sends each shard the same rows).
DISTRIBUTED_INSERT_SETTINGS: dict[str, object] = {
    "distributed_foreground_insert": 1,
    "insert_quorum": "auto",
    "insert_quorum_parallel": 1,
    "insert_deduplicate": 1,
}


@cache
def sharded_tables() -> dict[str, str]:
    """Sharded table -> its Distributed table's sharding key, read from the cluster-only migrations."""
    found: dict[str, str] = {}
    for entry in resources.files("flightrec.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".cluster.up.sql"):
            for match in DISTRIBUTED_DDL.finditer(entry.read_text(encoding="utf-8")):
                found[match.group("name")] = match.group("key").strip()
    return found


def check_clusters(cluster: str | None, state_cluster: str | None) -> None:
    """Refuse a data cluster without a state cluster (or the reverse), saying what to set.

    Without one, state tables would be Replicated per shard of the data cluster: on 2 shards a pause
    written through one shard is not seen through the other (the kill switch fails open) and the audit
    chain forks; whether the data cluster has one shard is not known before connecting, so it is named.
    """
    if bool(cluster) != bool(state_cluster):
        raise ValueError(
            "FLIGHTREC_CLUSTER and FLIGHTREC_STATE_CLUSTER go together: set the state cluster to a one-shard "
            "cluster whose replicas are every node (flightrec_state in deploy/cluster), or, on a cluster of one "
            "shard, to the same name as FLIGHTREC_CLUSTER"
        )


class Topology(BaseModel):
    """The database and, with a cluster, the data and state clusters' names."""

    database: str = Field(pattern=NAME, description="the database (written into DDL: a plain name only)")
    cluster: str | None = Field(default=None, pattern=CLUSTER_NAME, description="the data cluster (sharded tables)")
    state_cluster: str | None = Field(default=None, pattern=CLUSTER_NAME,
                                      description="the state cluster (one shard, every node)")

    @model_validator(mode="after")
    def _clusters_go_together(self) -> "Topology":
        check_clusters(self.cluster, self.state_cluster)
        return self

    @property
    def clustered(self) -> bool:
        return bool(self.cluster)

    def sharded(self, table: str) -> bool:
        """Whether ``table`` (a bare name) is a sharded table here."""
        return self.clustered and table in sharded_tables()

    def storage_name(self, table: str) -> str:
        """The bare name of the table that stores ``table``'s rows on this node."""
        return table + LOCAL_SUFFIX if self.sharded(table) else table

    def storage(self, table: str) -> str:
        """``db.<table>`` or, sharded, ``db.<table>_local``: what ALTERs, mutations and OPTIMIZE name."""
        return f"{self.database}.{self.storage_name(table)}"

    def on_cluster(self, table: str) -> str:
        """``ON CLUSTER`` of the cluster ``table`` lives on ('' on one node)."""
        if not self.clustered:
            return ""
        return f"ON CLUSTER {self.cluster if self.sharded(table) else self.state_cluster}"

    def distributed_target(self, table: str) -> bool:
        """Whether ``table`` (``db.name`` or a bare name) is a Distributed table: inserts get DISTRIBUTED_INSERT_SETTINGS."""
        return self.sharded(table.rsplit(".", 1)[-1])

    @property
    def IN(self) -> str:  # noqa: N802 - spelt as the SQL it renders
        """``IN`` for a subquery that reads a sharded table."""
        return "GLOBAL IN" if self.clustered else "IN"

    @property
    def NOT_IN(self) -> str:  # noqa: N802
        return "GLOBAL NOT IN" if self.clustered else "NOT IN"

    @property
    def JOIN(self) -> str:  # noqa: N802
        """Prefix of a JOIN whose right side reads a sharded table ('GLOBAL ' or '')."""
        return "GLOBAL " if self.clustered else ""

    def parts_of(self, system_table: str) -> str:
        """A system table's rows of every node (parts, mutations of a sharded table live per shard)."""
        return f"clusterAllReplicas({self.cluster}, {system_table})" if self.clustered else system_table

    def engines(self, sharded: bool) -> dict[str, str]:
        """Template values for one statement: data-cluster values for sharded storage, state values otherwise."""
        if not self.clustered:
            return {"db": self.database, "on_cluster": "", "local": "", "cluster": "",
                    "replacing_engine": "ReplacingMergeTree", "merge_engine": "MergeTree",
                    "aggregating_engine": "AggregatingMergeTree"}
        # A stable Keeper path per table ({uuid} would differ on a replica created later, which would then
        # never replicate): the server's {database} and {table} macros.
        zk = f"'{DATA_KEEPER_PATH if sharded else STATE_KEEPER_PATH}', '{{replica}}'"
        return {
            "db": self.database,
            "on_cluster": f"ON CLUSTER {self.cluster if sharded else self.state_cluster}",
            "local": LOCAL_SUFFIX,
            "cluster": str(self.cluster),
            "replacing_engine": f"ReplicatedReplacingMergeTree({zk})",
            "merge_engine": f"ReplicatedMergeTree({zk})",
            "aggregating_engine": f"ReplicatedAggregatingMergeTree({zk})",
        }


# ALTER clauses a Distributed table takes (its columns must match its local table's: defaults and
# aliases are computed by the Distributed table on insert and read); indexes, settings, TTLs and
# projections are storage and stay on the local table.
COLUMN_CLAUSE = re.compile(r"^(ADD|MODIFY|DROP|RENAME|COMMENT|CLEAR) COLUMN\b", re.IGNORECASE)
LOCAL_ALTER = re.compile(r"^ALTER TABLE (?P<db>\w+)\.(?P<name>\w+)_local (?P<on>ON CLUSTER [\w.-]+)\s+(?P<body>.*)$",
                         re.DOTALL)


def split_clauses(body: str) -> list[str]:
    """An ALTER's clauses, split at the commas outside parentheses and quotes."""
    clauses, depth, quote, start = [], 0, "", 0
    index = 0
    while index < len(body):
        char = body[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            clauses.append(body[start:index].strip())
            start = index + 1
        index += 1
    clauses.append(body[start:].strip())
    return [clause for clause in clauses if clause]


def mirror_on_distributed(statement: str) -> str | None:
    """The same column changes for a sharded table's Distributed twin, or None when there are none."""
    match = LOCAL_ALTER.match(statement.strip())
    if not match or match.group("name") not in sharded_tables():
        return None
    columns = [clause for clause in split_clauses(match.group("body")) if COLUMN_CLAUSE.match(clause)]
    if not columns:
        return None
    return f"ALTER TABLE {match.group('db')}.{match.group('name')} {match.group('on')} " + ", ".join(columns)


# A rebuild's copy (0029): one local table into another, never deduplicated (a retry after a TRUNCATE
# sends the same blocks again, which a deduplicating insert would drop), into any number of partitions.
LOCAL_COPY = re.compile(r"^INSERT INTO (?P<db>\w+)\.(?P<into>\w+)_local SELECT \* FROM (?P=db)\.(?P<name>\w+)_local"
                        r"\s+SETTINGS insert_deduplicate = 0, max_partitions_per_insert_block = 0$")
ANY_LOCAL_COPY = re.compile(r"^INSERT INTO \w+\.(?P<into>\w+)_local\b.*\bFROM \w+\.(?P<name>\w+)_local\b", re.DOTALL)
# The backfills of 0021 and 0023 aggregate on the node that migrates: right for a new cluster, whose
# sharded tables are empty then (a single-node store is never migrated into a cluster).
ONE_NODE_BACKFILLS = ("object_recency", "otel_traces_trace_id_ts")
# The copy reads each shard from a replica that is up to date, or fails (a stale one would lose rows
# when the old storage is dropped).
FRESH_REPLICA_SETTINGS = {"max_replica_delay_for_distributed_queries": 1,
                          "fallback_to_stale_replicas_for_distributed_queries": 0}


def spread_over_shards(statement: str, topology: Topology) -> str:
    """A copy of every row of a sharded table, from the node that runs the migration.

    On one node the statement is itself. On a cluster ``INSERT INTO t_local SELECT * FROM s_local``
    would copy one shard's rows; it reads the Distributed table instead (each shard from an up-to-date
    replica) and writes each row to its trace's shard, with the table's sharding key and the durable
    insert settings. A copy between sharded tables not in that form is refused: it would copy one shard.
    """
    if not topology.clustered:
        return statement
    match = LOCAL_COPY.match(statement)
    if not match:
        other = ANY_LOCAL_COPY.match(statement)
        if other and other.group("name") in sharded_tables() and other.group("into") not in ONE_NODE_BACKFILLS:
            raise ValueError(f"a copy between sharded tables must read as {LOCAL_COPY.pattern!r}: {statement[:200]}")
        return statement
    if match.group("name") not in sharded_tables():
        return statement
    db, into, name = match.group("db"), match.group("into"), match.group("name")
    settings = {**DISTRIBUTED_INSERT_SETTINGS, "insert_deduplicate": 0, "max_partitions_per_insert_block": 0,
                **FRESH_REPLICA_SETTINGS}
    rendered = ", ".join(f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}"
                         for key, value in settings.items())
    return (f"INSERT INTO FUNCTION cluster('{topology.cluster}', '{db}', '{into}{LOCAL_SUFFIX}', "
            f"{sharded_tables()[name]}) SELECT * FROM {db}.{name} SETTINGS {rendered}")
