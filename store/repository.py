"""Every statement Flight Recorder runs, as named functions with bound parameters."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from flightrec.store.config import StoreConfig
from flightrec.store.engine import Engine
from flightrec.store.links import covered_spans
from flightrec.store.runs import RunsRepository
from flightrec.store.log_events import LogEvent, attach_log_events
from flightrec.store.meaning import MeaningRepository
from flightrec.store.otlp import OtlpRepository
from flightrec.store.principals import PrincipalsRepository
from flightrec.store.holds import HoldsRepository
from flightrec.store.leases import LeaseRepository
from flightrec.store.retention import HOLD_DICTIONARY, RetentionPolicy, RetentionRepository
from flightrec.store.texts import text_of
from flightrec.store.tool_reads import ToolReads
from flightrec.store.view_repair import ViewRepairRepository
from flightrec.store.migrations import migrate
from flightrec.store.native import PreparedBatch
from flightrec.store.audit_log import AuditRepository
from flightrec.store.evidence_log import EvidenceRepository
from flightrec.store.erasures import ErasureRepository
from flightrec.store.evidence_scope import EvidenceScopeRepository
from flightrec.store.operations import ActionsRepository, ControlsRepository, PlansRepository
from flightrec.store.outbox import OutboxRepository
from flightrec.store.signals import AlertsRepository, SignalsRepository
from flightrec.store.models import (
    LOG_COLUMN_NAMES,
    SPAN_COLUMN_NAMES,
    ObjectActivity,
    ObjectRef,
    RunFlags,
    SpanBatch,
    SpanEvent,
    SpanRecord,
    StoreStats,
)

# One read shape for every span query; positions match _record_from_row.
SPAN_SELECT = """
    TraceId, SpanId, ParentSpanId, SpanName, SpanKind,
    toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration,
    StatusCode, StatusMessage, ServiceName, Tenant, Agent, Operation, Model,
    PromptVersion, AgentVersion, InputTokens, OutputTokens, CostUsd, CostKnown, Tool,
    Objects, Inputs, ActionName, ActionSystem, ActionRisk, ActionAmount, ActionCurrency,
    Mode, GuardrailVerdict, HumanDecision, SessionId, UserId, InputText, OutputText,
    SpanAttributes, ResourceAttributes, Flow, Provider,
    arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_ns, Events.Name, Events.Attributes
"""


# The log records a story shows with its spans: stamped from this long before the first span starts
# to this long after the last one ends (clocks of other processes; a record sent late).
LOG_EARLY = timedelta(hours=1)
LOG_LATE = timedelta(days=1)


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (a float timestamp rounds)."""
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def _record_from_row(row: tuple) -> SpanRecord:
    (trace_id, span_id, parent, name, kind, start_ns, duration, status_code, status_message, service,
     tenant, agent, operation, model, prompt_version, agent_version, tokens_in, tokens_out, cost, cost_known, tool,
     objects, inputs, action_name, action_system, action_risk, action_amount, action_currency,
     mode, verdict, decision, session_id, user_id, input_text, output_text, attributes, resource, flow, provider, event_ns,
     event_names, event_attrs) = row
    attributes = dict(attributes)
    return SpanRecord(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=kind,
        start_time=_ns_to_datetime(start_ns), end_time=_ns_to_datetime(start_ns + duration),
        duration_ms=duration / 1e6, status_code=status_code, status_message=status_message,
        service=service, tenant=tenant, agent=agent, operation=operation, model=model,
        prompt_version=prompt_version, agent_version=agent_version, input_tokens=tokens_in,
        output_tokens=tokens_out, cost_usd=cost, cost_known=bool(cost_known), tool=tool, objects=list(objects), inputs=list(inputs),
        action_name=action_name, action_system=action_system, action_risk=action_risk,
        action_amount=action_amount, action_currency=action_currency, mode=mode,
        guardrail_verdict=verdict, human_decision=decision, session_id=session_id, user_id=user_id,
        input_text=input_text or text_of(attributes, "input_text", operation),
        output_text=output_text or text_of(attributes, "output_text", operation),
        attributes=attributes, resource_attributes=dict(resource), flow=flow, provider=provider,
        events=[
            SpanEvent(time=_ns_to_datetime(ns), name=ev_name, attributes=dict(ev_attrs))
            for ns, ev_name, ev_attrs in zip(event_ns, event_names, event_attrs)
        ],
    )


