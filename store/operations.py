"""Statements for acting on agents: the actions registry, kill switches, undo plans.

The audit log has its own module, :mod:`store.audit_log`.

Each repository is a named-statement class on the shared engine, like the span
queries in :mod:`store.repository`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel

from flightrec.store.engine import Engine


def _ns(ns: int) -> datetime:
    """Nanoseconds since the epoch, truncated to the microsecond (exact: no float rounding up past the
    span's own time, so a window starting at a reported time includes that span)."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)


def _to_ns(moment: datetime) -> int:
    """A time as integer nanoseconds since the epoch, exactly (no float rounding); naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000


def _now() -> datetime:
    return datetime.now(tz=timezone.utc)


class ActionRecord(BaseModel):
    """A side effect an agent took or proposed, as its action span recorded it."""

    action_id: str  # "<trace id>:<span id>"
    trace_id: str
    span_id: str
    time: datetime
    agent: str
    flow: str
    name: str
    system: str
    risk: str
    mode: str
    amount: float
    currency: str
    objects: list[str]
    status: str  # performed | proposed | observed | failed | blocked
    error: str
    undo_kind: str
    undo_target: str
    undo_args: str
    undo_system: str = ""
    undo_check: str = ""
    fields: list[str] | None = None  # object fields it changed (type:id#field); None: not declared

    @property
    def performed(self) -> bool:
        return self.status == "performed"


class LaterChange(BaseModel):
    """An action that touched the same object after another one."""

    object: str
    action_id: str
    agent: str
    name: str
    time: datetime
    fields: list[str] | None = None  # the fields it changed, as declared; None: not declared


def _fields(raw: str) -> list[str] | None:
    """``flightrec.action.fields`` (a JSON string array, or one string) as a list; None when absent."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return [raw]
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]


def _action_status(mode: str, status_code: str, recorded: str) -> str:
    if recorded == "blocked":
        return "blocked"
    if status_code == "Error":
        return "failed"
    return {"observe": "observed", "assist": "proposed"}.get(mode, "performed")


ACTION_SELECT = """
    TraceId, SpanId, toUnixTimestamp64Nano(Timestamp), Agent, ActionName, ActionSystem, ActionRisk, Mode,
    ActionAmount, ActionCurrency, Objects, StatusCode, StatusMessage,
    SpanAttributes['flightrec.action.status'], SpanAttributes['flightrec.undo.kind'],
    SpanAttributes['flightrec.undo.target'], SpanAttributes['flightrec.undo.args'],
    SpanAttributes['flightrec.undo.system'], SpanAttributes['flightrec.undo.check'],
    SpanAttributes['flightrec.action.fields']
"""


