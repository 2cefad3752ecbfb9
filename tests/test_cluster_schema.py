"""The sharded, replicated schema (issue 13): rendered DDL checked claim by claim, and every store
statement issued in cluster mode against Distributed tables in chDB (tests/cluster_harness.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flightrec.store import StoreConfig
from flightrec.store.engine import Engine, StoreError
from flightrec.store.migrations import load_migrations, schema_sql
from flightrec.store.topology import (
    DATA_KEEPER_PATH,
    DISTRIBUTED_INSERT_SETTINGS,
    STATE_KEEPER_PATH,
    Topology,
    mirror_on_distributed,
    sharded_tables,
)

CLUSTER, STATE = "flightrec", "flightrec_state"
STORE = Path(__file__).parent.parent / "store"
CREATE = re.compile(r"^CREATE (?:TABLE|MATERIALIZED VIEW|VIEW|DICTIONARY) IF NOT EXISTS fr\.(\w+) ON CLUSTER (\S+)")
ENGINE = re.compile(r"ENGINE = (\w+)(?:\('([^']*)', '([^']*)'\))?")
# Tables with a TraceId that are state, not sharded, and why: each is a record of its own (an act, a leaf
# of the one evidence log, a request's rows), read by every node alike, not a trace's derived data.
TRACE_KEYED_STATE = {"evidence_leaves", "erasures", "manual_links"}
# The pinned state tables (controls/kill switches, alerts, plans, audit, principals, holds, erasures,
# evidence log, migrations, leader lease): on the state cluster, one shard, every node.
PINNED_STATE = {"controls", "alerts", "rollback_plans", "audit_log", "audit_heads", "principals", "legal_holds",
                "erasures", "evidence_leaves", "evidence_nodes", "evidence_checkpoints", "leader_lease"}


def cluster_statements() -> list[str]:
    return [s for m in load_migrations("fr", CLUSTER, STATE) for s in m.statements]


def created() -> dict[str, tuple[str, str]]:
    """Name -> (cluster, the statement) of everything the cluster schema creates."""
    found = {}
    for statement in cluster_statements():
        match = CREATE.match(statement)
        if match:
            found[match.group(1)] = (match.group(2), statement)
    return found


def test_every_sharded_table_has_a_distributed_twin_sharded_by_trace() -> None:
    tables = created()
    sharded = sharded_tables()
    assert {"otel_traces", "object_links", "otel_logs", "object_recency", "otel_traces_trace_id_ts"} <= set(sharded)
    for name, key in sharded.items():
        cluster, local = tables[f"{name}_local"]
        assert cluster == CLUSTER, name
        engine = ENGINE.search(local)
        assert engine and engine.group(1).startswith("Replicated") and engine.group(2) == DATA_KEEPER_PATH, local
        twin_cluster, twin = tables[name]
        assert twin_cluster == CLUSTER
        assert f"AS fr.{name}_local\nENGINE = Distributed({CLUSTER}, fr, {name}_local, {key})" in twin
        # a trace's rows go together; the recency table (no TraceId) is fed per shard by its view
        assert key == ("cityHash64(ObjectType, ObjectId)" if name == "object_recency" else "cityHash64(TraceId)")


def test_tables_keyed_by_trace_are_sharded_unless_named_state() -> None:
    for name, (cluster, statement) in created().items():
        if statement.startswith("CREATE TABLE") and "ENGINE = Distributed" not in statement and (
                re.search(r"^\s+TraceId String", statement, re.MULTILINE)):
            base = name.removesuffix("_local")
            assert base in sharded_tables() or name in TRACE_KEYED_STATE, f"{name} holds TraceId: shard it or name it"


def test_no_state_table_is_sharded() -> None:
    tables = created()
    sharded = sharded_tables()
    state = {name: item for name, item in tables.items()
             if name.removesuffix("_local") not in sharded and not name.startswith(tuple(sharded))}
    assert PINNED_STATE <= set(state), PINNED_STATE - set(state)
    for name, (cluster, statement) in state.items():
        assert cluster == STATE, f"{name} is on {cluster}"
        engine = ENGINE.search(statement)
        if engine and engine.group(1).startswith("Replicated"):
            assert (engine.group(2), engine.group(3)) == (STATE_KEEPER_PATH, "{replica}"), name
        assert "_local" not in statement and "Distributed" not in statement, name
    # the bookkeeping tables too
    script = schema_sql("fr", CLUSTER, STATE)
    for table in ("flightrec_migrations", "flightrec_migration_claims"):
        assert re.search(rf"fr\.{table} ON CLUSTER {STATE} .*ENGINE = ReplicatedMergeTree\('{re.escape(STATE_KEEPER_PATH)}'",
                         script), table


def test_no_uuid_in_any_replication_path() -> None:
    script = schema_sql("fr", CLUSTER, STATE)
    topology = Topology(database="fr", cluster=CLUSTER, state_cluster=STATE)
    assert "{uuid}" not in script
    assert not any("{uuid}" in value for sharded in (True, False) for value in topology.engines(sharded).values())
    for path in re.findall(r"Replicated\w*MergeTree\('([^']*)'", script):
        assert path in (DATA_KEEPER_PATH, STATE_KEEPER_PATH)


def test_every_ddl_statement_is_on_a_cluster_and_backfills_stay_on_their_shard() -> None:
    copies = []
    for statement in cluster_statements():
        if statement.startswith("INSERT INTO FUNCTION cluster("):
            copies.append(statement)
            continue
        if statement.startswith("INSERT"):
            # a backfill (a fresh cluster has nothing to backfill): from a local table into a local one
            tables = re.findall(r"fr\.(\w+)", statement)
            assert tables and all(t.endswith("_local") for t in tables), statement
            continue
        assert re.match(rf"^(CREATE|ALTER|DROP|TRUNCATE|EXCHANGE)\b[^(]*? ON CLUSTER ({CLUSTER}|{STATE})\b",
                        statement), statement[:200]
        assert "${" not in statement
    # A rebuild's copy (0029) reads every shard and writes each row to its trace's shard, durably, once.
    assert [re.match(r"INSERT INTO FUNCTION cluster\('flightrec', 'fr', '(\w+)_daily_local', cityHash64\(TraceId\)\) "
                     r"SELECT \* FROM fr\.(\w+) SETTINGS", copy).groups() for copy in copies] == [
        ("otel_traces", "otel_traces"), ("otel_logs", "otel_logs")]
    for setting in ("distributed_foreground_insert = 1", "insert_deduplicate = 0",
                    "max_partitions_per_insert_block = 0", "fallback_to_stale_replicas_for_distributed_queries = 0"):
        assert all(setting in copy for copy in copies), setting


def test_a_copy_between_sharded_tables_in_another_form_is_refused() -> None:
    """Rendered for the cluster it would copy the migrating node's shard only, and 0029 then drops the rest."""
    from flightrec.store.topology import spread_over_shards

    clustered = Topology(database="fr", cluster=CLUSTER, state_cluster=STATE)
    copy = "INSERT INTO fr.otel_traces_copy_local SELECT * FROM fr.otel_traces_local"
    with pytest.raises(ValueError, match="must read as"):
        spread_over_shards(copy, clustered)
    assert spread_over_shards(copy, Topology(database="fr")) == copy  # one node: every row is here


