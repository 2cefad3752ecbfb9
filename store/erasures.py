"""Erasure of a data subject's content from stored spans and logs, and the rows that record it (migration 0018).

What a request erases, in the spans in its scope: the input/output text (the attributes the
conventions read text from, and the InputText/OutputText columns) and every attribute value that
is, or contains, one of its needles (case-insensitive), in the span, resource, event and link
attribute maps; each becomes ``[erased: <request id>]``. The derived UserId/SessionId columns are
blanked the same way, and in ``otel_logs`` the records of erased spans lose their body and text
attributes, and any record whose body or attribute holds a needle loses those. The record (ids,
names, kind, service, scope, status, times) is never touched: the span's evidence leaf hashes it
apart from the content (evidence/leaves.py), so the leaf and every proof through it stay valid.

Done with synchronous mutations (``ALTER TABLE ... UPDATE``, ``mutations_sync``) whose WHERE is
the scope's (TraceId, SpanId) pairs, a primary-key read. A value already erased (it starts with
``[erased: ``) is never erased again, so a request that finds nothing left to erase changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple

from pydantic import BaseModel, Field

from flightrec.store import conventions as cv
from flightrec.store.evidence_log import CONTENT_HASH

if TYPE_CHECKING:  # the offline verifier may read ErasureRecord: no engine import
    from flightrec.store.engine import Engine

MARKER_PREFIX = "[erased: "
PAIRS = "{pairs:Array(Tuple(String, String))}"
IN_SCOPE = f"(TraceId, SpanId) IN {PAIRS}"
# The attributes text is read from (store/texts.py), by key and by prefix.
TEXT_KEYS = sorted({*cv.FIELD_SOURCES["input_text"], *cv.FIELD_SOURCES["output_text"],
                    *cv.FIELD_SOURCES["system_instructions"], *cv.TOOL_TEXT_SOURCES["input_text"],
                    *cv.TOOL_TEXT_SOURCES["output_text"], cv.TEXT_PREFIXES["input_text"].rstrip("."),
                    cv.TEXT_PREFIXES["output_text"].rstrip(".")})
TEXT_PREFIXES = sorted({*cv.OI_MESSAGE_PREFIXES.values(), *cv.TEXT_PREFIXES.values()})


def marker(request_id: str) -> str:
    """What an erased value reads afterwards."""
    return f"{MARKER_PREFIX}{request_id}]"


def _hit(value: str) -> str:
    """SQL: the value is a needle or contains one (and is not erased already)."""
    return (f"(NOT startsWith({value}, '{MARKER_PREFIX}') AND (has({{exact:Array(String)}}, {value}) "
            f"OR multiSearchAnyCaseInsensitiveUTF8({value}, {{needles:Array(String)}})))")


def _text(key: str, value: str) -> str:
    """SQL: a text attribute with text in it."""
    return (f"({value} != '' AND NOT startsWith({value}, '{MARKER_PREFIX}') AND (has({{text_keys:Array(String)}}, {key}) "
            f"OR arrayExists(tp -> startsWith({key}, tp), {{text_prefixes:Array(String)}})))")


def _erased_map(column: str, texts: bool) -> str:
    """SQL: the map with every erasable value replaced by the marker."""
    cond = f"({_text('ek', 'ev')} OR {_hit('ev')})" if texts else _hit("ev")
    return f"mapApply((ek, ev) -> (ek, if({cond}, {{marker:String}}, ev)), {column})"


def _keys_of_map(column: str, texts: bool) -> str:
    cond = f"({_text('ek', 'ev')} OR {_hit('ev')})" if texts else _hit("ev")
    return f"arrayFilter((ek, ev) -> {cond}, mapKeys({column}), mapValues({column}))"


def _keys_of_nested(column: str, where: str, texts: bool) -> str:
    return (f"arrayFlatten(arrayMap((em, ei) -> arrayMap(k -> concat('{where}:', toString(ei - 1), ':', k), "
            f"{_keys_of_map('em', texts)}), {column}, arrayEnumerate({column})))")


def _column_key(column: str) -> str:
    return f"if({column} != '' AND NOT startsWith({column}, '{MARKER_PREFIX}'), ['column:{column}'], [])"


# Every key a request would erase in a span, prefixed by where it is (span:, resource:, event:N:, link:N:, column:).
ERASED_KEYS = (
    "arrayConcat("
    f"arrayMap(k -> concat('span:', k), {_keys_of_map('SpanAttributes', True)}), "
    f"arrayMap(k -> concat('resource:', k), {_keys_of_map('ResourceAttributes', False)}), "
    f"{_keys_of_nested('`Events.Attributes`', 'event', True)}, {_keys_of_nested('`Links.Attributes`', 'link', False)}, "
    f"{_column_key('InputText')}, {_column_key('OutputText')})"
)
ANY_HIT = (f"(arrayExists(v -> {_hit('v')}, mapValues(SpanAttributes)) "
           f"OR arrayExists(v -> {_hit('v')}, mapValues(ResourceAttributes)) "
           f"OR arrayExists(em -> arrayExists(v -> {_hit('v')}, mapValues(em)), `Events.Attributes`) "
           f"OR arrayExists(em -> arrayExists(v -> {_hit('v')}, mapValues(em)), `Links.Attributes`))")
SPAN_UPDATE = ", ".join([
    f"SpanAttributes = {_erased_map('SpanAttributes', True)}",
    f"ResourceAttributes = {_erased_map('ResourceAttributes', False)}",
    f"`Events.Attributes` = arrayMap(em -> {_erased_map('em', True)}, `Events.Attributes`)",
    f"`Links.Attributes` = arrayMap(em -> {_erased_map('em', False)}, `Links.Attributes`)",
    *(f"{column} = if({column} != '' AND NOT startsWith({column}, '{MARKER_PREFIX}'), {{marker:String}}, {column})"
      for column in ("InputText", "OutputText")),
    *(f"{column} = if({_hit(column)}, {{marker:String}}, {column})" for column in ("UserId", "SessionId")),
])
LOG_SCOPE = (f"((TraceId, SpanId) IN {PAIRS} AND Body != '' AND NOT startsWith(Body, '{MARKER_PREFIX}')) "
             f"OR {_hit('Body')} OR arrayExists(v -> {_hit('v')}, mapValues(LogAttributes)) "
             f"OR ((TraceId, SpanId) IN {PAIRS} AND arrayExists((k, v) -> {_text('k', 'v')}, mapKeys(LogAttributes), "
             "mapValues(LogAttributes)))")
LOG_UPDATE = (
    f"Body = if(((TraceId, SpanId) IN {PAIRS} AND Body != '' AND NOT startsWith(Body, '{MARKER_PREFIX}')) "
    f"OR {_hit('Body')}, {{marker:String}}, Body), "
    f"LogAttributes = mapApply((ek, ev) -> (ek, if({_hit('ev')} OR ((TraceId, SpanId) IN {PAIRS} AND {_text('ek', 'ev')}), "
    "{marker:String}, ev)), LogAttributes)"
)
SYNC = {"mutations_sync": 2}


class Needles(BaseModel):
    """What a request matches: ``exact`` values anywhere, ``needles`` as case-insensitive substrings."""

    exact: list[str] = Field(default_factory=list)
    needles: list[str] = Field(default_factory=list)

    def params(self) -> dict:
        return {"exact": self.exact, "needles": self.needles, "text_keys": TEXT_KEYS, "text_prefixes": TEXT_PREFIXES}


class PlannedSpan(NamedTuple):
    """A span a request would change: its ids, name, agent, the keys it erases and its content hash now."""

    trace_id: str
    span_id: str
    name: str
    agent: str
    keys: list[str]
    content_hash: str


class ErasureRecord(BaseModel):
    """One erased span: which request, when, by whom, why, which keys, and the content hashes around it."""

    request_id: str
    trace_id: str
    span_id: str
    erased_at: datetime
    actor: str
    subject: str = Field(description="what the request named: an object as type:id, or 'values'")
    reason: str
    keys: list[str] = Field(description="erased keys, prefixed span:, resource:, event:N:, link:N: or column:")
    prior_content_hash: str = Field(description="the content hash the span's evidence leaf holds")
    content_hash: str = Field(description="the stored content's hash right after the erasure")
    audit_seq: int = Field(description="the erasure.apply audit entry recording the request")


class ErasureRequest(BaseModel):
    """One request, summarised: when, by whom, why, how many spans, which keys, its audit entry."""

    request_id: str
    erased_at: datetime
    actor: str
    subject: str
    reason: str
    spans: int
    keys: list[str]
    audit_seq: int


def spans_digest(rows: list[ErasureRecord]) -> str:
    """SHA-256 (hex) of a request's rows (trace, span, prior and new content hash, sorted): the audit
    entry carries it, so a row added to or changed in a request afterwards no longer matches."""
    lines = sorted(f"{r.trace_id}:{r.span_id}:{r.prior_content_hash}:{r.content_hash}\n" for r in rows)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


COLUMNS = ["RequestId", "ErasedAt", "Actor", "Subject", "Reason", "TraceId", "SpanId", "Keys", "PriorContentHash",
           "ContentHash", "AuditSeq"]


def _record(row: tuple) -> ErasureRecord:
    request, at, actor, subject, reason, trace, span, keys, prior, after, seq = row
    return ErasureRecord(request_id=request, erased_at=at.replace(tzinfo=timezone.utc), actor=actor, subject=subject,
                         reason=reason, trace_id=trace, span_id=span, keys=list(keys), prior_content_hash=prior,
                         content_hash=after, audit_seq=seq)


class ErasureRepository:
    """The erasure statements: plan, mutate, record, read."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    # -- planning ----------------------------------------------------------------

    def matching_spans(self, *, needles: Needles) -> list[tuple[str, str]]:
        """(trace id, span id) of every stored span any attribute value of which holds a needle (a full scan)."""
        rows = self.engine.query(
            "erasure_matching_spans",
            f"SELECT DISTINCT TraceId, SpanId FROM {self.db}.otel_traces WHERE {ANY_HIT}", needles.params())
        return [(trace, span) for trace, span in rows]

    def plan(self, *, pairs: list[tuple[str, str]], needles: Needles) -> list[PlannedSpan]:
        """What erasing would change in these spans (one copy each), spans with nothing left to erase left out."""
        if not pairs:
            return []
        rows = self.engine.query(
            "erasure_plan",
            f"SELECT TraceId, SpanId, SpanName, Agent, {ERASED_KEYS} AS erased, {CONTENT_HASH} "
            f"FROM {self.db}.otel_traces WHERE {IN_SCOPE} ORDER BY Timestamp, TraceId, SpanId "
            "LIMIT 1 BY TraceId, SpanId", {**needles.params(), "pairs": pairs})
        return [PlannedSpan(trace, span, name, agent, list(keys), digest)
                for trace, span, name, agent, keys, digest in rows if keys]

    def log_count(self, *, pairs: list[tuple[str, str]], needles: Needles) -> int:
        """How many log records erasing would change."""
        return self.engine.query(
            "erasure_log_count", f"SELECT count() FROM {self.db}.otel_logs WHERE {LOG_SCOPE}",
            {**needles.params(), "pairs": pairs})[0][0]

    def leaf_content_hashes(self, *, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The content hash each span's evidence leaf holds (spans not sequenced yet are absent)."""
        if not pairs:
            return {}
        rows = self.engine.query(
            "erasure_leaf_hashes",
            f"SELECT TraceId, SpanId, any(ContentHash) FROM {self.db}.evidence_leaves WHERE Kind = 'span' "
            f"AND {IN_SCOPE} GROUP BY TraceId, SpanId", {"pairs": pairs})
        return {(trace, span): digest for trace, span, digest in rows}

    # -- erasing -----------------------------------------------------------------

    def _alter(self, table: str) -> str:
        """``ALTER TABLE`` of the rows' storage (on a cluster: the local table on every shard)."""
        topology = self.engine.topology
        return f"ALTER TABLE {self.db}.{topology.storage_name(table)} {topology.on_cluster(table)}".rstrip()

    def erase(self, *, span_pairs: list[tuple[str, str]], log_pairs: list[tuple[str, str]], needles: Needles,
              request_id: str, logs: bool = True) -> None:
        """Replace what the plan names with the request's marker in these spans and (``logs``) in the log records
        of ``log_pairs`` and any record holding a needle; returns when the mutations are done."""
        common = {**needles.params(), "marker": marker(request_id)}
        if span_pairs:
            self.engine.command("erasure_erase_spans",
                                f"{self._alter('otel_traces')} UPDATE {SPAN_UPDATE} WHERE {IN_SCOPE}",
                                {**common, "pairs": span_pairs}, SYNC)
        if logs:
            self.engine.command("erasure_erase_logs",
                                f"{self._alter('otel_logs')} UPDATE {LOG_UPDATE} WHERE {LOG_SCOPE}",
                                {**common, "pairs": log_pairs}, SYNC)

    def content_hashes(self, *, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The content hash of each stored span now (one copy each)."""
        rows = self.engine.query(
            "erasure_content_hashes",
            f"SELECT TraceId, SpanId, any({CONTENT_HASH}) FROM {self.db}.otel_traces WHERE {IN_SCOPE} "
            "GROUP BY TraceId, SpanId", {"pairs": pairs})
        return {(trace, span): digest for trace, span, digest in rows}

    def record(self, rows: list[ErasureRecord]) -> None:
        if rows:
            self.engine.insert(
                "erasure_record", f"{self.db}.erasures",
                [[r.request_id for r in rows], [r.erased_at for r in rows], [r.actor for r in rows],
                 [r.subject for r in rows], [r.reason for r in rows], [r.trace_id for r in rows],
                 [r.span_id for r in rows], [r.keys for r in rows], [r.prior_content_hash for r in rows],
                 [r.content_hash for r in rows], [r.audit_seq for r in rows]], COLUMNS)

    # -- reading -----------------------------------------------------------------

    def for_spans(self, pairs: list[tuple[str, str]]) -> list[ErasureRecord]:
        """Every erasure of these spans, oldest first."""
        if not pairs:
            return []
        rows = self.engine.query(
            "erasures_for_spans",
            f"SELECT {', '.join(COLUMNS)} FROM {self.db}.erasures WHERE {IN_SCOPE} ORDER BY ErasedAt, RequestId",
            {"pairs": pairs})
        return [_record(row) for row in rows]

    def of_request(self, request_id: str) -> list[ErasureRecord]:
        rows = self.engine.query(
            "erasures_of_request",
            f"SELECT {', '.join(COLUMNS)} FROM {self.db}.erasures WHERE RequestId = {{id:String}} "
            "ORDER BY TraceId, SpanId", {"id": request_id})
        return [_record(row) for row in rows]

    def all(self) -> list[ErasureRecord]:
        """Every erasure row (verification reads them all; one row per erased span)."""
        rows = self.engine.query(
            "erasures_all", f"SELECT {', '.join(COLUMNS)} FROM {self.db}.erasures ORDER BY ErasedAt, TraceId, SpanId")
        return [_record(row) for row in rows]

    def requests(self, *, limit: int = 1000) -> list[ErasureRequest]:
        """One summary per request, newest first."""
        rows = self.engine.query(
            "erasure_requests",
            "SELECT RequestId, min(ErasedAt), any(Actor), any(Subject), any(Reason), uniqExact(TraceId, SpanId), "
            f"arraySort(groupUniqArrayArray(Keys)), any(AuditSeq) FROM {self.db}.erasures GROUP BY RequestId "
            "ORDER BY min(ErasedAt) DESC, RequestId LIMIT {limit:UInt32}", {"limit": limit})
        return [ErasureRequest(request_id=request, erased_at=at.replace(tzinfo=timezone.utc), actor=actor,
                               subject=subject, reason=reason, spans=spans, keys=list(keys), audit_seq=seq)
                for request, at, actor, subject, reason, spans, keys, seq in rows]
