"""Every store statement, issued in cluster mode against Distributed tables in chDB (run as a script).

``python tests/cluster_harness.py DIR`` writes DIR/statements.json: one entry per statement the
store issued, its name, SQL and outcome. chDB is the ClickHouse engine, given a ``remote_servers``
configuration with the pinned clusters (``flightrec``: 2 shards; ``flightrec_state``: 1 shard), so
the schema is the cluster schema (``*_local`` tables, Distributed tables over them, state tables) and
every query is analysed by ClickHouse as it would be on a cluster node: a plain ``IN``/``JOIN`` over a
Distributed subquery is refused (``distributed_product_mode = 'deny'``), an unknown column or table
fails. What chDB cannot do, and so what is changed here and nowhere else:

- it has no Keeper: DDL runs without ``ON CLUSTER`` and with the plain MergeTree engines;
- its shards are not reachable (chDB serves no TCP port): reads of Distributed tables skip them
  (``skip_unavailable_shards = 1``, so they return no rows), and inserts into Distributed tables fail
  at the network, which is their outcome ``network`` (a foreground insert: a queued one would succeed);
  ``clusterAllReplicas(cluster, system.<table>)`` asks the replicas for the table's structure first,
  so it reads this node's ``system.<table>`` instead;
- so that the store's code goes on past a read of a Distributed table (to the statements that follow
  a non-empty answer), its answer is what this node's own shard holds: the same statement over its
  local tables (``harness_shard_answer``, not itself a statement checked); a statement that writes a
  state table from a read of a Distributed one (it fails at the network) is completed the same way.

It runs in its own process: a chDB process holds one data directory with one configuration.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import re
import sys
import traceback
import types
import typing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import clickhouse_connect
from pydantic import BaseModel

from flightrec.store import Store, StoreConfig
from flightrec.store.engine import EMBEDDED_SETTINGS, Engine, StoreError
from flightrec.store.topology import LOCAL_SUFFIX, sharded_tables

CLUSTER, STATE_CLUSTER, DATABASE = "flightrec", "flightrec_state", "fr"
# ClickHouse's own codes for "the shard is not reachable", and NO_DATA_TO_INSERT (an insert of a sampled
# empty input): the statement passed analysis. ALL_REPLICAS_ARE_STALE (369): a read that may not fall back
# to a stale replica (a rebuild's copy, 0029) counts a replica it cannot reach as stale.
NETWORK_CODES = {108, 209, 210, 279, 369, 519}
REPLICATED = re.compile(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'\)")
ON_CLUSTER = re.compile(r" ON CLUSTER [\w.-]+")
ALL_REPLICAS = re.compile(r"clusterAllReplicas\([\w.-]+, (system\.\w+)\)")
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|TRUNCATE|KILL|SYSTEM|OPTIMIZE|DELETE|RENAME|EXCHANGE)\b", re.IGNORECASE)
# A copy written through the cluster table function (a rebuild, 0029): its shard answer writes the local table.
CLUSTER_INSERT = re.compile(r"^INSERT INTO FUNCTION cluster\('[\w.-]+', '(\w+)', '(\w+)', [^)]*\)\)")

CONFIG = """<clickhouse>
  <remote_servers>
    <flightrec>
      <shard><replica><host>127.0.0.1</host><port>1</port></replica></shard>
      <shard><replica><host>127.0.0.1</host><port>1</port></replica></shard>
    </flightrec>
    <flightrec_state>
      <shard><replica><host>127.0.0.1</host><port>1</port></replica></shard>
    </flightrec_state>
  </remote_servers>
  <macros><shard>01</shard><replica>ch-s1-r1</replica></macros>
</clickhouse>
"""

RECORDED: list[dict[str, Any]] = []


def outcome(exc: StoreError | None) -> str:
    if exc is None:
        return "ok"
    return "network" if exc.code in NETWORK_CODES else "error"


WRITES: list[dict[str, Any]] = []
DISTRIBUTED = re.compile(rf"\b{DATABASE}\.({'|'.join(sharded_tables())})\b")


def shard_answer(sql: str) -> str | None:
    """The statement over this node's local tables (what its shard holds), or None when it reads no sharded table."""
    return DISTRIBUTED.sub(rf"{DATABASE}.\1{LOCAL_SUFFIX}", sql) if DISTRIBUTED.search(sql) else None


