"""Statements that find what an evidence bundle holds: the spans of a scope and the records about them.

A scope is the intersection of its filters (evidence/bundle_models.py ``ExportScope``): the traces
linked to an object or to objects of a type, the traces an agent has a span in (both counted by
links or spans that started in the window), and of those traces' spans the ones that started in
[since, until). :data:`SPAN_SCOPE` is that condition, written into the manifest as run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from flightrec.store.audit import AuditEntry
from flightrec.store.audit_log import ENTRY_COLUMNS, audit_entry
from flightrec.store.evidence_log import SPAN_SOURCE

if TYPE_CHECKING:
    from flightrec.store.engine import Engine

OPEN_END_US = 7_258_118_400_000_000  # 2200-01-01: "no until"
WINDOW = ("Timestamp >= fromUnixTimestamp64Micro({since:Int64}) "
          "AND Timestamp < fromUnixTimestamp64Micro({until:Int64})")
SPAN_SCOPE = (
    "({otype:String} = '' OR TraceId IN (SELECT TraceId FROM {db}.{links} WHERE ObjectType = {otype:String} "
    f"AND ({{oid:String}} = '' OR ObjectId = {{oid:String}}) AND {WINDOW})) "
    "AND ({agent:String} = '' OR TraceId IN (SELECT TraceId FROM {db}.{spans} WHERE Agent = {agent:String} "
    f"AND {WINDOW})) AND {WINDOW}"
)
DERIVED = "Agent, Operation, Model, CostUsd, CostKnown, Objects, Tenant"
# Per trace, what an in-scope span yields: the first stored copy of each span, as the sequencer takes it.
FIRST_COPY = "ORDER BY Timestamp, TraceId, SpanId, InsertedAt LIMIT 1 BY TraceId, SpanId"


class SpanScope(BaseModel):
    """The bound parameters of :data:`SPAN_SCOPE` ('' : no such filter)."""

    otype: str = ""
    oid: str = ""
    agent: str = ""
    since: int = 0
    until: int = OPEN_END_US

    def params(self) -> dict[str, str | int]:
        return self.model_dump()


class ScopedSpan(BaseModel):
    """A span in scope: its stored columns in SpanSource order, and the meaning the engine derived."""

    source: tuple
    agent: str
    operation: str
    model: str
    cost_usd: float
    cost_known: bool
    objects: list[str]
    tenant: str


class EvidenceScopeRepository:
    """What is in a bundle's scope, read by named statements."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def scope_sql(self) -> str:
        """:data:`SPAN_SCOPE` for this database, as the manifest records it.

        Its subqueries ask about the row's own trace, so on a cluster they read the shard's local tables
        (co-located: a trace's spans and links live on one shard); every query it is part of reads the
        Distributed spans or links, so each shard answers for its traces."""
        topology = self.engine.topology
        return (SPAN_SCOPE.replace("{db}", self.db).replace("{links}", topology.storage_name("object_links"))
                .replace("{spans}", topology.storage_name("otel_traces")))

    def span_counts(self, scope: SpanScope) -> tuple[int, int]:
        """(spans, traces) in scope, each span once."""
        [(spans, traces)] = self.engine.query(
            "scope_span_counts",
            f"SELECT uniqExact(TraceId, SpanId), uniqExact(TraceId) FROM {self.db}.otel_traces WHERE {self.scope_sql()}",
            scope.params())
        return int(spans), int(traces)

    def traces(self, scope: SpanScope) -> dict[str, list[str]]:
        """Each trace with spans in scope, and the agents of those spans ('' dropped)."""
        rows = self.engine.query(
            "scope_traces",
            f"SELECT TraceId, arraySort(groupUniqArray(Agent)) FROM {self.db}.otel_traces WHERE {self.scope_sql()} "
            "GROUP BY TraceId ORDER BY TraceId", scope.params())
        return {trace: [agent for agent in agents if agent] for trace, agents in rows}

    def span_keys(self, scope: SpanScope) -> list[tuple[str, str]]:
        """(trace id, span id) of every span in scope."""
        rows = self.engine.query(
            "scope_span_keys",
            f"SELECT DISTINCT TraceId, SpanId FROM {self.db}.otel_traces WHERE {self.scope_sql()} ORDER BY TraceId, SpanId",
            scope.params())
        return [(trace, span) for trace, span in rows]

    def spans(self, scope: SpanScope) -> list[ScopedSpan]:
        """Every span in scope (its first stored copy), by start time."""
        rows = self.engine.query(
            "scope_spans",
            f"SELECT {SPAN_SOURCE}, {DERIVED} FROM {self.db}.otel_traces WHERE {self.scope_sql()} {FIRST_COPY}",
            scope.params())
        width = len(rows[0]) - 7 if rows else 0
        return [ScopedSpan(source=tuple(row[:width]), agent=row[width], operation=row[width + 1],
                           model=row[width + 2], cost_usd=row[width + 3], cost_known=bool(row[width + 4]),
                           objects=list(row[width + 5]), tenant=row[width + 6]) for row in rows]

    def objects(self, scope: SpanScope) -> list[tuple[str, str]]:
        """(type, id) of the objects linked to spans in scope (of the scope's type and id, when given)."""
        rows = self.engine.query(
            "scope_objects",
            f"SELECT DISTINCT ObjectType, ObjectId FROM {self.db}.object_links WHERE (TraceId, SpanId) IN ("
            f"SELECT TraceId, SpanId FROM {self.db}.{self.engine.topology.storage_name('otel_traces')} "
            f"WHERE {self.scope_sql()}) "
            "AND ({otype:String} = '' OR ObjectType = {otype:String}) AND ({oid:String} = '' OR ObjectId = {oid:String}) "
            "ORDER BY ObjectType, ObjectId",
            scope.params())
        return [(kind, ident) for kind, ident in rows]

    def object_ids_like(self, *, object_type: str, object_id: str, limit: int = 3) -> tuple[bool, list[str]]:
        """Whether an object of this type and id is linked to any span, and the ids closest to it."""
        rows = self.engine.query(
            "object_ids_like",
            "SELECT ObjectId, editDistance(lowerUTF8(ObjectId), lowerUTF8({id:String})) AS distance FROM "
            f"(SELECT DISTINCT ObjectId FROM {self.db}.object_links WHERE ObjectType = {{type:String}}) "
            "WHERE distance <= 3 ORDER BY distance, ObjectId LIMIT {limit:UInt32}",
            {"type": object_type, "id": object_id, "limit": limit + 1})
        ids = [row[0] for row in rows]
        return object_id in ids, [other for other in ids if other != object_id][:limit]

    def object_types(self) -> list[str]:
        """Every object type some span links to."""
        return [row[0] for row in self.engine.query(
            "object_types", f"SELECT DISTINCT ObjectType FROM {self.db}.object_links ORDER BY ObjectType")]

    def audit_entries(self, *, subjects: list[str], traces: list[str], seqs: list[int]) -> list[AuditEntry]:
        """Audit entries whose subject is one of ``subjects`` (or an action of one of ``traces``), whose
        details hold one of ``subjects`` as a value, or whose number is in ``seqs``; by number, every field."""
        rows = self.engine.query(
            "scope_audit_entries",
            f"SELECT {ENTRY_COLUMNS} FROM {self.db}.audit_log WHERE has({{subjects:Array(String)}}, Subject) "
            "OR (startsWith(Subject, 'action:') AND has({traces:Array(String)}, splitByChar(':', Subject)[2])) "
            "OR hasAny(arrayMap(pair -> pair.2, JSONExtractKeysAndValues(Details, 'String')), {subjects:Array(String)}) "
            "OR has({seqs:Array(UInt64)}, Seq) ORDER BY Seq",
            {"subjects": subjects, "traces": traces, "seqs": seqs})
        return [audit_entry(row) for row in rows]

    def alerts(self, *, traces: list[str], objects: list[str], agents: list[str], since_us: int,
               until_us: int) -> list[str]:
        """The newest body of each alert naming a trace or object in scope, or of an agent in scope and
        active in the window."""
        rows = self.engine.query(
            "scope_alerts",
            f"SELECT argMax(Body, Version) AS body FROM {self.db}.alerts GROUP BY DedupKey "
            "HAVING hasAny(JSONExtract(body, 'traces', 'Array(String)'), {traces:Array(String)}) "
            "OR hasAny(JSONExtract(body, 'objects', 'Array(String)'), {objects:Array(String)}) "
            "OR (has({agents:Array(String)}, argMax(Agent, Version)) "
            "AND max(UpdatedAt) >= fromUnixTimestamp64Micro({since:Int64}) "
            "AND min(UpdatedAt) < fromUnixTimestamp64Micro({until:Int64})) ORDER BY max(UpdatedAt)",
            {"traces": traces, "objects": objects, "agents": agents, "since": since_us, "until": until_us})
        return [row[0] for row in rows]

    def plans(self, *, traces: list[str]) -> list[str]:
        """The newest body of each rollback plan with a step that undoes an action of a trace in scope."""
        rows = self.engine.query(
            "scope_plans",
            f"SELECT argMax(Body, Version) AS body FROM {self.db}.rollback_plans GROUP BY PlanId "
            "HAVING arrayExists(step -> has({traces:Array(String)}, "
            "splitByChar(':', JSONExtractString(step, 'action_id'))[1]), JSONExtractArrayRaw(body, 'steps')) "
            "ORDER BY max(UpdatedAt)",
            {"traces": traces})
        return [row[0] for row in rows]

    def controls(self, *, agents: list[str]) -> list[tuple]:
        """(scope, name, state, max per minute, actor, reason, updated at) of the agents' kill switches now."""
        return [tuple(row) for row in self.engine.query(
            "scope_controls",
            "SELECT Scope, Name, argMax(State, UpdatedAt), argMax(MaxPerMinute, UpdatedAt), argMax(Actor, UpdatedAt), "
            f"argMax(Reason, UpdatedAt), max(UpdatedAt) FROM {self.db}.controls "
            "WHERE Scope = 'agent' AND has({agents:Array(String)}, Name) GROUP BY Scope, Name ORDER BY Name",
            {"agents": agents})]
