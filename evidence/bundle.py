"""Building an evidence bundle: the record of a scope, its proofs against one signed checkpoint, a signed manifest.

What goes in (evidence/bundle_models.py names the files): every span in scope exactly as stored
(JSONL and Parquet), with the meaning the engine derived kept apart and marked unproven; the
stories of the objects in scope; the alerts, rollback plans and kill switches about them; the
audit entries naming them (every field, so each entry hash is recomputed); the erasures of those
spans; an inclusion proof of every span and entry against one checkpoint signed after everything
was selected; the public key; a manifest (scope, queries, counts, who, when, each file's SHA-256)
signed by the server key. evidence/bundle_verify.py checks all of it offline.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
import zipfile
from datetime import datetime, timezone

from pydantic import BaseModel

from flightrec import __version__
from flightrec.evidence import bundle_models as names
from flightrec.evidence import leaves as canon
from flightrec.evidence.bundle_models import (
    ExportCounts,
    ExportPreview,
    ExportScope,
    Manifest,
    ManifestCheckpoint,
    ManifestFile,
    ScopeQuery,
)
from flightrec.evidence.bundle_verify import signature_file
from flightrec.evidence.keys import SigningKey
from flightrec.evidence.proofs import ProofRequestError, inclusion_paths
from flightrec.evidence.sequencer import Sequencer
from flightrec.store import ObjectRef, Store
from flightrec.store.audit import AuditEntry
from flightrec.store.evidence_log import LeafRow, StoredCheckpoint
from flightrec.store.evidence_scope import ScopedSpan, SpanScope

PREVIEW_OBJECTS = 50
README_TEXT = """Flight Recorder evidence bundle {bundle_id}
Generated {generated_at} by {exported_by}; scope: {scope}.

How to verify (offline, with nothing but this file):

    flightrec verify {filename}
    flightrec verify {filename} --fingerprint <the key fingerprint published at GET /api/evidence/key>
    flightrec verify {filename} --key server-public-key.pem

What it checks: manifest.sig (Ed25519 over manifest.json by the server key); every file's SHA-256
and size against the manifest, and that no file is missing or added; every span in spans.jsonl
re-hashed (record and content, evidence/leaves.py) into its leaf, and the leaf's inclusion proof
(proofs.json) up to the root of the signed checkpoint (checkpoint.note, C2SP signed note); every
audit entry in audit.jsonl re-hashed (its chain hash) into its leaf and proven the same way;
spans.parquet row by row against spans.jsonl; erased content against erasures.jsonl and the
erasure's audit entry.

What it proves: each span and audit entry in the bundle is, byte for byte, a record the server's
evidence log holds under the signed checkpoint of {size} leaves. What it does not prove: that the
scope is complete (the server ran the queries listed in manifest.json at the generation time; a
bundle cannot show that nothing was left out); the derived meaning ("{derived}" in spans.jsonl),
the stories, alerts, plans and kill-switch states are signed by the manifest, not proven from the
leaves. Without a trusted key or fingerprint, the signatures prove the bundle is self-consistent,
not who made it.
"""


class ExportRefused(ProofRequestError):
    """A scope that cannot be exported; ``status`` is the HTTP status that says why."""


class Selection(BaseModel):
    """Everything in scope but the span bodies and stories: what a preview counts."""

    span_scope: SpanScope
    spans: int
    traces: dict[str, list[str]]
    objects: list[tuple[str, str]]
    audit: list[AuditEntry]
    alerts: list[str]
    plans: list[str]
    controls: list[dict]
    erasures: list[dict]
    queries: list[ScopeQuery]
    warnings: list[str]

    def counts(self) -> ExportCounts:
        steps = [step for body in self.plans for step in json.loads(body).get("steps", [])]
        return ExportCounts(spans=self.spans, traces=len(self.traces), objects=len(self.objects),
                            audit_entries=len(self.audit), alerts=len(self.alerts), plans=len(self.plans),
                            executions=sum(1 for step in steps if step.get("attempts")), controls=len(self.controls),
                            erasures=len(self.erasures))


def _micros(moment: datetime | None, default: int) -> int:
    return int(moment.timestamp() * 1_000_000) if moment else default


def span_scope(store: Store, scope: ExportScope) -> SpanScope:
    """The store's parameters for a scope, after checking that what it names exists (404 with close names)."""
    finder = store.evidence_scope
    if scope.object:
        exists, close = finder.object_ids_like(object_type=scope.object_type or "", object_id=scope.object_id)
        if not exists:
            hint = f"; did you mean {', '.join(f'{scope.object_type}:{c}' for c in close)}?" if close else ""
            raise ExportRefused(404, f"no stored span links to {scope.object}{hint}")
    elif scope.object_type:
        types = finder.object_types()
        if scope.object_type not in types:
            raise ExportRefused(404, f"no stored span links to an object of type {scope.object_type!r} "
                                     f"(types linked: {', '.join(types[:20]) or 'none yet'})")
    if scope.agent:
        exists, close = store.agents_like(name=scope.agent)
        if not exists:
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ExportRefused(404, f"no agent named {scope.agent!r} has sent spans{hint}")
    defaults = SpanScope()
    return SpanScope(otype=scope.object_type or "", oid=scope.object_id, agent=scope.agent or "",
                     since=_micros(scope.since, defaults.since), until=_micros(scope.until, defaults.until))


