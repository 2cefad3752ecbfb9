"""Erasing a data subject's content on request, audited, while every evidence proof stays valid.

A request names a subject (a business object ``type:id``: the spans linked to it and their
descendants) and/or values (every span any attribute value of which contains one). In those
spans the input/output text and every value holding a needle (the values, the subject's id)
become ``[erased: <request id>]`` (store/erasures.py says exactly what changes). Span records are
untouched, so leaves and proofs are unchanged; only the content hash of the stored span moves.

The act: plan, refuse spans under legal hold unless overridden with a reason (a legal obligation
to keep may outweigh erasure: GDPR Art. 17(3)(b)/(e)), mutate, hash the erased content, append the
``erasure.apply`` audit entry (request id, subject, reason, counts, keys, and a digest of the rows),
then keep one erasure row per span naming that entry. :class:`ErasureLedger` is how ``verify
--store`` tells an erased span from a tampered one: a row counts only when its audit entry is
there, hashes right, names the request, its span count and the rows' digest, and carries the head
this server signed right after appending it (a row or entry forged in the store has none).
"""

from __future__ import annotations

import secrets
import threading
from collections import defaultdict
from datetime import datetime, timezone

from pydantic import BaseModel, Field, field_validator, model_validator

from flightrec.evidence.keys import fingerprint, verify_signature
from flightrec.store import ObjectRef, Store
from flightrec.store.audit import AuditEntry, SignedHead, entry_hash, head_message
from flightrec.store.erasures import ErasureRecord, Needles, PlannedSpan, spans_digest
from flightrec.store.holds import Hold

ACT = "erasure.apply"
MIN_VALUE_CHARS = 4  # a shorter value ("a", "42") is in nearly every span: erasing it would wipe the record
MAX_VALUES = 100
EXAMPLES = 5
_ONE_AT_A_TIME = threading.Lock()  # two requests over one span would each record the other's content as theirs


