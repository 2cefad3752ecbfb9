"""Runs (traces) found by what they carry rather than by an object: sessions, users, no link at all,
and links attached by hand. Named statements on the shared engine, like the other repositories."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel

from flightrec.store.engine import Engine
from flightrec.store.models import LINK_COLUMN_NAMES


class RunSummary(BaseModel):
    """A run as lists show it: its root span (or earliest span when the root never arrived)."""

    trace_id: str
    name: str
    agent: str
    service: str
    started_at: datetime
    status: str
    session_id: str
    user_id: str
    spans: int


RUN_SELECT = """
    TraceId, argMin(SpanName, (ParentSpanId != '', Timestamp)), argMin(Agent, (ParentSpanId != '', Timestamp)),
    any(ServiceName), min(Timestamp), if(countIf(StatusCode = 'Error') > 0, 'Error', 'Ok'),
    anyIf(SessionId, SessionId != ''), anyIf(UserId, UserId != ''), count()
"""


def _runs(rows: list[tuple]) -> list[RunSummary]:
    return [RunSummary(trace_id=trace, name=name, agent=agent, service=service,
                       started_at=started.replace(tzinfo=timezone.utc) if started.tzinfo is None else started,
                       status=status, session_id=session, user_id=user, spans=spans)
            for trace, name, agent, service, started, status, session, user, spans in rows]


class RunsRepository:
    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def by_session_or_user(self, *, value: str, limit: int = 20) -> list[RunSummary]:
        """Runs whose session / conversation id or user id is exactly ``value``, newest first."""
        rows = self.engine.query(
            "runs_by_session_or_user",
            f"SELECT {RUN_SELECT} FROM {self.db}.otel_traces WHERE TraceId IN ("
            f"SELECT DISTINCT TraceId FROM {self.db}.{self.engine.topology.storage_name('otel_traces')} "
            "WHERE SessionId = {value:String} OR UserId = {value:String}) "
            "GROUP BY TraceId ORDER BY min(Timestamp) DESC LIMIT {limit:UInt32}",
            {"value": value, "limit": limit},
        )
        return _runs(rows)

    def unlinked(self, *, since: datetime, limit: int = 50) -> list[RunSummary]:
        """Recent runs that no object links to: what rules missed, for an auditor to attach by hand."""
        rows = self.engine.query(
            "unlinked_runs",
            f"SELECT {RUN_SELECT} FROM {self.db}.otel_traces "
            "WHERE Timestamp >= {since:DateTime64(9)} AND TraceId NOT IN ("
            f"SELECT TraceId FROM {self.db}.{self.engine.topology.storage_name('object_links')} "
            "WHERE Timestamp >= {since:DateTime64(9)} - INTERVAL 1 DAY) "
            "GROUP BY TraceId ORDER BY min(Timestamp) DESC LIMIT {limit:UInt32}",
            {"since": since, "limit": limit},
        )
        return _runs(rows)

    def span_of(self, *, trace_id: str, span_id: str = "") -> tuple[str, int, str, str] | None:
        """(span id, start ns, tenant, agent) of the given span, or of the trace's root (earliest) span."""
        rows = self.engine.query(
            "span_of",
            f"SELECT SpanId, toUnixTimestamp64Nano(Timestamp), Tenant, Agent FROM {self.db}.otel_traces "
            "WHERE TraceId = {trace:String} AND ({span:String} = '' OR SpanId = {span:String}) "
            "ORDER BY ParentSpanId != '', Timestamp LIMIT 1",
            {"trace": trace_id, "span": span_id},
        )
        return tuple(rows[0]) if rows else None  # type: ignore[return-value]

    def add_manual_link(self, *, object_type: str, object_id: str, trace_id: str, span_id: str, start_ns: int,
                        tenant: str, agent: str) -> None:
        """A link a person attached: it covers the span and its descendants, like a derived one.

        Kept in manual_links too, where no re-derivation reaches it (``MeaningRepository.rederive``).
        """
        row = [[object_type], [object_id], [trace_id], [span_id],
               [datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc)], [tenant], [agent]]
        self.engine.insert("keep_manual_link", f"{self.db}.manual_links", row, LINK_COLUMN_NAMES)
        self.engine.insert("add_manual_link", f"{self.db}.object_links", [*row, ["manual"]],
                           [*LINK_COLUMN_NAMES, "Source"])