def _query(name: str, selects: str, **parameters: str | int | list[str] | list[int]) -> ScopeQuery:
    return ScopeQuery(name=name, selects=selects, parameters=parameters)


def _control_lines(store: Store, agents: list[str], audit: list[AuditEntry]) -> list[dict]:
    """The agents' kill switches now, then every change of them the audit entries record."""
    lines = [{"kind": "state", "scope": scope, "name": name, "state": state, "max_per_minute": per_minute,
              "actor": actor, "reason": reason, "updated_at": moment.replace(tzinfo=timezone.utc).isoformat()}
             for scope, name, state, per_minute, actor, reason, moment in store.evidence_scope.controls(agents=agents)]
    subjects = {f"agent:{agent}" for agent in agents}
    lines += [{"kind": "change", "audit_seq": entry.seq, "act": entry.act, "subject": entry.subject,
               "actor": entry.actor, "time": entry.time.isoformat(), "details": entry.details}
              for entry in audit if entry.subject in subjects and entry.act in ("pause", "resume", "throttle", "drain")]
    return lines


def select(store: Store, scope: ExportScope, max_spans: int) -> Selection:
    """What the scope holds (413 when more than ``max_spans`` spans), every statement run recorded."""
    params = span_scope(store, scope)
    finder = store.evidence_scope
    queries = [_query("scope_span_counts", f"spans WHERE {finder.scope_sql()}", **params.params())]
    spans, _ = finder.span_counts(params)
    if spans > max_spans:
        raise ExportRefused(413, f"the scope holds {spans:,} spans, more than FLIGHTREC_EXPORT_MAX_SPANS "
                                 f"({max_spans:,}): narrow it (a shorter since/until window, one agent, one object) "
                                 "or raise the setting")
    traces = finder.traces(params)
    objects = finder.objects(params)
    trace_ids = list(traces)
    agents = sorted({agent for found in traces.values() for agent in found})
    queries += [_query("scope_traces", "the traces of the spans in scope, with their agents", **params.params()),
                _query("scope_objects", "the objects linked to spans in scope (of the scope's type and id)",
                       **params.params())]
    plans = finder.plans(traces=trace_ids)
    queries.append(_query("scope_plans", "the newest version of each rollback plan with a step undoing an action "
                                         "of a trace in scope", traces=trace_ids))
    refs = [f"{kind}:{ident}" for kind, ident in objects]
    alerts = finder.alerts(traces=trace_ids, objects=refs, agents=agents, since_us=params.since, until_us=params.until)
    queries.append(_query("scope_alerts", "the newest version of each alert naming a trace or object in scope, or "
                                          "of an agent in scope active in the window", traces=trace_ids, objects=refs,
                          agents=agents, since=params.since, until=params.until))
    warnings: list[str] = []
    erasures = _erasures(store, params, warnings)
    plan_ids = [json.loads(body)["id"] for body in plans]
    subjects = sorted({*refs, *(f"object:{ref}" for ref in refs), *agents, *(f"agent:{agent}" for agent in agents),
                       *(f"plan:{plan}" for plan in plan_ids)})
    seqs = sorted({int(record["audit_seq"]) for record in erasures})
    audit = finder.audit_entries(subjects=subjects, traces=trace_ids, seqs=seqs)
    queries.append(_query("scope_audit_entries", "audit entries (any time) whose subject or a detail value names an "
                                                 "object, agent or plan in scope, an action of a trace in scope, or an "
                                                 "erasure in the bundle", subjects=subjects, traces=trace_ids, seqs=seqs))
    controls = _control_lines(store, agents, audit)
    queries.append(_query("scope_controls", "the kill switches of the agents in scope now (changes: from the audit "
                                            "entries)", agents=agents))
    if not spans:
        warnings.append("no span is in this scope: the bundle proves nothing about spans")
    return Selection(span_scope=params, spans=spans, traces=traces, objects=objects, audit=audit, alerts=alerts,
                     plans=plans, controls=controls, erasures=erasures, queries=queries, warnings=warnings)