class ErasureError(Exception):
    """A request that cannot be carried out; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ErasureOrder(BaseModel):
    """What to erase and why: a subject and/or values; a dry run changes nothing."""

    subject: str = Field(default="", description="a business object as type:id: the spans linked to it")
    values: list[str] = Field(default_factory=list, max_length=MAX_VALUES,
                              description=f"values to erase wherever an attribute holds one (>= {MIN_VALUE_CHARS} chars)")
    reason: str = Field(max_length=2000, description="why: the request or its reference")
    dry_run: bool = Field(default=False, description="answer what would be erased; change nothing")
    override_hold: bool = Field(default=False, description="erase spans under legal hold too (needs override_reason)")
    override_reason: str = Field(default="", max_length=2000, description="why the erasure outweighs the hold")
    actor: str = Field(default="", description="who acts, without sign-in only (signed in: the principal)")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required (e.g. the data subject's request and its reference)")
        return value.strip()

    @field_validator("values")
    @classmethod
    def _values(cls, values: list[str]) -> list[str]:
        cleaned = [value.strip() for value in values]
        short = [value for value in cleaned if len(value) < MIN_VALUE_CHARS]
        if short:
            raise ValueError(f"values shorter than {MIN_VALUE_CHARS} characters would match nearly every span: "
                             f"{', '.join(repr(value) for value in short)}; give the whole value (an e-mail, a name)")
        return sorted(set(cleaned))

    @model_validator(mode="after")
    def _scope(self) -> ErasureOrder:
        if not self.subject.strip() and not self.values:
            raise ValueError("name a subject (type:id) or at least one value to erase")
        if self.override_hold and not self.override_reason.strip():
            raise ValueError("override_hold needs an override_reason: why erasure outweighs the legal hold")
        return self


class ErasedExample(BaseModel):
    trace_id: str
    span_id: str
    name: str
    keys: list[str]


class ErasureOutcome(BaseModel):
    """What a request erased (or, as a dry run, would erase)."""

    request_id: str = Field(description="'' for a dry run or when nothing was left to erase")
    dry_run: bool
    subject: str
    values: int
    spans: int
    logs: int
    keys: list[str]
    examples: list[ErasedExample]
    holds: list[str] = Field(description="legal holds on spans in scope (overridden, or refusing the erasure)")
    audit_seq: int = 0
    erased_at: datetime | None = None


def _scope(store: Store, order: ErasureOrder) -> tuple[ObjectRef | None, list[tuple[str, str]], Needles]:
    obj = None
    pairs: set[tuple[str, str]] = set()
    if order.subject.strip():
        try:
            obj = ObjectRef.parse(order.subject)
        except ValueError as exc:
            raise ErasureError(400, str(exc)) from exc
        spans = store.object_spans(obj=obj)
        if not spans:
            raise ErasureError(404, f"no stored span links to {obj}: check the type and id (GET /api/objects)")
        pairs |= {(span.trace_id, span.span_id) for span in spans}
    if order.values:
        pairs |= set(store.erasures.matching_spans(needles=Needles(needles=order.values)))
    subject_needles = [obj.id] if obj and len(obj.id) >= MIN_VALUE_CHARS else []
    needles = Needles(exact=[obj.id] if obj else [], needles=sorted({*order.values, *subject_needles}))
    return obj, sorted(pairs), needles


def _holding(store: Store, plan: list[PlannedSpan]) -> list[Hold]:
    """The holds in force on any planned span (by trace, by agent, by a held object's traces)."""
    traces, agents = {span.trace_id for span in plan}, {span.agent for span in plan}
    found = []
    for hold in store.holds.all(active_only=True):
        if hold.kind == "trace":
            held = hold.key in traces
        elif hold.kind == "agent":
            held = hold.key in agents
        else:
            anchors = store.object_anchors(obj=ObjectRef(type=hold.object_type, id=hold.key))
            held = bool(traces & {trace for trace, _ in anchors})
        if held:
            found.append(hold)
    return found


def erase(store: Store, order: ErasureOrder, actor: str) -> ErasureOutcome:
    """Carry out (or with ``dry_run`` preview) one erasure request; ErasureError when it cannot."""
    with _ONE_AT_A_TIME:
        return _erase(store, order, actor)


def _erase(store: Store, order: ErasureOrder, actor: str) -> ErasureOutcome:
    obj, pairs, needles = _scope(store, order)
    plan = store.erasures.plan(pairs=pairs, needles=needles)
    logs = store.erasures.log_count(pairs=pairs, needles=needles)
    holds = _holding(store, plan)
    subject = str(obj) if obj else "values"
    outcome = ErasureOutcome(
        request_id="", dry_run=order.dry_run, subject=subject, values=len(order.values), spans=len(plan), logs=logs,
        keys=sorted({key for span in plan for key in span.keys}), holds=[hold.id for hold in holds],
        examples=[ErasedExample(trace_id=s.trace_id, span_id=s.span_id, name=s.name, keys=s.keys)
                  for s in plan[:EXAMPLES]])
    if holds and not order.override_hold and not order.dry_run:
        named = "; ".join(f"{hold.id} on {hold.target} ({hold.reason})" for hold in holds)
        raise ErasureError(409, f"spans in scope are under legal hold: {named}. A legal obligation to keep may "
                                "outweigh erasure (GDPR Art. 17(3)(b)/(e)); to erase anyway, send override_hold "
                                "with an override_reason (CLI: --override-hold REASON)")
    if order.dry_run or not (plan or logs):
        return outcome
    request_id = "er_" + secrets.token_hex(6)
    span_pairs = [(span.trace_id, span.span_id) for span in plan]
    leaf_hashes = store.erasures.leaf_content_hashes(pairs=span_pairs)
    store.erasures.erase(span_pairs=span_pairs, log_pairs=pairs, needles=needles, request_id=request_id, logs=logs > 0)
    after = store.erasures.content_hashes(pairs=span_pairs)
    erased_at = datetime.now(tz=timezone.utc)
    rows = [ErasureRecord(request_id=request_id, trace_id=span.trace_id, span_id=span.span_id, erased_at=erased_at,
                          actor=actor, subject=subject, reason=order.reason, keys=span.keys,
                          prior_content_hash=leaf_hashes.get((span.trace_id, span.span_id), span.content_hash),
                          content_hash=after.get((span.trace_id, span.span_id), ""), audit_seq=0) for span in plan]
    details = {"request_id": request_id, "subject": subject, "values": str(len(order.values)), "reason": order.reason,
               "spans": str(len(rows)), "logs": str(logs), "keys": ",".join(outcome.keys), "digest": spans_digest(rows)}
    if holds:
        details |= {"holds_overridden": ",".join(outcome.holds), "override_reason": order.override_reason.strip()}
    entry = store.audit.append(actor=actor, act=ACT, subject=f"erasure:{request_id}", details=details)
    store.erasures.record([row.model_copy(update={"audit_seq": entry.seq}) for row in rows])
    return outcome.model_copy(update={"request_id": request_id, "audit_seq": entry.seq, "erased_at": erased_at})


class ErasureLedger:
    """The erasure rows a verifier may trust, and why the others are not (one read of rows, entries, heads)."""

    def __init__(self, store: Store, public_raw: bytes) -> None:
        self.untrusted: dict[str, str] = {}
        self.by_span: dict[tuple[str, str], list[ErasureRecord]] = defaultdict(list)
        requests: dict[str, list[ErasureRecord]] = defaultdict(list)
        for row in store.erasures.all():
            requests[row.request_id].append(row)
            self.by_span[(row.trace_id, row.span_id)].append(row)
        if not requests:
            return
        entries = {entry.seq: entry for entry in store.audit.entries(act=ACT, limit=10_000_000)}
        heads: dict[int, list[SignedHead]] = defaultdict(list)
        for head in store.audit.heads():
            heads[head.seq].append(head)
        for request_id, rows in requests.items():
            problem = _untrusted(request_id, rows, entries, heads, public_raw)
            if problem:
                self.untrusted[request_id] = problem

    def explain(self, key: tuple[str, str], leaf_content: str, stored_content: str) -> tuple[bool, str]:
        """(True, "content erased on <date> by request <id>") when a trusted erasure accounts for the stored
        content differing from the leaf's; else (False, why not)."""
        rows = [row for row in self.by_span.get(key, []) if row.prior_content_hash == leaf_content]
        if not rows:
            return False, ("changed content (attributes, resource, events or links differ from what was sequenced), "
                           "and no erasure accounts for it")
        refused = [f"request {row.request_id}: {self.untrusted[row.request_id]}" for row in rows
                   if row.request_id in self.untrusted]
        if refused:
            return False, "changed content; an erasure row names it, but it is not trusted (" + "; ".join(refused) + ")"
        latest = max(rows, key=lambda row: row.erased_at)
        if latest.content_hash != stored_content:
            return False, f"changed content since its erasure by request {latest.request_id} (it no longer hashes " \
                          "to the erased content)"
        return True, f"content erased on {latest.erased_at:%Y-%m-%d} by request {latest.request_id}"


def _untrusted(request_id: str, rows: list[ErasureRecord], entries: dict[int, AuditEntry],
               heads: dict[int, list[SignedHead]], public_raw: bytes) -> str:
    """Why a request's rows cannot be trusted, or ''."""
    seqs = {row.audit_seq for row in rows}
    if len(seqs) != 1:
        return f"its rows name different audit entries ({', '.join(map(str, sorted(seqs)))})"
    seq = seqs.pop()
    entry = entries.get(seq)
    if entry is None:
        return f"no {ACT} audit entry {seq} records it"
    details = entry.details
    if entry.subject != f"erasure:{request_id}" or details.get("request_id") != request_id:
        return f"audit entry {seq} records another request"
    if entry_hash(entry.seq, entry.time, entry.actor, entry.act, entry.subject, entry.details, entry.prev_hash,
                  entry.format) != entry.hash:
        return f"audit entry {seq} no longer matches its hash"
    if details.get("spans") != str(len(rows)):
        return f"audit entry {seq} records {details.get('spans')} spans, the store holds {len(rows)} rows"
    if details.get("digest") != spans_digest(rows):
        return f"its rows no longer match the digest audit entry {seq} recorded"
    key_id = fingerprint(public_raw)
    if not any(head.hash == entry.hash and head.key_id == key_id
               and verify_signature(public_raw, head_message(head.seq, head.hash, head.time), head.signature)
               for head in heads.get(seq, [])):
        return f"audit entry {seq} carries no head signed by this server (entries the server appends do)"
    return ""