class Store:
    """The repository: one engine, one database, named statements."""

    def __init__(self, engine: Engine, config: StoreConfig) -> None:
        self.engine = engine
        self.config = config
        self.db = config.database
        self.actions = ActionsRepository(engine, self.db)
        self.controls = ControlsRepository(engine, self.db)
        self.plans = PlansRepository(engine, self.db)
        self.audit = AuditRepository(engine, self.db)
        self.evidence = EvidenceRepository(engine, self.db)
        self.evidence_scope = EvidenceScopeRepository(engine, self.db)
        self.signals = SignalsRepository(engine, self.db)
        self.alerts = AlertsRepository(engine, self.db)
        self.runs = RunsRepository(engine, self.db)
        self.outbox = OutboxRepository(engine, self.db)
        self.principals = PrincipalsRepository(engine, self.db)
        self.topology = engine.topology
        self.holds = HoldsRepository(engine, self.db)
        self.erasures = ErasureRepository(engine, self.db)
        self.leases = LeaseRepository(engine, self.db)
        self.retention = RetentionRepository(engine, self.db)
        self.tool_reads = ToolReads(engine, self.db)
        self.meaning = MeaningRepository(engine, self.db)
        self.otlp = OtlpRepository(engine, self.db)
        self.view_repair = ViewRepairRepository(engine, self.db, self.meaning)
        self._replacing: bool | None = None

    # -- lifecycle ---------------------------------------------------------------

    def migrate(self, *, retention: bool | Callable[[Store], bool] = False) -> list[int]:
        """Apply pending migrations and install the derivation rules; return the migrations applied.

        A new store's tables are created with the config's TTLs (store/migrations.py). With ``retention``
        the TTLs that differ from the config's are set between the two: before the derived columns are
        installed, since an ALTER of otel_traces re-analyses every column's expression (0.9 s after
        them, 0.03 s before; the schema is the same either way).
        ``retention`` may be a function of the migrated store answering whether to (the server's:
        whether this process leads, flightrec/leader.py).
        """
        done = migrate(self.engine, self.db, self.config.cluster, self.config.state_cluster,
                       retention=self.config.retention_policy())
        if retention(self) if callable(retention) else retention:
            self.apply_retention()
        self.meaning.install(self.config.rules, self.config.default_tenant)
        return done

    def apply_retention(self, days: int | None = None, *, policy: RetentionPolicy | None = None) -> list[str]:
        """Set each table's TTL where it differs from the policy (default: the config's); return the tables altered.

        ``days`` alone sets spans, links and logs to that many days (0: forever) and leaves the rest.
        """
        if days is not None:
            base = policy or self.config.retention_policy()
            return self.retention.apply(base.model_copy(update={"spans_days": days, "logs_days": None}),
                                        tables=["otel_traces", "otel_traces_trace_id_ts", "object_links",
                                                "object_recency", "otel_logs"])
        return self.retention.apply(policy or self.config.retention_policy())

    def table_ttl(self, table: str) -> str:
        """The TTL clause of a table as ClickHouse reports it ('' when none)."""
        return self.retention.table_ttl(table)

    def close(self) -> None:
        self.engine.close()

    # -- writes ------------------------------------------------------------------

    def insert_batch(self, batch: SpanBatch, dedup_token: str) -> None:
        """Insert a batch of spans (the engine derives their fields and links); the same token twice inserts once."""
        if batch.span_count:
            self.engine.insert(
                "insert_spans", f"{self.db}.otel_traces", batch.span_columns(), SPAN_COLUMN_NAMES, dedup_token
            )

    def insert_types(self) -> dict[str, list[str]]:
        """Column type names of the span and log inserts, for :class:`store.native.NativeEncoder`."""
        rows = self.engine.query(
            "insert_types",
            "SELECT table, name, type FROM system.columns WHERE database = {db:String} "
            "AND table IN ('otel_traces', 'otel_logs')",
            {"db": self.db},
        )
        types = {(table, name): kind for table, name, kind in rows}
        return {
            "otel_traces": [types[("otel_traces", name)] for name in SPAN_COLUMN_NAMES],
            "otel_logs": [types[("otel_logs", name)] for name in LOG_COLUMN_NAMES],
        }

    def insert_prepared(self, batch: PreparedBatch) -> None:
        """Insert a batch encoded by :class:`store.native.NativeEncoder`; the same rows twice insert once.

        Each table's part is its own insert (a part keeps within the partitions one insert may
        create) whose deduplication token is a digest of its bytes: a retry, a replay after a
        crash, a re-prepared or salvaged batch that carries the same rows for a table is
        skipped there, whatever else changed in the batch (tokens by segment name broke on
        exactly that: the rows a retry left out changed the token of every table).
        """
        tables = (("insert_spans", "otel_traces", SPAN_COLUMN_NAMES, "span_native"),
                  ("insert_logs", "otel_logs", LOG_COLUMN_NAMES, "log_native"))
        for part in batch.parts:
            for name, table, columns, field in tables:
                native = getattr(part, field)
                if native:
                    token = f"{table}:{hashlib.blake2b(native, digest_size=16).hexdigest()}"
                    self.engine.insert_native(name, f"{self.db}.{table}", columns, native, token)

    def stored_span_hashes(self, *, trace_ids: list[str]) -> dict[tuple[str, str], int]:
        """``(trace id, span id) -> content hash`` of every stored span of these traces (0: another writer's).

        By trace id alone, a primary-key range read: also filtering by a list of span ids made
        the statement several times slower (bench: 13 ms vs 168 ms for a 10k-span segment).
        """
        if not trace_ids:
            return {}
        rows = self.engine.query(
            "stored_span_hashes",
            f"SELECT TraceId, SpanId, ContentHash FROM {self.db}.otel_traces "
            "WHERE TraceId IN {trace_ids:Array(String)}",
            {"trace_ids": trace_ids},
        )
        return {(trace, span): digest for trace, span, digest in rows}

    def record_rejections(self, *, transport: str, rejected: int, reason: str) -> None:
        """Keep the count of spans rejected as invalid, with the first reason."""
        self.engine.insert(
            "record_rejections",
            f"{self.db}.ingest_rejections",
            [[datetime.now(tz=timezone.utc)], [transport], [rejected], [reason[:1000]]],
            ["Timestamp", "Transport", "Rejected", "Reason"],
        )

    # -- reads -------------------------------------------------------------------

    def trace_window(self, *, trace_ids: list[str]) -> tuple[int, int] | None:
        """The seconds between which these traces' spans start, from the trace-id lookup table; None
        when that bound might leave a stored span out: a trace without a lookup row, or an agent's
        legal hold in force (it keeps that agent's spans, not their lookup rows, past retention).

        Spans are partitioned by day (0029): a read of a trace by its id alone looks into every
        day's parts, and one bounded by time into the days it covers (bench/partitions.py).
        """
        lo, hi, found, agent_holds = self.engine.query(
            "trace_window",
            f"SELECT toUnixTimestamp(min(Start)), toUnixTimestamp(max(End)), uniqExact(TraceId), "
            f"(SELECT count() FROM {self.db}.{HOLD_DICTIONARY} WHERE Kind = 'agent') "
            f"FROM {self.db}.otel_traces_trace_id_ts WHERE TraceId IN {{trace_ids:Array(String)}}",
            {"trace_ids": trace_ids},
        )[0]
        return (lo, hi) if found == len(set(trace_ids)) and not agent_holds else None

    def _spans_of_traces(self, name: str, trace_ids: list[str]) -> list[SpanRecord]:
        """Every span of these traces, time-ordered, each once (within their time window)."""
        window = self.trace_window(trace_ids=trace_ids)
        within = ("AND Timestamp >= toDateTime64({lo:UInt32}, 9) AND Timestamp < toDateTime64({hi:UInt32} + 1, 9) "
                  if window else "")
        rows = self.engine.query(
            name,
            f"SELECT {SPAN_SELECT} FROM {self.db}.otel_traces WHERE TraceId IN {{trace_ids:Array(String)}} "
            f"{within}ORDER BY Timestamp, SpanId LIMIT 1 BY TraceId, SpanId",
            {"trace_ids": trace_ids, **({"lo": window[0], "hi": window[1]} if window else {})},
        )
        return [_record_from_row(row) for row in rows]

    def trace_spans(self, *, trace_id: str) -> list[SpanRecord]:
        """Every span of one trace, time-ordered, each once."""
        return self._with_log_events(self._spans_of_traces("trace_spans", [trace_id]))

    def span_log_events(self, *, trace_ids: list[str], within: tuple[datetime, datetime] | None = None
                        ) -> list[LogEvent]:
        """The log records that name a span of these traces (GenAI events and the like); with ``within``,
        only those stamped in that time (log records are partitioned by day, 0029: the days it covers)."""
        if not trace_ids:
            return []
        bound = {"since": _ns(within[0]), "until": _ns(within[1])} if within else {}
        rows = self.engine.query(
            "span_log_events",
            f"SELECT TraceId, SpanId, toUnixTimestamp64Nano(Timestamp), EventName, Body, LogAttributes "
            f"FROM {self.db}.otel_logs WHERE TraceId IN {{trace_ids:Array(String)}} AND SpanId != '' "
            + ("AND Timestamp BETWEEN fromUnixTimestamp64Nano({since:Int64}) "
               "AND fromUnixTimestamp64Nano({until:Int64}) " if within else "")
            + "ORDER BY Timestamp LIMIT 2000 BY TraceId",
            {"trace_ids": trace_ids, **bound},
        )
        return [LogEvent(trace_id=trace, span_id=span, time_ns=ns, name=name, body=body, attributes=dict(attrs))
                for trace, span, ns, name, body, attrs in rows]

    def _with_log_events(self, spans: list[SpanRecord]) -> list[SpanRecord]:
        """The spans with the log records that name them, stamped from an hour before the first starts
        to a day after the last ends (a record carries the span that was active when it was emitted)."""
        if not spans:
            return spans
        within = (min(span.start_time for span in spans) - LOG_EARLY,
                  max(span.end_time for span in spans) + LOG_LATE)
        events = self.span_log_events(trace_ids=sorted({span.trace_id for span in spans}), within=within)
        return attach_log_events(spans, events) if events else spans

    def object_anchors(self, *, obj: ObjectRef, runs: int | None = None) -> set[tuple[str, str]]:
        """The (trace id, span id) pairs whose spans name this object; with ``runs``, only the latest runs'."""
        # GLOBAL on a cluster: the latest runs of all shards, not of each.
        latest = (
            "AND TraceId {IN} (SELECT TraceId FROM {db}.object_links WHERE ObjectType = {{type:String}} "
            "AND ObjectId = {{id:String}} GROUP BY TraceId ORDER BY max(Timestamp) DESC LIMIT {{runs:UInt32}})"
        ).format(db=self.db, IN=self.topology.IN) if runs else ""
        rows = self.engine.query(
            "object_anchors",
            f"SELECT DISTINCT TraceId, SpanId FROM {self.db}.object_links "
            f"WHERE ObjectType = {{type:String}} AND ObjectId = {{id:String}} {latest}",
            {"type": obj.type, "id": obj.id, "runs": runs or 0},
        )
        return {(row[0], row[1]) for row in rows}

    def object_run_count(self, *, obj: ObjectRef) -> int:
        """How many runs (traces) ever touched the object."""
        return self.engine.query(
            "object_run_count",
            f"SELECT uniqExact(TraceId) FROM {self.db}.object_links WHERE ObjectType = {{type:String}} "
            "AND ObjectId = {id:String}",
            {"type": obj.type, "id": obj.id},
        )[0][0]

    def object_spans(self, *, obj: ObjectRef, runs: int | None = None) -> list[SpanRecord]:
        """Every span linked to the object, across traces and agents, time-ordered.

        A link covers its span and all the span's descendants. With ``runs``, only
        the latest that many runs (traces) are read: an object touched by thousands
        of runs still answers fast.
        """
        anchors = self.object_anchors(obj=obj, runs=runs)
        if not anchors:
            return []
        spans = self._spans_of_traces("object_trace_spans", sorted({trace_id for trace_id, _ in anchors}))
        return self._with_log_events(covered_spans(spans, anchors))

    def recent_objects(
        self, *, object_type: str = "", text: str = "", agent: str = "", limit: int = 50, tenant: str = ""
    ) -> list[ObjectActivity]:
        """Objects most recently touched first, optionally of one type, with ``text`` in their id, or
        touched by ``agent`` (every agent that touched such an object is still listed); with ``tenant``,
        only that tenant's links count."""
        # The candidates come from object_recency (one row per object, tenant and agent), then only their
        # links are aggregated; a few more candidates than asked cover objects whose links are gone.
        rows = self.engine.query(
            "recent_objects",
            f"SELECT ObjectType, ObjectId, toUnixTimestamp64Nano(max(Timestamp)), uniqExact(TraceId), "
            f"arraySort(groupUniqArray(16)(Agent)), argMax(TraceId, Timestamp) FROM {self.db}.object_links "
            f"WHERE (ObjectType, ObjectId) {self.topology.IN} (SELECT ObjectType, ObjectId FROM ("
            f"SELECT ObjectType, ObjectId, max(LastSeen) AS seen FROM {self.db}.object_recency "
            "WHERE ({type:String} = '' OR ObjectType = {type:String}) "
            "AND ({text:String} = '' OR positionCaseInsensitive(ObjectId, {text:String}) > 0) "
            "AND ({tenant:String} = '' OR Tenant = {tenant:String}) "
            "GROUP BY ObjectType, ObjectId HAVING {agent:String} = '' OR countIf(Agent = {agent:String}) > 0 "
            "ORDER BY seen DESC, ObjectType, ObjectId LIMIT {candidates:UInt32})) "
            "AND ({tenant:String} = '' OR Tenant = {tenant:String}) "
            "GROUP BY ObjectType, ObjectId HAVING {agent:String} = '' OR countIf(Agent = {agent:String}) > 0 "
            "ORDER BY max(Timestamp) DESC, ObjectType, ObjectId LIMIT {limit:UInt32}",
            {"type": object_type, "text": text, "agent": agent, "limit": limit, "tenant": tenant,
             "candidates": limit + max(10, limit // 4)},
        )
        flags = self.run_flags(trace_ids=[row[5] for row in rows])
        return [
            ObjectActivity(
                type=kind, id=ident, last_seen=_ns_to_datetime(last_ns), traces=traces, agents=list(agents),
                last_trace=last_trace, last_run=flags.get(last_trace, RunFlags()),
            )
            for kind, ident, last_ns, traces, agents, last_trace in rows
        ]

    def run_flags(self, *, trace_ids: list[str]) -> dict[str, RunFlags]:
        """For each trace: did it fail, get blocked, get overridden, leave suggestions, get reviewed."""
        if not trace_ids:
            return {}
        rows = self.engine.query(
            "run_flags",
            "SELECT TraceId, "
            "countIf(StatusCode = 'Error' AND (ParentSpanId = '' OR Operation = 'action')) > 0, "
            "countIf(GuardrailVerdict = 'block') > 0, "
            "countIf(HumanDecision IN ('reject', 'override')) > 0, "
            "countIf(Operation = 'action' AND Mode = 'assist') > 0, "
            "countIf(Operation = 'human') > 0 "
            f"FROM {self.db}.otel_traces WHERE TraceId IN {{trace_ids:Array(String)}} GROUP BY TraceId",
            {"trace_ids": trace_ids},
        )
        return {
            trace: RunFlags(failed=failed, blocked=blocked, overridden=overridden, assisted=assisted, reviewed=reviewed)
            for trace, failed, blocked, overridden, assisted, reviewed in rows
        }

    def find_agents(self, *, text: str, limit: int = 10) -> list[str]:
        """Agents whose name contains ``text``."""
        rows = self.engine.query(
            "find_agents",
            f"SELECT DISTINCT Agent FROM {self.db}.otel_traces "
            "WHERE Agent != '' AND positionCaseInsensitive(Agent, {text:String}) > 0 ORDER BY Agent LIMIT {limit:UInt32}",
            {"text": text, "limit": limit},
        )
        return [row[0] for row in rows]

    def agents_like(self, *, name: str, limit: int = 3) -> tuple[bool, list[str]]:
        """Whether an agent of this exact name has sent spans, and the names closest to it (typos)."""
        rows = self.engine.query(
            "agents_like",
            f"SELECT Agent, editDistance(lowerUTF8(Agent), lowerUTF8({{name:String}})) AS distance FROM "
            f"(SELECT DISTINCT Agent FROM {self.db}.otel_traces WHERE Agent != '') "
            "WHERE distance <= 3 ORDER BY distance, Agent LIMIT {limit:UInt32}",
            {"name": name, "limit": limit + 1},
        )
        names = [row[0] for row in rows]
        return name in names, [other for other in names if other != name][:limit]

    def find_traces(self, *, id_prefix: str, limit: int = 10) -> list[str]:
        """Trace ids starting with a hex prefix (a primary-key range read)."""
        rows = self.engine.query(
            "find_traces",
            f"SELECT DISTINCT TraceId FROM {self.db}.otel_traces "
            "WHERE startsWith(TraceId, {prefix:String}) ORDER BY TraceId LIMIT {limit:UInt32}",
            {"prefix": id_prefix.lower(), "limit": limit},
        )
        return [row[0] for row in rows]

    def objects_by_span_text(self, *, text: str, limit: int = 10) -> list[ObjectRef]:
        """Objects linked to runs whose span names or error messages contain ``text``."""
        rows = self.engine.query(
            "objects_by_span_text",
            f"SELECT DISTINCT ObjectType, ObjectId FROM {self.db}.object_links WHERE TraceId {self.topology.IN} ("
            f"SELECT DISTINCT TraceId FROM {self.db}.otel_traces WHERE positionCaseInsensitive(SpanName, {{text:String}}) > 0 "
            "OR positionCaseInsensitive(StatusMessage, {text:String}) > 0 LIMIT 50"
            ") ORDER BY ObjectType, ObjectId LIMIT {limit:UInt32}",
            {"text": text, "limit": limit},
        )
        return [ObjectRef(type=kind, id=ident) for kind, ident in rows]

    def stats(self) -> StoreStats:
        """Counts of what is queryable now: spans and traces (each once), objects, rejected spans."""
        spans, traces = self.engine.query(
            "span_counts",
            f"SELECT count(), uniqExact(TraceId) FROM {self.db}.otel_traces FINAL"
            if self._spans_replacing() else
            f"SELECT uniqExact(TraceId, SpanId), uniqExact(TraceId) FROM {self.db}.otel_traces",
        )[0]
        objects = self.engine.query(
            "object_count", f"SELECT uniqExact(ObjectType, ObjectId) FROM {self.db}.object_links"
        )[0][0]
        rejected = self.engine.query(
            "rejected_count", f"SELECT sum(Rejected) FROM {self.db}.ingest_rejections"
        )[0][0]
        return StoreStats(spans=spans, traces=traces, objects=objects, rejected_spans=int(rejected or 0))

    def _spans_replacing(self) -> bool:
        """Whether otel_traces is a Replacing engine, asked once: only those take FINAL.

        Ours is; an otel_traces another writer created first (the OpenTelemetry Collector
        ClickHouse exporter's plain MergeTree) refuses FINAL (ILLEGAL_FINAL), so its spans are
        counted each once by (TraceId, SpanId) instead.
        """
        if self._replacing is None:
            rows = self.engine.query(
                "spans_engine",
                "SELECT engine FROM system.tables WHERE database = {db:String} AND name = {table:String}",
                {"db": self.db, "table": self.topology.storage_name("otel_traces")},
            )
            self._replacing = bool(rows) and "Replacing" in rows[0][0]
        return self._replacing

    def span_copies(self) -> int:
        """Physical span rows, duplicates included (for exactly-once checks)."""
        return self.engine.query("span_copies", f"SELECT count() FROM {self.db}.otel_traces")[0][0]

    def disk_bytes(self) -> dict[str, int]:
        """Compressed bytes on disk per table of this database."""
        rows = self.engine.query(
            "disk_bytes",
            "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = {db:String} AND active GROUP BY table",
            {"db": self.db},
        )
        return {table: int(size) for table, size in rows}

    def system_log_tables(self) -> dict[str, int]:
        """ClickHouse's own log tables (system.*_log) and their rows: must stay empty or bounded."""
        rows = self.engine.query(
            "system_log_tables",
            "SELECT name, toUInt64(ifNull(total_rows, 0)) FROM system.tables "
            "WHERE database = 'system' AND name LIKE '%\\_log' AND engine LIKE '%MergeTree%'",
        )
        return {name: int(count) for name, count in rows}

    def optimize(self) -> None:
        """Merge parts now, collapsing replayed duplicates (tests and benchmarks)."""
        for table in ("otel_traces", "otel_traces_trace_id_ts", "object_links", "object_recency", "otel_logs"):
            self.engine.command("optimize", f"OPTIMIZE TABLE {self.topology.storage(table)} "
                                f"{self.topology.on_cluster(table)} FINAL".replace("  ", " "))


def open_store(config: StoreConfig, *, retention: bool | Callable[[Store], bool] = True) -> Store:
    """Connect, migrate and apply retention (``retention`` as :meth:`Store.migrate` takes it): the one store
    client factory."""
    engine = Engine(config.target(), config.topology())
    store = Store(engine, config)
    try:
        store.migrate(retention=retention)
    except Exception:
        engine.close()
        raise
    return store