def _erasures(store: Store, params: SpanScope, warnings: list[str]) -> list[dict]:
    """The erasures of spans in scope (erasure records come with deliverable 6; until then, none)."""
    repository = getattr(store, "erasures", None)
    if repository is None:
        warnings.append("this server keeps no erasure records: erasures.jsonl is empty")
        return []
    pairs = store.evidence_scope.span_keys(params)
    return [record.model_dump(mode="json") for record in repository.for_spans(pairs)]


def preview(store: Store, scope: ExportScope, max_spans: int) -> ExportPreview:
    chosen = select(store, scope, max_spans)
    return ExportPreview(scope=scope, counts=chosen.counts(),
                         objects=[f"{kind}:{ident}" for kind, ident in chosen.objects[:PREVIEW_OBJECTS]],
                         queries=chosen.queries, warnings=chosen.warnings)


def _jsonl(lines: list) -> bytes:
    return b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines)


def span_line(span: ScopedSpan) -> dict:
    """A spans.jsonl line: every SpanSource field as stored, and the derived meaning apart."""
    return {**canon.SpanSource(*span.source)._asdict(),
            names.DERIVED_KEY: {"agent": span.agent, "operation": span.operation, "model": span.model,
                                "cost_usd": span.cost_usd, "cost_known": span.cost_known, "objects": span.objects,
                                "tenant": span.tenant}}


