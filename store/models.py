"""Row shapes: what is inserted (column batches) and what is read (pydantic records)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

# Set by the collector on every resource it receives from a named token (a sender's own value is
# overwritten or removed): which principal delivered the span.
INGEST_PRINCIPAL = "flightrec.ingest.principal"

# Insert shape of otel_traces: the span as received (the ClickHouse exporter's columns and the
# identity hash), (column name, empty value). The engine derives every other column.
SPAN_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("Timestamp", 0),
    ("TraceId", ""),
    ("SpanId", ""),
    ("ParentSpanId", ""),
    ("TraceState", ""),
    ("SpanName", ""),
    ("SpanKind", ""),
    ("ServiceName", ""),
    ("ResourceAttributes", None),
    ("ScopeName", ""),
    ("ScopeVersion", ""),
    ("SpanAttributes", None),
    ("Duration", 0),
    ("StatusCode", ""),
    ("StatusMessage", ""),
    ("Events.Timestamp", None),
    ("Events.Name", None),
    ("Events.Attributes", None),
    ("Links.TraceId", None),
    ("Links.SpanId", None),
    ("Links.TraceState", None),
    ("Links.Attributes", None),
    ("ContentHash", 0),
)
SPAN_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in SPAN_COLUMNS)

# Insert shape of a manual link (derived links come from the engine's view over otel_traces).
LINK_COLUMN_NAMES: tuple[str, ...] = ("ObjectType", "ObjectId", "TraceId", "SpanId", "Timestamp", "Tenant", "Agent")

# Insert shape of otel_logs (TimestampTime is the table's DEFAULT).
LOG_COLUMN_NAMES: tuple[str, ...] = (
    "Timestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText", "SeverityNumber", "ServiceName", "Body",
    "ResourceSchemaUrl", "ResourceAttributes", "ScopeSchemaUrl", "ScopeName", "ScopeVersion", "ScopeAttributes",
    "LogAttributes", "EventName",
)


SpanRow = tuple
"""One span ready to insert: a tuple of otel_traces values in ``SPAN_COLUMN_NAMES`` order.

A tuple rather than a model because the writer builds tens of thousands a second;
``row_as_dict`` gives tests and tools the readable form.
"""


def row_as_dict(row: SpanRow) -> dict[str, Any]:
    return dict(zip(SPAN_COLUMN_NAMES, row, strict=True))


class SpanBatch(BaseModel):
    """Spans and log records as rows, the unit the writer inserts; columns on demand."""

    span_rows: list[tuple] = Field(default_factory=list)
    log_rows: list[tuple] = Field(default_factory=list)

    @property
    def span_count(self) -> int:
        return len(self.span_rows)


    def span_columns(self) -> list[tuple]:
        return list(zip(*self.span_rows)) if self.span_rows else [() for _ in SPAN_COLUMNS]


    def log_columns(self) -> list[tuple]:
        return list(zip(*self.log_rows)) if self.log_rows else [() for _ in LOG_COLUMN_NAMES]


class ObjectRef(BaseModel):
    """A business object: ``ticket:TCK-1042`` is type ``ticket``, id ``TCK-1042``."""

    type: str
    id: str

    @classmethod
    def parse(cls, text: str) -> "ObjectRef":
        """Parse ``type:id``; raise ValueError naming the expected form."""
        kind, sep, ident = text.partition(":")
        if not sep or not kind.strip() or not ident.strip():
            raise ValueError(f"object reference {text!r} is not of the form type:id (e.g. ticket:TCK-1042)")
        return cls(type=kind.strip().lower(), id=ident.strip())

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"


class SpanEvent(BaseModel):
    time: datetime
    name: str
    attributes: dict[str, str]


class SpanRecord(BaseModel):
    """A stored span as read back: the fields the engine derived plus the attributes as received."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    status_code: str
    status_message: str
    service: str
    tenant: str
    agent: str
    operation: str
    model: str
    prompt_version: str
    agent_version: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_known: bool = Field(default=True, description="False: an LLM call with no price (cost_usd 0 means unknown)")
    tool: str
    objects: list[str]
    inputs: list[str]
    action_name: str
    action_system: str
    action_risk: str
    action_amount: float
    action_currency: str
    mode: str
    guardrail_verdict: str
    human_decision: str
    session_id: str
    user_id: str
    input_text: str
    output_text: str
    flow: str = Field(default="", description="the workflow the span belongs to")
    provider: str = ""
    attributes: dict[str, str]
    resource_attributes: dict[str, str]
    events: list[SpanEvent]


class RunFlags(BaseModel):
    """What happened in one run (trace), enough to say how it ended."""

    failed: bool = False
    blocked: bool = False
    overridden: bool = False
    assisted: bool = False
    reviewed: bool = False


class ObjectActivity(BaseModel):
    """A business object's footprint: when last touched, in how many runs, by whom, and its last run."""

    type: str
    id: str
    last_seen: datetime
    traces: int
    agents: list[str]
    last_trace: str
    last_run: RunFlags


class StoreStats(BaseModel):
    """What is queryable now."""

    spans: int
    traces: int
    objects: int
    rejected_spans: int
