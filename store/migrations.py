"""Numbered, append-only migrations recorded in a migrations table.

Files are ``NNNN_<what>.up.sql``; ``${db}``, ``${on_cluster}``, ``${local}`` (the suffix of a sharded
table's storage) and the engine names are filled in for embedded, server or cluster. A shipped file is never
edited: a change is a new number.
"""

from __future__ import annotations

import re
from importlib import resources
from string import Template

from pydantic import BaseModel

from flightrec.store.engine import Engine

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")


class Migration(BaseModel):
    version: int
    name: str
    statements: list[str]


def schema_vars(database: str, cluster: str | None) -> dict[str, str]:
    """Template values: plain engines on one node, Replicated ones ON CLUSTER."""
    if cluster:
        # A stable Keeper path per table ({uuid} would differ on a replica created later, which would then
        # never replicate): the server's {database} and {table} macros.
        zk = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
        return {
            "db": database,
            "on_cluster": f"ON CLUSTER {cluster}",
            "local": "",
            "replacing_engine": f"ReplicatedReplacingMergeTree({zk})",
            "merge_engine": f"ReplicatedMergeTree({zk})",
            "aggregating_engine": f"ReplicatedAggregatingMergeTree({zk})",
        }
    return {"db": database, "on_cluster": "", "local": "", "replacing_engine": "ReplacingMergeTree", "merge_engine": "MergeTree",
            "aggregating_engine": "AggregatingMergeTree"}


def load_migrations(database: str, cluster: str | None = None) -> list[Migration]:
    """Every migration file, in order, rendered for this database and cluster."""
    found: list[Migration] = []
    values = schema_vars(database, cluster)
    for entry in resources.files("flightrec.store").joinpath("migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if not match:
            continue
        text = Template(entry.read_text(encoding="utf-8")).substitute(values)
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        statements = [part.strip() for part in body.split(";") if part.strip()]
        found.append(Migration(version=int(match.group(1)), name=match.group(2), statements=statements))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in store/migrations: {versions}")
    return found


def migrate(engine: Engine, database: str, cluster: str | None = None) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now. Idempotent."""
    on_cluster = f"ON CLUSTER {cluster}" if cluster else ""
    engine.command("create_database", f"CREATE DATABASE IF NOT EXISTS {database} {on_cluster}")
    table_engine = schema_vars(database, cluster)["merge_engine"]
    engine.command(
        "create_migrations_table",
        f"CREATE TABLE IF NOT EXISTS {database}.flightrec_migrations {on_cluster} "
        f"(version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = {table_engine} ORDER BY version",
    )
    applied = {
        row[0] for row in engine.query("applied_migrations", f"SELECT version FROM {database}.flightrec_migrations")
    }
    done: list[int] = []
    for migration in load_migrations(database, cluster):
        if migration.version in applied:
            continue
        for statement in migration.statements:
            engine.command(f"migration_{migration.version:04d}", statement)
        engine.insert(
            "record_migration",
            f"{database}.flightrec_migrations",
            [[migration.version], [migration.name]],
            ["version", "name"],
        )
        done.append(migration.version)
    return done