class ActionsRepository:
    """The actions registry: read from action spans, never copied."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def list_actions(
        self,
        *,
        agent: str = "",
        object_ref: str = "",
        flow: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        performed_only: bool = False,
        last: int = 100,
    ) -> list[ActionRecord]:
        """Actions newest first, filtered by agent, object (``type:id``), flow (root span name) and time."""
        kind, _, ident = object_ref.partition(":")
        sql = (
            f"SELECT {ACTION_SELECT} FROM {self.db}.otel_traces WHERE Operation = 'action' "
            "AND ({agent:String} = '' OR Agent = {agent:String}) "
            "AND ({object:String} = '' OR (has(Objects, {object:String}) AND TraceId IN ("
            f"SELECT TraceId FROM {self.db}.{self.engine.topology.storage_name('object_links')} "
            "WHERE ObjectType = {kind:String} AND ObjectId = {ident:String}))) "
            "AND ({flow:String} = '' OR TraceId IN ("
            f"SELECT TraceId FROM {self.db}.{self.engine.topology.storage_name('otel_traces')} "
            "WHERE ParentSpanId = '' AND SpanName = {flow:String})) "
            "AND Timestamp >= fromUnixTimestamp64Nano({since:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({until:Int64}) "
        )
        if performed_only:
            sql += (
                "AND Mode NOT IN ('observe', 'assist') AND StatusCode != 'Error' "
                "AND SpanAttributes['flightrec.action.status'] != 'blocked' "
            )
        sql += "ORDER BY Timestamp DESC, TraceId DESC, SpanId DESC LIMIT 1 BY TraceId, SpanId LIMIT {last:UInt32}"
        rows = self.engine.query(
            "list_actions",
            sql,
            {
                "agent": agent, "object": object_ref if ident else "", "kind": kind, "ident": ident, "flow": flow,
                "since": _to_ns(since) if since else 0,
                "until": _to_ns(until) + 999 if until else 2**62,
                "last": last,
            },
        )
        flows = self.flows(trace_ids=sorted({row[0] for row in rows}))
        return [
            ActionRecord(
                action_id=f"{trace}:{span}", trace_id=trace, span_id=span, time=_ns(ns), agent=agent_name,
                flow=flows.get(trace, ""), name=name, system=system, risk=risk, mode=mode or "auto", amount=amount,
                currency=currency, objects=list(objects), status=_action_status(mode, status_code, recorded),
                error=message if status_code == "Error" else "", undo_kind=undo_kind, undo_target=undo_target,
                undo_args=undo_args, undo_system=undo_system, undo_check=undo_check, fields=_fields(fields),
            )
            for (trace, span, ns, agent_name, name, system, risk, mode, amount, currency, objects, status_code,
                 message, recorded, undo_kind, undo_target, undo_args, undo_system, undo_check, fields) in rows
        ]

    def flows(self, *, trace_ids: list[str]) -> dict[str, str]:
        """The flow (root span name) of each trace."""
        if not trace_ids:
            return {}
        rows = self.engine.query(
            "trace_flows",
            f"SELECT TraceId, any(SpanName) FROM {self.db}.otel_traces "
            "WHERE TraceId IN {trace_ids:Array(String)} AND ParentSpanId = '' GROUP BY TraceId",
            {"trace_ids": trace_ids},
        )
        return dict(rows)

    def later_changes(self, *, objects: list[str], after: datetime) -> list[LaterChange]:
        """Performed actions on any of these objects after a time, oldest first."""
        if not objects:
            return []
        rows = self.engine.query(
            "later_changes",
            f"SELECT TraceId, SpanId, Agent, ActionName, toUnixTimestamp64Nano(Timestamp), Objects, "
            "SpanAttributes['flightrec.action.fields'] "
            f"FROM {self.db}.otel_traces WHERE Operation = 'action' AND hasAny(Objects, {{objects:Array(String)}}) "
            "AND Timestamp > fromUnixTimestamp64Nano({after:Int64}) AND Mode NOT IN ('observe', 'assist') "
            "AND StatusCode != 'Error' AND SpanAttributes['flightrec.action.status'] != 'blocked' "
            "ORDER BY Timestamp LIMIT 1 BY TraceId, SpanId LIMIT 10000",
            {"objects": objects, "after": _to_ns(after) + 999},
        )
        wanted = set(objects)
        return [
            LaterChange(object=ref, action_id=f"{trace}:{span}", agent=agent, name=name, time=_ns(ns),
                        fields=_fields(fields))
            for trace, span, agent, name, ns, touched, fields in rows
            for ref in touched
            if ref in wanted
        ]

    def undone(self, *, action_ids: list[str]) -> dict[str, str]:
        """Which of these actions a rollback plan of this server undid (a step done), and by which plan.

        Read from the plans' own table, never from spans: an ingested span saying "undone" is a
        claim by whoever sent it and must not make a plan skip an action.
        """
        if not action_ids:
            return {}
        rows = self.engine.query(
            "undone_actions",
            "SELECT JSONExtractString(step, 'action_id') AS id, any(plan) FROM ("
            f"SELECT PlanId AS plan, argMax(Body, Version) AS body FROM {self.db}.rollback_plans GROUP BY PlanId) "
            "ARRAY JOIN JSONExtractArrayRaw(body, 'steps') AS step "
            "WHERE JSONExtractString(step, 'status') = 'done' AND id IN {ids:Array(String)} GROUP BY id",
            {"ids": action_ids},
        )
        return dict(rows)


class ControlRow(BaseModel):
    scope: str
    name: str
    state: str
    max_per_minute: int
    actor: str
    reason: str
    updated_at: datetime


class ControlsRepository:
    """Kill switch states: the newest row per (scope, name) is in force."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def set_control(self, row: ControlRow) -> None:
        self.engine.insert(
            "set_control", f"{self.db}.controls",
            [[row.scope], [row.name], [row.state], [row.max_per_minute], [row.actor], [row.reason], [row.updated_at]],
            ["Scope", "Name", "State", "MaxPerMinute", "Actor", "Reason", "UpdatedAt"],
        )

    def controls(self, *, scope: str = "", name: str = "") -> list[ControlRow]:
        rows = self.engine.query(
            "controls",
            "SELECT Scope, Name, argMax(State, UpdatedAt), argMax(MaxPerMinute, UpdatedAt), argMax(Actor, UpdatedAt), "
            f"argMax(Reason, UpdatedAt), max(UpdatedAt) FROM {self.db}.controls "
            "WHERE ({scope:String} = '' OR Scope = {scope:String}) AND ({name:String} = '' OR Name = {name:String}) "
            "GROUP BY Scope, Name ORDER BY Scope, Name",
            {"scope": scope, "name": name},
        )
        return [
            ControlRow(scope=s, name=n, state=st, max_per_minute=m, actor=a, reason=r, updated_at=u.replace(tzinfo=timezone.utc))
            for s, n, st, m, a, r, u in rows
        ]


class PlansRepository:
    """Undo plans as versioned JSON documents; the highest version is the plan's state."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def save_plan(self, *, plan_id: str, version: int, status: str, author: str, body: str) -> None:
        self.engine.insert(
            "save_plan", f"{self.db}.rollback_plans",
            [[plan_id], [version], [status], [author], [body], [_now()]],
            ["PlanId", "Version", "Status", "Author", "Body", "UpdatedAt"],
        )

    def load_plan(self, *, plan_id: str) -> str | None:
        rows = self.engine.query(
            "load_plan",
            f"SELECT Body FROM {self.db}.rollback_plans WHERE PlanId = {{plan_id:String}} ORDER BY Version DESC LIMIT 1",
            {"plan_id": plan_id},
        )
        return rows[0][0] if rows else None

    def list_plans(self, *, limit: int = 50) -> list[str]:
        rows = self.engine.query(
            "list_plans",
            f"SELECT argMax(Body, Version) FROM {self.db}.rollback_plans GROUP BY PlanId "
            "ORDER BY max(UpdatedAt) DESC LIMIT {limit:UInt32}",
            {"limit": limit},
        )
        return [row[0] for row in rows]