def test_views_over_sharded_tables_read_and_write_local_tables() -> None:
    sharded = sharded_tables()
    views = [s for s in cluster_statements() if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views
    for view in views:
        target = re.search(r"\sTO fr\.(\w+)", view).group(1)
        sources = re.findall(r"FROM fr\.(\w+)", view)
        assert target.endswith("_local") and target.removesuffix("_local") in sharded, view
        assert sources and all(s.endswith("_local") and s.removesuffix("_local") in sharded for s in sources), view
        assert f"ON CLUSTER {CLUSTER}" in view


def test_single_node_rendering_has_no_cluster_parts() -> None:
    single = [s for m in load_migrations("flightrec", None) for s in m.statements]
    text = "\n".join(single)
    assert "ON CLUSTER" not in text and "Replicated" not in text and "Distributed" not in text
    assert "_local" not in text and "${" not in text
    assert 24 not in {m.version for m in load_migrations("flightrec", None)}  # the cluster-only file


def test_a_later_column_change_reaches_the_distributed_twin() -> None:
    alter = ("ALTER TABLE fr.otel_traces_local ON CLUSTER flightrec ADD COLUMN IF NOT EXISTS X Map(String, String) "
             "CODEC(ZSTD(1)), ADD INDEX IF NOT EXISTS idx_x mapKeys(X) TYPE bloom_filter(0.01) GRANULARITY 1, "
             "MODIFY COLUMN Y String DEFAULT concat('a,b', toString(1)), MODIFY SETTING index_granularity = 1024")
    assert mirror_on_distributed(alter) == (
        "ALTER TABLE fr.otel_traces ON CLUSTER flightrec ADD COLUMN IF NOT EXISTS X Map(String, String) CODEC(ZSTD(1)), "
        "MODIFY COLUMN Y String DEFAULT concat('a,b', toString(1))")
    assert mirror_on_distributed("ALTER TABLE fr.otel_traces_local ON CLUSTER flightrec ADD INDEX i X TYPE minmax") is None
    assert mirror_on_distributed("ALTER TABLE fr.audit_log ON CLUSTER flightrec_state ADD COLUMN X UInt8") is None


def test_a_cluster_without_a_state_cluster_is_refused_with_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from flightrec.settings import Settings

    for kwargs in ({"cluster": "flightrec"}, {"state_cluster": "flightrec_state"}):
        with pytest.raises(ValueError, match="FLIGHTREC_STATE_CLUSTER go together"):
            StoreConfig(**kwargs)
    monkeypatch.setenv("FLIGHTREC_CLUSTER", "flightrec")
    monkeypatch.setenv("FLIGHTREC_STATE_CLUSTER", "flightrec_state")
    assert Settings().store_config().topology() == Topology(database="flightrec", cluster=CLUSTER, state_cluster=STATE)
    monkeypatch.delenv("FLIGHTREC_STATE_CLUSTER")
    with pytest.raises(ValueError, match="FLIGHTREC_STATE_CLUSTER"):
        Settings().store_config()


def test_distributed_inserts_are_foreground_with_a_quorum_and_deduplicated() -> None:
    topology = Topology(database="fr", cluster=CLUSTER, state_cluster=STATE)
    assert DISTRIBUTED_INSERT_SETTINGS["distributed_foreground_insert"] == 1
    assert DISTRIBUTED_INSERT_SETTINGS["insert_quorum"] == "auto" and DISTRIBUTED_INSERT_SETTINGS["insert_deduplicate"] == 1
    assert topology.distributed_target("fr.otel_traces") and topology.distributed_target("object_links")
    assert not topology.distributed_target("fr.audit_log") and not topology.distributed_target("fr.otel_traces_local")
    assert not Topology(database="fr").distributed_target("fr.otel_traces")


# -- every statement, in chDB, on Distributed tables --------------------------------------------------------

# Statements chDB's client cannot send at all (no external data), so not analysed here (issue 9's engine ingest).
CHDB_CANNOT = "external_data is not supported by the chdb backend"
NAMED = re.compile(r"engine\.(?:query|command|insert|insert_native|query_columns)\(\s*f?\"([a-z0-9_]+)\"")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("cluster")
    done = subprocess.run([sys.executable, str(Path(__file__).parent / "cluster_harness.py"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "statements.json").read_text())


def test_every_store_statement_passes_clickhouse_analysis_on_distributed_tables(harness: dict) -> None:
    statements = harness["statements"]
    bad = [(s["name"], s["error"]) for s in statements if s["outcome"] == "error" and s["name"] != "harness_plain_in"
           and CHDB_CANNOT not in s["error"]]
    assert not bad, bad
    issued = {s["name"] for s in statements}
    named = {name for path in STORE.glob("*.py") for name in NAMED.findall(path.read_text())}
    assert len(named) > 150  # the inventory found the store's statements
    missing = named - issued
    assert not missing, f"statements the cluster harness never issued: {sorted(missing)}"


def test_the_schema_is_what_the_store_reads(harness: dict) -> None:
    tables = harness["tables"]
    for name in sharded_tables():
        assert tables[name] == "Distributed" and tables[f"{name}_local"].endswith("MergeTree"), name
    assert tables["controls"].endswith("MergeTree") and "controls_local" not in tables


def test_each_distributed_table_has_its_local_tables_columns_after_migrations_and_rules(harness: dict) -> None:
    """Defaults and aliases are the Distributed table's own on insert and read: derived columns included."""
    columns = harness["columns"]
    assert any(column == "_DeriveSpan" for column, _, _ in columns["otel_traces"])  # the rules' columns, installed
    for name in sharded_tables():
        assert columns[name] == columns[f"{name}_local"], name


def test_the_link_view_installed_at_start_reads_and_writes_local_tables(harness: dict) -> None:
    (view,) = {s["sql"] for s in harness["statements"] if s["name"] == "create_link_view"}
    assert f" ON CLUSTER {CLUSTER} TO fr.object_links_local " in view and view.endswith(
        "FROM fr.otel_traces_local ARRAY JOIN Objects AS o")


def test_a_plain_in_over_a_distributed_subquery_would_have_been_refused(harness: dict) -> None:
    """The check can fail: the store's GLOBAL IN queries are issued and pass, and ClickHouse refuses the plain form."""
    globals_ = [s for s in harness["statements"] if "GLOBAL IN" in s["sql"]]
    assert {"object_anchors", "recent_objects", "objects_by_span_text"} <= {s["name"] for s in globals_}
    refused = [s for s in harness["statements"] if s["name"] == "harness_plain_in"]
    assert refused and refused[0]["outcome"] == "error" and "DISTRIBUTED_IN_JOIN_SUBQUERY_DENIED" in refused[0]["error"]


def _write_target(write: dict) -> str:
    if write["kind"] == "insert":
        return write["target"]
    match = re.match(r"\s*INSERT INTO ([\w.]+)", write["target"])
    return match.group(1) if match else ""


def test_every_insert_into_a_distributed_table_is_sent_with_the_durable_settings(harness: dict) -> None:
    """Whatever the path (column insert, Native, INSERT ... SELECT, the engine's OTLP parse): one place sets them."""
    sharded = {f"fr.{name}" for name in sharded_tables()}
    writes = [w for w in harness["writes"] if _write_target(w) in sharded]
    assert {_write_target(w) for w in writes} >= {"fr.otel_traces", "fr.object_links"}
    for write in writes:
        for key, value in DISTRIBUTED_INSERT_SETTINGS.items():
            assert write["settings"].get(key) == str(value), (write["target"][:120], key)
    others = [w for w in harness["writes"] if _write_target(w) and _write_target(w) not in sharded]
    assert others and not any("insert_quorum" in w["settings"] for w in others)  # state and local tables: none


def test_every_table_written_with_a_token_remembers_it_for_a_week(harness: dict) -> None:
    """ClickHouse forgets a Replicated table's tokens after an hour by default; a retried WAL segment can be older."""
    script = schema_sql("fr", CLUSTER, STATE)
    tokened = {_write_target(w).removeprefix("fr.") for w in harness["writes"]
               if "insert_deduplication_token" in w["settings"] and _write_target(w)}
    assert {"otel_traces", "audit_log", "evidence_leaves", "flightrec_migration_claims"} <= tokened
    for table in tokened:
        storage = f"{table}_local" if table in sharded_tables() else table
        assert re.search(rf"fr\.{storage} ON CLUSTER \S+ (MODIFY SETTING |\(.*SETTINGS .*)"
                         rf"replicated_deduplication_window_seconds = 604800", script), table


def test_inserts_into_distributed_tables_wait_for_their_shards(harness: dict) -> None:
    """A foreground insert fails when its shards cannot take it (a queued one would have returned at once)."""
    spans = [s for s in harness["statements"] if s["name"] == "insert_spans"]
    assert spans and spans[0]["outcome"] == "network" and "Insertion status" in spans[0]["error"]


def test_views_fill_local_tables_on_the_shard_that_got_the_span(harness: dict) -> None:
    assert harness["local_counts"] == [1, 1, 1, 1]  # span -> its link -> the object's recency; trace bounds


# -- migrations applied once: a claimed round is left to its holder -----------------------------------------


def _fresh(engine, name: str) -> list[int]:  # noqa: ANN001 - the store's engine
    from flightrec.store.migrations import claims_table_sql, migrations_table_sql

    engine.command("test_create_database", f"CREATE DATABASE {name}")
    engine.command("test_migrations_table", migrations_table_sql(Topology(database=name)))
    engine.command("test_claims_table", claims_table_sql(Topology(database=name)))
    return [m.version for m in load_migrations(name)]


def _tables(engine, name: str) -> set[str]:  # noqa: ANN001
    return {row[0] for row in engine.query("test_tables", "SELECT name FROM system.tables WHERE database = {db:String}",
                                           {"db": name})}


def test_a_second_node_leaves_claimed_migrations_to_their_holder(store) -> None:  # noqa: ANN001
    from flightrec.store.migrations import _claim, claim_round, migrate

    engine, name = store.engine, f"{store.db}_claimed"
    versions = _fresh(engine, name)
    assert _claim(engine, name, f"{claim_round(versions[-1])}:0", "node-b") == "node-b"
    with pytest.raises(RuntimeError, match="being applied by node-b"):
        migrate(engine, name, node="node-a", wait_s=0.3)
    assert _tables(engine, name) == {"flightrec_migrations", "flightrec_migration_claims"}  # node-a applied nothing
    engine.insert("test_record", f"{name}.flightrec_migrations", [versions, ["x"] * len(versions)], ["version", "name"])
    assert migrate(engine, name, node="node-a", wait_s=5) == []  # node-b's round is recorded: nothing left


def test_a_claim_older_than_its_lease_is_taken_over(store) -> None:  # noqa: ANN001
    from flightrec.store.migrations import CLAIM_LEASE_S, claim_round, migrate

    engine, name = store.engine, f"{store.db}_stale"
    versions = _fresh(engine, name)
    engine.command("test_stale_claim", f"INSERT INTO {name}.flightrec_migration_claims (Round, Node, ClaimedAt) "
                   "VALUES ({round:String}, 'node-b', now64(3) - toIntervalSecond({age:UInt32}))",
                   {"round": f"{claim_round(versions[-1])}:0", "age": int(CLAIM_LEASE_S) + 60})
    assert migrate(engine, name, node="node-a", wait_s=5) == versions
    assert {"otel_traces", "controls", "audit_log"} <= _tables(engine, name)
    claims = engine.query("test_claims", f"SELECT DISTINCT Round, Node FROM {name}.flightrec_migration_claims "
                          "ORDER BY Round")
    round_ = claim_round(versions[-1])
    assert claims == [(f"{round_}:0", "node-b"), (f"{round_}:1", "node-a"), (f"{round_}:1:alive", "node-a")]


def test_a_claim_older_than_its_lease_whose_holder_still_beats_is_left_to_it(store) -> None:  # noqa: ANN001
    """A long migration (a rebuild's copy, 0029) outlives the lease: its holder's heartbeat keeps it."""
    from flightrec.store.migrations import CLAIM_LEASE_S, HEARTBEAT, claim_round, migrate

    engine, name = store.engine, f"{store.db}_beating"
    versions = _fresh(engine, name)
    round_ = f"{claim_round(versions[-1])}:0"
    for row, age in ((round_, int(CLAIM_LEASE_S) + 60), (round_ + HEARTBEAT, int(CLAIM_LEASE_S) // 2)):
        engine.command("test_claim", f"INSERT INTO {name}.flightrec_migration_claims (Round, Node, ClaimedAt) "
                       "VALUES ({round:String}, 'node-b', now64(3) - toIntervalSecond({age:UInt32}))",
                       {"round": row, "age": age})
    with pytest.raises(RuntimeError, match="being applied by node-b"):
        migrate(engine, name, node="node-a", wait_s=0.3)
    assert _tables(engine, name) == {"flightrec_migrations", "flightrec_migration_claims"}


def test_a_node_that_starts_while_another_is_part_way_waits_for_it(store) -> None:  # noqa: ANN001
    """node-b recorded all but the last migration and is still applying it: node-a's round is the same
    (named by the target), so it waits rather than applying the last one beside node-b."""
    from flightrec.store.migrations import HEARTBEAT, _claim, claim_round, migrate

    engine, name = store.engine, f"{store.db}_partway"
    versions = _fresh(engine, name)
    round_ = f"{claim_round(versions[-1])}:0"
    assert _claim(engine, name, round_, "node-b") == "node-b"
    engine.insert("test_beat", f"{name}.flightrec_migration_claims", [[round_ + HEARTBEAT], ["node-b"]],
                  ["Round", "Node"])
    engine.insert("test_record", f"{name}.flightrec_migrations", [versions[:-1], ["x"] * (len(versions) - 1)],
                  ["version", "name"])
    with pytest.raises(RuntimeError, match="being applied by node-b"):
        migrate(engine, name, node="node-a", wait_s=0.3)


class BeatingEngine(Engine):
    """The store's engine on the same chDB, answering as a server would be: other nodes may wait on a claim."""

    embedded = False


def test_a_holder_beats_while_it_applies_and_stops_when_its_beats_stop_getting_through(
        store, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from flightrec.store import migrations

    monkeypatch.setattr(migrations, "CLAIM_LEASE_S", 0.4)  # a beat every 0.1 s; held for 0.2 s without one
    engine, name = store.engine, f"{store.db}_beats"
    _fresh(engine, name)
    beating = BeatingEngine.__new__(BeatingEngine)
    beating.__dict__.update(engine.__dict__)  # the same client (one chDB directory a process) and database
    heartbeat = migrations._Heartbeat(beating, name, "to-1:0", "node-a")

    def beats() -> int:
        return engine.query("test_beats", f"SELECT count() FROM {name}.flightrec_migration_claims "
                            "WHERE Round = 'to-1:0:alive'")[0][0]

    with heartbeat:
        deadline = time.monotonic() + 60
        while beats() < 3:  # the first at once, then from the thread
            assert time.monotonic() < deadline, "the heartbeat thread did not beat"
            time.sleep(0.05)
        assert heartbeat.held()

        def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise StoreError("heartbeat: the claims table is not reachable", transient=True)

        monkeypatch.setattr(beating, "insert", refused)
        while heartbeat.held():  # half the lease without a beat
            assert time.monotonic() < deadline, "held() stayed True without beats"
            time.sleep(0.05)