class SettingsSeen:
    """The clickhouse-connect client, noting the settings every write is sent with (what reaches the engine)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _seen(self, kind: str, target: str, settings: dict | None) -> None:
        WRITES.append({"kind": kind, "target": target, "settings": {k: str(v) for k, v in (settings or {}).items()}})

    def command(self, sql: str, *args: Any, settings: dict | None = None, **kw: Any) -> Any:
        self._seen("command", sql, settings)
        return self._client.command(sql, *args, settings=settings, **kw)

    def insert(self, table: str, *args: Any, settings: dict | None = None, **kw: Any) -> Any:
        self._seen("insert", table, settings)
        return self._client.insert(table, *args, settings=settings, **kw)

    def raw_insert(self, table: str, *args: Any, settings: dict | None = None, **kw: Any) -> Any:
        self._seen("insert", table, settings)
        return self._client.raw_insert(table, *args, settings=settings, **kw)


class KeeperlessEngine(Engine):
    """The store's engine on chDB configured with the clusters; records every statement and its outcome."""

    config_file = ""

    @staticmethod
    def _connect(target: Any) -> Any:
        return SettingsSeen(clickhouse_connect.get_client(dsn=f"chdb://{target.path}", settings=EMBEDDED_SETTINGS,
                                                          chdb_options={"config-file": KeeperlessEngine.config_file}))

    def _record(self, name: str, sql: str, call: Any) -> Any:
        try:
            result = call()
        except StoreError as exc:
            RECORDED.append({"name": name, "sql": sql, "outcome": outcome(exc), "error": str(exc)[:600]})
            raise
        RECORDED.append({"name": name, "sql": sql, "outcome": "ok", "error": ""})
        return result

    def query(self, name: str, sql: str, params: dict | None = None, settings: dict | None = None, **kw: Any) -> Any:
        wanted = {**(settings or {}), "skip_unavailable_shards": 1}
        run = ALL_REPLICAS.sub(r"\1", sql)
        rows = self._record(name, sql, lambda: super(KeeperlessEngine, self).query(name, run, params, wanted, **kw))
        local = shard_answer(run)
        return rows if local is None else super().query("harness_shard_answer", local, params, settings, **kw)

    def query_columns(self, name: str, sql: str, params: dict | None = None, **kw: Any) -> Any:
        sql_skipping = f"{sql} SETTINGS skip_unavailable_shards = 1" if " SETTINGS " not in sql else sql
        columns = self._record(name, sql, lambda: super(KeeperlessEngine, self).query_columns(
            name, sql_skipping, params, **kw))
        local = shard_answer(sql)
        return columns if local is None else super().query_columns("harness_shard_answer", local, params, **kw)

    def command(self, name: str, sql: str, params: dict | None = None, settings: dict | None = None,
                **kw: Any) -> Any:
        run = REPLICATED.sub(r"\1", ON_CLUSTER.sub("", sql)) if DDL.match(sql) else sql
        try:
            return self._record(name, sql, lambda: super(KeeperlessEngine, self).command(name, run, params, settings,
                                                                                          **kw))
        except StoreError as exc:
            target = re.match(r"\s*INSERT INTO ([\w.]+)", sql)
            local = shard_answer(CLUSTER_INSERT.sub(r"INSERT INTO \1.\2", run))
            if outcome(exc) != "network" or local is None or (target and self.topology.distributed_target(target[1])):
                raise
            return super().command("harness_shard_answer", local, params, settings, **kw)

    def insert(self, name: str, table: str, *args: Any, **kw: Any) -> Any:
        return self._record(name, f"INSERT INTO {table}", lambda: super(KeeperlessEngine, self).insert(
            name, table, *args, **kw))

    def insert_native(self, name: str, table: str, *args: Any, **kw: Any) -> Any:
        return self._record(name, f"INSERT INTO {table} FORMAT Native", lambda: super(KeeperlessEngine, self).insert_native(
            name, table, *args, **kw))