def spans_parquet(lines: list[dict]) -> bytes:
    """spans.jsonl's rows as Parquet (the same columns; maps as Parquet maps)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text, number, strings = pa.string(), pa.int64(), pa.list_(pa.string())
    mapping = pa.map_(pa.string(), pa.string())
    columns = {"start_ns": number, "duration_ns": number, "attributes": mapping, "resource": mapping,
               "event_ns": pa.list_(number), "event_names": strings, "event_attributes": pa.list_(mapping),
               "link_trace_ids": strings, "link_span_ids": strings, "link_states": strings,
               "link_attributes": pa.list_(mapping)}
    derived = pa.struct([("agent", text), ("operation", text), ("model", text), ("cost_usd", pa.float64()),
                         ("cost_known", pa.bool_()), ("objects", strings), ("tenant", text)])
    schema = pa.schema([(field, columns.get(field, text)) for field in canon.SpanSource._fields]
                       + [(names.DERIVED_KEY, derived)])
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(lines, schema=schema), out)
    return out.getvalue()


def _story_path(kind: str, ident: str, taken: set[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", f"{kind}_{ident}")[:120]
    path = f"{names.STORIES_DIR}{slug}.html"
    if slug != f"{kind}_{ident}" or path in taken:
        path = f"{names.STORIES_DIR}{slug}-{hashlib.sha256(f'{kind}:{ident}'.encode()).hexdigest()[:10]}.html"
    taken.add(path)
    return path


def _stories(store: Store, objects: list[tuple[str, str]], in_scope: set[tuple[str, str]], limit: int,
             generated_at: datetime, bundle_id: str) -> dict[str, bytes]:
    """The story of each object in scope (its spans in scope only), at most ``limit``."""
    from flightrec.api.objects import story_of
    from flightrec.stories import story_html

    files: dict[str, bytes] = {}
    for kind, ident in objects[:limit]:
        obj = ObjectRef(type=kind, id=ident)
        spans = [span for span in store.object_spans(obj=obj) if (span.trace_id, span.span_id) in in_scope]
        if spans:
            page = story_html(story_of(store, obj, spans, None), generated_at=generated_at, bundle_id=bundle_id)
            files[_story_path(kind, ident, set(files))] = page.encode()
    return files


def _first_leaves(leaves: list[LeafRow], size: int) -> dict[object, LeafRow]:
    """The first leaf (lowest index, under the checkpoint) of each span and entry."""
    first: dict[object, LeafRow] = {}
    for leaf in leaves:
        key = leaf.audit_seq if leaf.kind == "audit" else (leaf.trace_id, leaf.span_id)
        if leaf.index < size and key not in first:
            first[key] = leaf
    return first


def _proofs(store: Store, checkpoint: StoredCheckpoint, lines: list[dict], audit: list[AuditEntry],
            warnings: list[str]) -> dict:
    """proofs.json: the checkpoint and one inclusion proof per span and audit entry, from one node read."""
    repo, size = store.evidence, checkpoint.size
    span_leaves = _first_leaves(repo.leaves_of_spans(trace_ids=sorted({line["trace_id"] for line in lines})), size)
    audit_leaves = _first_leaves(repo.leaves_of_audits(seqs=[entry.seq for entry in audit]), size) if audit else {}
    wanted = [span_leaves.get((line["trace_id"], line["span_id"])) for line in lines]
    entries = [audit_leaves.get(entry.seq) for entry in audit]
    found = [leaf for leaf in wanted + entries if leaf is not None]
    paths = inclusion_paths(repo, sorted({leaf.index for leaf in found}), size) if found else {}
    missing = len(wanted) + len(entries) - len(found)
    if missing:
        warnings.append(f"{missing} record(s) in scope are no leaf under the checkpoint of {size} leaves (not "
                        "sequenced yet): they are in the bundle without a proof, and the verifier names them")

    def proof(leaf: LeafRow) -> dict:
        return {"leaf_index": leaf.index, "record_hash": leaf.record_hash, "content_hash": leaf.content_hash,
                "leaf_hash": leaf.leaf_hash, "path": [node.hex() for node in paths[leaf.index]]}

    return {"checkpoint": {"size": size, "root_hash": checkpoint.root_hash, "origin": checkpoint.origin,
                           "note": checkpoint.note},
            "spans": {f"{leaf.trace_id}:{leaf.span_id}": proof(leaf) for leaf in wanted if leaf is not None},
            "audit": {str(leaf.audit_seq): proof(leaf) for leaf in entries if leaf is not None}}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Bundle(BaseModel):
    bundle_id: str
    data: bytes
    manifest: Manifest
    manifest_sha256: str


def build(store: Store, sequencer: Sequencer, key: SigningKey, scope: ExportScope, *, exported_by: str,
          max_spans: int, max_stories: int) -> Bundle:
    """Select the scope, sequence and sign a checkpoint, prove every record, sign the manifest, zip."""
    chosen = select(store, scope, max_spans)
    spans = store.evidence_scope.spans(chosen.span_scope)
    chosen.queries.append(_query("scope_spans", "every span in scope (its first stored copy), the scope as in scope_span_counts",
                                 **chosen.span_scope.params()))
    lines = [span_line(span) for span in spans]
    checkpoint, _ = sequencer.checkpoint()  # after selecting: everything selected is a leaf under it
    bundle_id, generated_at = str(uuid.uuid4()), datetime.now(tz=timezone.utc)
    warnings = list(chosen.warnings)
    files: dict[str, bytes] = {
        names.SPANS_JSONL: _jsonl(lines),
        names.SPANS_PARQUET: spans_parquet(lines),
        names.AUDIT: _jsonl([entry.model_dump(mode="json") for entry in chosen.audit]),
        names.ALERTS: _jsonl([json.loads(body) for body in chosen.alerts]),
        names.PLANS: _jsonl([json.loads(body) for body in chosen.plans]),
        names.CONTROLS: _jsonl(chosen.controls),
        names.ERASURES: _jsonl(chosen.erasures),
        names.PROOFS: json.dumps(_proofs(store, checkpoint, lines, chosen.audit, warnings), indent=1).encode(),
        names.CHECKPOINT_NOTE: checkpoint.note.encode(),
        names.PUBLIC_KEY: key.public().pem.encode(),
    }
    in_scope = {(line["trace_id"], line["span_id"]) for line in lines}
    stories = _stories(store, chosen.objects, in_scope, max_stories, generated_at, bundle_id)
    if len(chosen.objects) > max_stories:
        warnings.append(f"stories of {max_stories} of the {len(chosen.objects):,} objects in scope are included "
                        "(FLIGHTREC_EXPORT_MAX_STORIES); every span of the others is in spans.jsonl")
    files.update(stories)
    counts = chosen.counts()
    files[names.README] = README_TEXT.format(
        bundle_id=bundle_id, generated_at=generated_at.isoformat(), exported_by=exported_by,
        scope=scope.model_dump_json(exclude_none=True), filename=f"flightrec-evidence-{bundle_id}.zip",
        size=checkpoint.size, derived=names.DERIVED_KEY).encode()
    manifest = Manifest(
        bundle_id=bundle_id, scope=scope, queries=chosen.queries, counts=counts, software_version=__version__,
        generated_at=generated_at, exported_by=exported_by,
        checkpoint=ManifestCheckpoint(size=checkpoint.size, root_hash=checkpoint.root_hash, origin=checkpoint.origin,
                                      key_fingerprint=key.fingerprint, signed_at=checkpoint.time),
        stories={"rendered": len(stories), "in_scope": len(chosen.objects), "limit": max_stories},
        warnings=warnings,
        files=[ManifestFile(path=path, sha256=_digest(data), bytes=len(data)) for path, data in sorted(files.items())])
    manifest_bytes = json.dumps(manifest.model_dump(mode="json"), indent=2).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(names.MANIFEST, manifest_bytes)
        archive.writestr(names.MANIFEST_SIG, signature_file(key.public_raw, key.sign(manifest_bytes)))
        for path, data in sorted(files.items()):
            archive.writestr(path, data, zipfile.ZIP_STORED if path == names.SPANS_PARQUET else zipfile.ZIP_DEFLATED)
    return Bundle(bundle_id=bundle_id, data=out.getvalue(), manifest=manifest, manifest_sha256=_digest(manifest_bytes))
