"""Numbered, append-only migrations recorded in a migrations table.

Files are ``NNNN_<what>.up.sql``; ``${db}``, ``${on_cluster}``, ``${local}`` and the
engine names are filled in for embedded, server or cluster (store/topology.py). A
statement that names a sharded table's storage as ``${db}.<name>${local}`` is rendered
for the data cluster, every other one for the state cluster. ``NNNN_<what>.cluster.up.sql``
files run only with a cluster. A shipped file is never edited: a change is a new number
(writing ``${local}`` into shipped files changed no single-node statement: the snapshot).
A statement preceded by ``-- unless: <query>`` is skipped when the query's first value is not 0:
a step that may not run twice (an ``EXCHANGE``) is then safe for a node that takes over a round.

Retention is rendered into the CREATE of each table it covers (store/retention.py ``TABLES``), from
the policy the store is opened with: a new store starts with its TTLs and never ALTERs them; an
ALTER runs later only when the setting changes (``RetentionRepository.apply``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from importlib import resources
from string import Template

from pydantic import BaseModel, Field

from flightrec.store.engine import Engine
from flightrec.store.retention import TABLES, RetentionPolicy, days_of, render_ttl
from flightrec.store.topology import (DISTRIBUTED_CREATE, LOCAL_ALTER, Topology, mirror_on_distributed,
                                      spread_over_shards)

log = logging.getLogger(__name__)

# A claim on the pending migrations lasts this long after its holder's last heartbeat: a node that died
# holding it is taken over after. The holder beats every quarter lease while it applies (a rebuild's copy,
# 0029, runs for as long as the table takes to copy).
CLAIM_LEASE_S = 600.0
CLAIM_POLL_S = 0.5
HEARTBEAT = ":alive"

# NNNN_<what>.up.sql, or NNNN_<what>.cluster.up.sql: applied only with a cluster (the Distributed twins).
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(\.cluster)?\.up\.sql$")
LOCAL_VAR = "${local}"
# A table's own CREATE (a column list follows), not a Distributed twin made ``AS`` another table.
CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \w+\.(\w+)\b[^\n(]*\n?\s*\(")
# A table rebuilt from another (0029): created AS it with its own engine, so it takes that table's TTL.
REBUILD_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \w+\.\w+ [^\n(]*?\bAS \w+\.(\w+)\s*\nENGINE = (?!Distributed)")
UNLESS = "-- unless:"
ENGINE_CLAUSE = re.compile(r"\nENGINE\s*=")
SETTINGS_CLAUSE = re.compile(r"\nSETTINGS\s")


class Migration(BaseModel):
    version: int
    name: str
    statements: list[str]
    unless: dict[str, str] = Field(default_factory=dict, description="statement -> the query that skips it (not 0)")

    def script(self) -> str:
        """The migration as a script: its statements, each guard as the comment it was written as."""
        return f"-- {self.version:04d}_{self.name}\n" + ";\n\n".join(
            (f"{UNLESS} {self.unless[s]}\n" if s in self.unless else "") + s for s in self.statements) + ";"


def _statements(text: str) -> list[tuple[str, str]]:
    """Each statement of a file with its ``-- unless:`` query ('' when none); other comments dropped
    (they may hold a ';'; a guard's query holds none)."""
    kept = "\n".join(line for line in text.splitlines()
                     if not line.lstrip().startswith("--") or line.lstrip().startswith(UNLESS))
    found = []
    for part in kept.split(";"):
        lines = part.strip().splitlines()
        guards = [line.strip().removeprefix(UNLESS).strip() for line in lines if line.lstrip().startswith(UNLESS)]
        body = "\n".join(line for line in lines if not line.lstrip().startswith(UNLESS)).strip()
        if len(guards) > 1:
            raise RuntimeError(f"one '{UNLESS}' a statement, not {len(guards)}: {body[:120]}")
        if body:
            found.append((body, guards[0] if guards else ""))
    return found


def with_ttl(statement: str, topology: Topology, retention: RetentionPolicy | None) -> str:
    """The statement, with the table's TTL under ``retention`` if it creates a table retention covers.

    The spans' and links' TTLs name the legal-hold dictionary from 0001 on, before 0017 creates it:
    ClickHouse resolves it when the TTL is evaluated (an insert, a merge), and no migration inserts
    into those tables before 0017."""
    match = CREATE_TABLE.match(statement) or REBUILD_TABLE.match(statement)
    if retention is None or not match or "\nTTL " in statement:  # a file's own TTL (0006) is the table's first
        return statement
    days = days_of(retention)
    for spec in TABLES.values():
        if topology.storage_name(spec.table) == match.group(1):
            ttl = render_ttl(topology.database, spec, days[spec.table])
            if not ttl:
                return statement
            engine = ENGINE_CLAUSE.search(statement)
            settings = SETTINGS_CLAUSE.search(statement, engine.end()) if engine else None
            at = settings.start() if settings else len(statement)
            return f"{statement[:at]}\nTTL {ttl}{statement[at:]}"
    return statement


def load_migrations(database: str, cluster: str | None = None, state_cluster: str | None = None,
                    retention: RetentionPolicy | None = None) -> list[Migration]:
    """Every migration file, in order, rendered for this database and cluster.

    A statement that names a sharded table's storage (``${local}``) is rendered for the data cluster,
    every other one for the state cluster; with a cluster, a column change of a sharded table is
    repeated on its Distributed twin once that exists (its columns must stay the local table's).
    With ``retention``, each table it covers is created with its TTL.
    """
    topology = Topology(database=database, cluster=cluster, state_cluster=state_cluster)
    values = {sharded: topology.engines(sharded) for sharded in (True, False)}
    found: list[Migration] = []
    for entry in resources.files("flightrec.store").joinpath("migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if not match or (match.group(3) and not topology.clustered):
            continue
        statements, unless = [], {}
        for statement, guard in _statements(entry.read_text(encoding="utf-8")):
            values_here = values[LOCAL_VAR in statement]
            rendered = spread_over_shards(
                with_ttl(Template(statement).substitute(values_here), topology, retention), topology)
            statements.append(rendered)
            if guard:
                unless[rendered] = Template(guard).substitute(values_here)
        found.append(Migration(version=int(match.group(1)), name=match.group(2), statements=statements,
                               unless=unless))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in store/migrations: {versions}")
    twins: set[str] = set()
    for migration in found:
        mirrored = []
        for statement in migration.statements:
            mirrored.append(statement)
            twin = DISTRIBUTED_CREATE.match(statement)
            if twin:
                twins.add(twin.group(1))
            elif (mirror := mirror_on_distributed(statement)) and LOCAL_ALTER.match(statement).group("name") in twins:  # type: ignore[union-attr]
                mirrored.append(mirror)
        migration.statements = mirrored
    return found


def schema_sql(database: str, cluster: str | None = None, state_cluster: str | None = None,
               retention: RetentionPolicy | None = None) -> str:
    """The DDL the migrations would run, as one script (``flightrec schema``): no store needed."""
    topology = Topology(database=database, cluster=cluster, state_cluster=state_cluster)
    head = [f"CREATE DATABASE IF NOT EXISTS {database} {topology.on_cluster('flightrec_migrations')}".rstrip(),
            migrations_table_sql(topology), claims_table_sql(topology)]
    parts = ["-- bookkeeping\n" + ";\n\n".join(head) + ";"]
    parts += [m.script() for m in load_migrations(database, cluster, state_cluster, retention)]
    return "\n\n".join(parts) + "\n"


def migrations_table_sql(topology: Topology) -> str:
    """The table of applied migrations: a state table (one shard, every node)."""
    return (f"CREATE TABLE IF NOT EXISTS {topology.database}.flightrec_migrations "
            f"{topology.on_cluster('flightrec_migrations')} (version UInt32, name String, applied_at DateTime DEFAULT now()) "
            f"ENGINE = {topology.engines(sharded=False)['merge_engine']} ORDER BY version "
            "SETTINGS replicated_deduplication_window_seconds = 604800").replace("  ", " ")


def claims_table_sql(topology: Topology) -> str:
    """Who applies the pending migrations: the first claim of a (from, to) round wins (insert deduplication)."""
    return (f"CREATE TABLE IF NOT EXISTS {topology.database}.flightrec_migration_claims "
            f"{topology.on_cluster('flightrec_migration_claims')} (Round String, Node String, "
            f"ClaimedAt DateTime64(3) DEFAULT now64(3)) ENGINE = {topology.engines(sharded=False)['merge_engine']} "
            "ORDER BY (Round, ClaimedAt) SETTINGS non_replicated_deduplication_window = 1000, "
            "replicated_deduplication_window_seconds = 604800").replace("  ", " ")


def _claim(engine: Engine, database: str, round_: str, node: str) -> str | None:
    """Claim a migration round; return the node holding it (this one, or the one that claimed first), or None
    while the winning claim has not reached this node's replica yet (this node's own claim was dropped)."""
    table = f"{database}.flightrec_migration_claims"
    engine.insert("claim_migrations", table, [[round_], [node]], ["Round", "Node"], dedup_token=round_)
    rows = engine.query("migration_claim", f"SELECT Node FROM {table} WHERE Round = {{round:String}} "
                        "ORDER BY ClaimedAt LIMIT 1", {"round": round_})
    return rows[0][0] if rows else None


def claim_round(target: int) -> str:
    """The round of every node migrating to ``target``: named by the target alone, so a node that starts
    while another is part-way (some of its migrations recorded) waits for that one."""
    return f"to-{target}"


class _Heartbeat:
    """The holder's sign of life while it applies a round: a claims row ``<round>:alive`` now, then every
    quarter lease from a thread when other nodes may be waiting (a server; one process owns an embedded
    store). ``held`` is False once no beat got through for half the lease: the claim may have been taken."""

    def __init__(self, engine: Engine, database: str, round_: str, node: str) -> None:
        self._engine, self._table = engine, f"{database}.flightrec_migration_claims"
        self._round, self._node = round_, node
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = None if engine.embedded else threading.Thread(
            target=self._run, name="flightrec-migration-heartbeat", daemon=True)

    def beat(self) -> None:
        self._engine.insert("migration_heartbeat", self._table, [[self._round + HEARTBEAT], [self._node]],
                            ["Round", "Node"], dedup_token=f"{self._round}{HEARTBEAT}:{time.time_ns()}")
        self._last = time.monotonic()

    def held(self) -> bool:
        return self._thread is None or time.monotonic() - self._last < CLAIM_LEASE_S / 2

    def _run(self) -> None:
        while not self._stop.wait(CLAIM_LEASE_S / 4):
            try:
                self.beat()
            except Exception as exc:  # a missed beat shortens the claim; held() says when it may be lost
                log.warning("migrations: heartbeat failed (%s)", exc)

    def __enter__(self) -> "_Heartbeat":
        self.beat()
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def migrate(engine: Engine, database: str, cluster: str | None = None, state_cluster: str | None = None, *,
            retention: RetentionPolicy | None = None, node: str = "", wait_s: float = CLAIM_LEASE_S) -> list[int]:
    """Apply every migration not yet recorded, once per store (or cluster); return the versions applied now.

    The pending migrations are a round, named by the highest known version. Its first claim wins: the
    claim's insert carries the round as deduplication token, so a second node's concurrent claim is
    dropped by the engine (in Keeper on a cluster) and that node waits until the round is recorded
    instead of applying it too. A claim older than the lease whose holder stopped beating (its node
    died mid-way) opens the round's next number, and a holder whose beats stopped getting through
    stops before its next statement; every statement is idempotent (IF NOT EXISTS, or guarded by
    ``-- unless:``), so a takeover completes a half-applied migration. With a cluster the DDL runs
    ON CLUSTER from the one node that holds the claim: applied once per cluster, never per shard.
    """
    topology = Topology(database=database, cluster=cluster, state_cluster=state_cluster)
    node = node or f"{socket.gethostname()}:{os.getpid()}"
    on_cluster = topology.on_cluster("flightrec_migrations")
    engine.command("create_database", f"CREATE DATABASE IF NOT EXISTS {database} {on_cluster}")
    engine.command("create_migrations_table", migrations_table_sql(topology))
    applied = _applied(engine, database)
    pending = [m for m in load_migrations(database, cluster, state_cluster, retention) if m.version not in applied]
    if not pending:
        return []
    engine.command("create_migration_claims_table", claims_table_sql(topology))
    base = claim_round(pending[-1].version)
    deadline = time.monotonic() + wait_s
    while True:
        expired = engine.query(
            "expired_migration_claims",
            f"WITH now64(3) - toIntervalSecond({{lease:UInt32}}) AS stale, endsWith(Round, '{HEARTBEAT}') AS beat "
            "SELECT if(maxIf(ClaimedAt, beat) >= stale, 0, countIf(NOT beat AND ClaimedAt < stale)) "
            f"FROM {database}.flightrec_migration_claims WHERE startsWith(Round, {{base:String}})",
            {"base": base + ":", "lease": int(CLAIM_LEASE_S)})[0][0]
        round_ = f"{base}:{expired}"
        holder = _claim(engine, database, round_, node)
        if holder == node:
            break
        if pending[-1].version in _applied(engine, database):
            return []
        if time.monotonic() > deadline:
            raise RuntimeError(f"migrations {base} are being applied by {holder}, which has not finished in "
                               f"{wait_s:.0f} s; its claim expires {CLAIM_LEASE_S:.0f} s after its last heartbeat")
        time.sleep(CLAIM_POLL_S)
    done: list[int] = []
    with _Heartbeat(engine, database, round_, node) as heartbeat:
        for migration in pending:
            if migration.version in _applied(engine, database):
                continue
            for statement in migration.statements:
                if not heartbeat.held():
                    raise RuntimeError(f"migration {migration.version:04d} stopped: no heartbeat of claim {round_} "
                                       f"got through for {CLAIM_LEASE_S / 2:.0f} s, so another node may hold it now")
                guard = migration.unless.get(statement)
                if guard and any(row[0] for row in engine.query(f"migration_{migration.version:04d}_unless", guard)):
                    continue
                engine.command(f"migration_{migration.version:04d}", statement)
            engine.insert(
                "record_migration",
                f"{database}.flightrec_migrations",
                [[migration.version], [migration.name]],
                ["version", "name"],
                dedup_token=f"migration:{migration.version}",
            )
            done.append(migration.version)
    return done


def _applied(engine: Engine, database: str) -> set[int]:
    return {row[0] for row in engine.query("applied_migrations", f"SELECT version FROM {database}.flightrec_migrations")}