def sample(annotation: Any, name: str, scope: dict[str, Any]) -> Any:
    """A plausible argument of this type for a store method (``scope``: the method's module, for its names)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {**vars(typing), **vars(collections.abc), **scope})  # noqa: S307
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return sample(options[0], name, scope)
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable) or annotation in (list,):
        args = typing.get_args(annotation)
        return [sample(args[0], name, scope)] if args else []
    if origin is tuple:
        return tuple(sample(a, name, scope) for a in typing.get_args(annotation))
    if origin is dict:
        return {}
    if annotation is str and "hash" in name.lower():
        return "ab" * 32  # a SHA-256 in hex, as every hash the store keeps
    if annotation is str:
        return {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}.get(name, "ticket")
    if annotation is bool:
        return False
    if annotation is int:
        return 1
    if annotation is float:
        return 1.0
    if annotation is bytes:
        return bytes(32)
    if annotation is datetime:
        return datetime.now(tz=timezone.utc) - timedelta(hours=1)
    if annotation is date:
        return date.today()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_sample(annotation, scope)
    if isinstance(annotation, type) and issubclass(annotation, tuple) and hasattr(annotation, "_fields"):
        hints = typing.get_type_hints(annotation)
        return annotation(*(sample(hints[field], field, scope) for field in annotation._fields))
    raise TypeError(f"no sample for {annotation!r} ({name})")


def model_sample(model: type[BaseModel], scope: dict[str, Any]) -> BaseModel:
    """A row model with every required field sampled by its type."""
    hints = typing.get_type_hints(model)
    values = {name: sample(hints[name], name, scope) for name, field in model.model_fields.items() if field.is_required()}
    return model(**values)


def call_everything(store: Store, overrides: dict[str, dict[str, Any]], only: set[str] | None = None) -> list[str]:
    """Call every public method of the store and its repositories (or ``only`` these); return the ones that
    raised, with why."""
    failures = []
    owners = [store] + [value for value in vars(store).values() if hasattr(value, "engine") and value is not store]
    for owner in owners:
        for method_name, method in inspect.getmembers(owner, inspect.ismethod):
            qualified = f"{type(owner).__name__}.{method_name}"
            if method_name.startswith("_") or qualified in SKIPPED or (only is not None and qualified not in only):
                continue
            try:
                kwargs = dict(overrides.get(qualified, {}))
                for param in inspect.signature(method).parameters.values():
                    if param.name in kwargs or param.default is not inspect.Parameter.empty:
                        continue
                    kwargs[param.name] = sample(param.annotation, param.name, method.__func__.__globals__)
                method(**kwargs)
            except Exception as exc:  # recorded: the statement's outcome says whether it matters
                failures.append(f"{qualified}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
    return failures


# Methods that take no store statement or that close the store.
SKIPPED = {"Store.close", "MeaningRepository.columns", "EvidenceScopeRepository.scope_sql",
           "MeaningRepository.validate"}  # validate runs in install
# A span as a shard stores it, written into its local table (a shard's own rows: the link and recency views
# fire there); reads through the Distributed tables cannot see it, the shard being unreachable.
LOCAL_SPAN = ("INSERT INTO fr.otel_traces_local (Timestamp, TraceId, SpanId, ServiceName, SpanAttributes) VALUES "
              "(now64(9), '0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 'triage', "
              "map('ticket.id', 'TCK-1', 'gen_ai.agent.name', 'triage'))")
LOCAL_COUNTS = ("SELECT (SELECT count() FROM fr.otel_traces_local), (SELECT count() FROM fr.object_links_local), "
                "(SELECT count() FROM fr.object_recency_local), (SELECT count() FROM fr.otel_traces_trace_id_ts_local)")


def overrides() -> dict[str, dict[str, Any]]:
    """Arguments a type alone cannot make (the store's own row models)."""
    from flightrec.store.erasures import Needles
    from flightrec.store.models import ObjectRef, SpanBatch
    from flightrec.store.evidence_scope import SpanScope
    from flightrec.store.native import PreparedBatch
    from flightrec.store.retention import RetentionPolicy
    from flightrec.store.rules import RuleSet
    from flightrec.store.conventions import builtin_rules

    from flightrec.store.models import SPAN_COLUMNS

    obj = ObjectRef(type="ticket", id="TCK-1")
    span = tuple(datetime.now(tz=timezone.utc) if name == "Timestamp" else "a1" if name in ("TraceId", "SpanId")
                 else ([] if "." in name else {}) if empty is None else empty for name, empty in SPAN_COLUMNS)
    scope = SpanScope(otype="ticket", oid="TCK-1", agent="triage")
    policy = RetentionPolicy()
    return {
        "Store.insert_batch": {"batch": SpanBatch(span_rows=[span]), "dedup_token": "t"},
        "MeaningRepository.claims": {"rules": RuleSet(), "default_tenant": "default",
                                     "spans": [({"gen_ai.agent.name": "triage"}, {"service.name": "triage"})]},
        "Store.insert_prepared": {"batch": PreparedBatch(parts=[], span_keys=[])},
        "Store.object_anchors": {"obj": obj, "runs": 3},
        "Store.object_run_count": {"obj": obj},
        "Store.object_spans": {"obj": obj, "runs": 3},
        "Store.apply_retention": {"days": 30},
        "Store.table_ttl": {"table": "otel_traces"},
        "Store.migrate": {"retention": True},
        "RetentionRepository.apply": {"policy": policy.model_copy(update={"spans_days": 7})},
        "RetentionRepository.expire_released": {"policy": policy},
        "RetentionRepository.has_rows": {"table": "otel_traces"},
        "RetentionRepository.mutation_count": {"table": "otel_traces"},
        "RetentionRepository.table_ttl": {"table": "otel_traces"},
        "EvidenceScopeRepository.objects": {"scope": scope},
        "EvidenceScopeRepository.span_counts": {"scope": scope},
        "EvidenceScopeRepository.span_keys": {"scope": scope},
        "EvidenceScopeRepository.spans": {"scope": scope},
        "EvidenceScopeRepository.traces": {"scope": scope},
        "ErasureRepository.erase": {"span_pairs": [("t", "s")], "log_pairs": [("t", "s")],
                                    "needles": Needles(exact=["a@example.com"]), "request_id": "r1"},
        "ErasureRepository.log_count": {"pairs": [("t", "s")], "needles": Needles(exact=["a@example.com"])},
        "ErasureRepository.matching_spans": {"needles": Needles(exact=["a@example.com"], needles=["bob"])},
        "ErasureRepository.plan": {"pairs": [("t", "s")], "needles": Needles(exact=["a@example.com"])},
        "MeaningRepository.install": {"rules": RuleSet(), "default_tenant": "default"},
        "MeaningRepository.rederive": {"rules": RuleSet(), "default_tenant": "default"},
        "MeaningRepository.preview": {"rules": builtin_rules(), "sample": 10},
        "MeaningRepository.check_patterns": {"rules": builtin_rules()},
        "ToolReads.rebuild_tool_schema": {"what": "projection"},
        "EvidenceRepository.node_hashes": {"coordinates": [(0, 0), (1, 0)]},  # a leaf and a node
        "HoldsRepository.add": {"kind": "object", "key": "TCK-1", "object_type": "ticket", "reason": "r",
                                "created_by": "c"},
    }


def main(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "clusters.xml").write_text(CONFIG)
    KeeperlessEngine.config_file = str(directory / "clusters.xml")
    config = StoreConfig(dsn=f"chdb://{directory / 'data'}", database=DATABASE, cluster=CLUSTER,
                         state_cluster=STATE_CLUSTER)
    engine = KeeperlessEngine(config.target(), config.topology())
    failures: list[str] = []
    tables: dict[str, str] = {}
    local_counts: list[int] = []
    columns: dict[str, list[list[str]]] = {}
    try:
        store = Store(engine, config)
        # Python after a statement may fail on a read that returned no rows (the shards are skipped): the
        # statements' outcomes are the check; these failures are kept to show what was not reached.
        for step in (lambda: store.migrate(retention=True), lambda: store.meaning.install(config.rules, "default")):
            try:
                step()
            except Exception:
                failures.append(traceback.format_exc(limit=-3))
        tables = {name: kind for name, kind in engine.query(
            "harness_tables", "SELECT name, engine FROM system.tables WHERE database = {db:String}", {"db": DATABASE})}
        for name, kind, column, spec in engine.query(
                "harness_columns", "SELECT table, type, name, concat(default_kind, ' ', default_expression) "
                "FROM system.columns WHERE database = {db:String} ORDER BY table, position", {"db": DATABASE}):
            columns.setdefault(name, []).append([column, kind, spec])
        failures += call_everything(store, overrides())
        try:  # the check can fail: ClickHouse refuses a plain IN over a Distributed subquery
            engine.query("harness_plain_in", "SELECT count() FROM fr.object_links WHERE TraceId IN "
                         "(SELECT TraceId FROM fr.otel_traces)")
        except StoreError:
            pass
        engine.command("harness_local_span", LOCAL_SPAN)
        local_counts = list(engine.query("harness_local_counts", LOCAL_COUNTS)[0])
        # Again with a span stored on this shard: what follows a non-empty read is reached.
        failures += call_everything(store, overrides())
    finally:
        engine.close()
    (directory / "statements.json").write_text(json.dumps(
        {"statements": RECORDED, "writes": WRITES, "failures": failures, "tables": tables, "columns": columns,
         "local_counts": local_counts}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
