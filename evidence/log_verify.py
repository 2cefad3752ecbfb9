"""`flightrec verify --store`: re-hash what is stored and name everything that no longer matches the log.

Checks, in one pass over the store (leaves in index chunks, spans in trace-id ranges):

- the newest checkpoint's signature, by this server's key;
- every leaf: indices 0..n-1 each once, and its leaf hash against its leaf data (a rewritten leaf);
- the tree: the root recomputed from the leaves, and the root read from the stored nodes, against
  the checkpoint's signed root; every stored node against the one the leaves give (a rewritten node);
- every stored copy of every span against its leaf's record and content hashes (changed record,
  changed content; a content change an erasure accounts for is reported as erased, not as a problem:
  evidence/erasure.py says when an erasure row is trusted), and every span leaf against the store (a deleted span; one older than the
  retention period is reported as expired, not as a problem);
- every audit entry: its stored hash against its leaf, its content against its hash, none deleted.

What it does not prove: that spans which are no leaf yet (named in the notes) were ever received
as they are; that nothing was removed before it was sequenced.
"""

from __future__ import annotations

import time as clock
from collections import defaultdict

from pydantic import BaseModel, Field

from flightrec.evidence import leaves as canon
from flightrec.evidence.checkpoints import NoteError, open_checkpoint
from flightrec.evidence.erasure import ErasureLedger
from flightrec.evidence.merkle import Frontier, range_hash
from flightrec.evidence.proofs import ProofRequestError, read_nodes
from flightrec.store.audit import entry_hash
from flightrec.store.evidence_log import LeafRow
from flightrec.store.repository import Store

CHUNK = 100_000
TRACE_RANGES = ["", *"123456789abcdef", None]  # [low, high) bounds that cover every string
MAX_AUDIT = 10_000_000
MAX_PROBLEMS = 1000


class Mismatch(BaseModel):
    """One thing that no longer matches: what (``span``, ``audit``, ``leaf``, ``node``, ``checkpoint``),
    which (``trace:span``, ``audit:N``, ``leaf N``), the leaf index when known, and how."""

    kind: str
    ref: str
    leaf_index: int | None = None
    problem: str


class StoreVerification(BaseModel):
    ok: bool
    checkpoint_size: int = 0
    leaves: int = 0
    spans_checked: int = 0
    audit_checked: int = 0
    problems: list[Mismatch] = Field(default_factory=list)
    problems_total: int = 0
    notes: list[str] = Field(default_factory=list)
    erased: list[str] = Field(default_factory=list, description="spans whose content a trusted erasure removed: "
                              "'trace:span: content erased on <date> by request <id>' (their records still checked)")
    erased_total: int = 0
    seconds: float = 0.0


class _Report:
    def __init__(self) -> None:
        self.problems: list[Mismatch] = []
        self.total = 0

    def add(self, kind: str, ref: str, problem: str, leaf_index: int | None = None) -> None:
        self.total += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Mismatch(kind=kind, ref=ref, leaf_index=leaf_index, problem=problem))


def _ref(leaf: LeafRow) -> str:
    return f"audit:{leaf.audit_seq}" if leaf.kind == "audit" else f"{leaf.trace_id}:{leaf.span_id}"


def verify_store(store: Store, public_raw: bytes, retention_days: int = 0) -> StoreVerification:
    started = clock.monotonic()
    repo, report, notes = store.evidence, _Report(), []
    size, _ = repo.tree_size()
    stored_checkpoint = repo.latest_checkpoint()
    signed_size, signed_root = 0, None
    if stored_checkpoint is None:
        notes.append("no checkpoint has been signed yet: the leaves are checked against the data, not a signed root")
    else:
        try:
            opened = open_checkpoint(stored_checkpoint.note, public_raw)
            signed_size, signed_root = opened.size, opened.root
            if opened.size != stored_checkpoint.size or opened.root.hex() != stored_checkpoint.root_hash:
                report.add("checkpoint", f"checkpoint {stored_checkpoint.size}",
                           "the stored size or root differs from the signed note")
        except NoteError as exc:
            report.add("checkpoint", f"checkpoint {stored_checkpoint.size}", f"not signed by this server's key: {exc}")
        if signed_size > size:
            report.add("checkpoint", f"checkpoint {signed_size}",
                       f"signs {signed_size} leaves but only {size} are stored: leaves were removed from the end")

    audit_leaves = _check_tree(repo, size, signed_size, signed_root, report)
    erased: list[str] = []
    spans = _check_spans(store, report, notes, retention_days, ErasureLedger(store, public_raw), erased)
    audited = _check_audit(store, audit_leaves, report, notes)
    if erased:
        notes.append(f"{len(erased)} stored span copies had their content erased on request (trusted erasures, "
                     "each recorded by a signed audit entry): their records still match their leaves")
    return StoreVerification(ok=report.total == 0, checkpoint_size=signed_size, leaves=size, spans_checked=spans,
                             audit_checked=audited, problems=report.problems, problems_total=report.total,
                             notes=notes, erased=erased[:MAX_PROBLEMS], erased_total=len(erased),
                             seconds=round(clock.monotonic() - started, 3))


def _check_tree(repo, size: int, signed_size: int, signed_root: bytes | None, report: _Report) -> dict[int, LeafRow]:
    """Leaves, nodes and roots; returns the audit leaves by sequence number."""
    frontier, audit_leaves, expected = Frontier(), {}, 0
    for start in range(0, size, CHUNK):
        chunk = repo.leaves(start=start, end=min(size, start + CHUNK))
        recomputed: dict[tuple[int, int], str] = {}
        for leaf in chunk:
            if leaf.index < expected:
                report.add("leaf", f"leaf {leaf.index}", f"a second leaf at this index ({_ref(leaf)})", leaf.index)
                continue
            while expected < leaf.index:
                report.add("leaf", f"leaf {expected}", "missing: the leaf was deleted", expected)
                frontier.append([bytes(32)])
                expected += 1
            data = canon.leaf_data(leaf.kind, leaf.trace_id, leaf.span_id, leaf.audit_seq, leaf.record_hash,
                                   leaf.content_hash)
            digest = canon.leaf_hex(data)
            if digest != leaf.leaf_hash:
                report.add("leaf", _ref(leaf), "its leaf hash was rewritten: it does not hash its record and content",
                           leaf.index)
            if leaf.kind == "audit":
                audit_leaves[leaf.audit_seq] = leaf
            for node in frontier.append([bytes.fromhex(digest)]):
                if node.level:
                    recomputed[(node.level, node.index)] = node.hash.hex()
            expected += 1
            if expected == signed_size and signed_root is not None and frontier.root() != signed_root:
                report.add("checkpoint", f"checkpoint {signed_size}",
                           "the stored leaves no longer hash to the signed root (a leaf was rewritten)")
        _compare_nodes(repo, recomputed, report)
    if signed_root is not None and signed_size and signed_size <= size:
        try:
            from_nodes = read_nodes(repo, lambda nodes: range_hash(nodes, 0, signed_size))
        except ProofRequestError as exc:
            report.add("node", "tree", str(exc))
        else:
            if from_nodes != signed_root:
                report.add("checkpoint", f"checkpoint {signed_size}",
                           "the stored tree nodes no longer give the signed root (a node was rewritten)")
    return audit_leaves


def _compare_nodes(repo, recomputed: dict[tuple[int, int], str], report: _Report) -> None:
    by_level: dict[int, list[int]] = defaultdict(list)
    for level, index in recomputed:
        by_level[level].append(index)
    for level, indices in by_level.items():
        stored: dict[int, set[str]] = defaultdict(set)
        for _, index, digest in repo.nodes(level=level, start=min(indices), end=max(indices) + 1):
            stored[index].add(digest)
        for index in indices:
            want, have = recomputed[(level, index)], stored.get(index, set())
            if have != {want}:
                first, count = index << level, 1 << level
                what = "missing" if not have else "rewritten (it does not hash the leaves below it)"
                report.add("node", f"node {level}/{index}", f"the tree node over leaves {first}..{first + count - 1} "
                           f"is {what}")


def _check_spans(store: Store, report: _Report, notes: list[str], retention_days: int, ledger: ErasureLedger,
                 erased: list[str]) -> int:
    repo, checked, unsequenced, expired = store.evidence, 0, 0, 0
    cutoff_ns = (clock.time() - retention_days * 86400) * 1e9 if retention_days else None
    for low, high in zip(TRACE_RANGES, TRACE_RANGES[1:]):
        leaves: dict[tuple[str, str], LeafRow] = {}
        for leaf in repo.span_leaves(low=low, high=high):
            key = (leaf.trace_id, leaf.span_id)
            if key in leaves:
                report.add("span", _ref(leaf), f"sequenced twice (leaves {leaves[key].index} and {leaf.index})",
                           leaf.index)
                continue
            leaves[key] = leaf
        seen: set[tuple[str, str]] = set()
        for trace_id, span_id, record, content in repo.span_hashes(low=low, high=high):
            key = (trace_id, span_id)
            leaf = leaves.get(key)
            checked += 1
            if leaf is None:
                unsequenced += 1
                continue
            seen.add(key)
            if record != leaf.record_hash:
                report.add("span", _ref(leaf), "changed record (ids, parent, times, name, kind, service, scope or "
                           "status differ from what was sequenced)", leaf.index)
            if content != leaf.content_hash:
                accounted, why = ledger.explain(key, leaf.content_hash, content)
                if accounted:
                    erased.append(f"{_ref(leaf)}: {why}")
                else:
                    report.add("span", _ref(leaf), why, leaf.index)
        for key, leaf in leaves.items():
            if key in seen:
                continue
            if cutoff_ns is not None and leaf.time_ns < cutoff_ns:
                expired += 1
            else:
                report.add("span", _ref(leaf), "deleted: the span is a leaf but no longer stored", leaf.index)
    if unsequenced:
        notes.append(f"{unsequenced} stored span copies are no leaf yet (sequenced within seconds; not proven)")
    if expired:
        notes.append(f"{expired} sequenced spans are gone and older than the retention period ({retention_days} "
                     "days): expired, as retention does; their leaves and proofs stay")
    return checked


def _check_audit(store: Store, audit_leaves: dict[int, LeafRow], report: _Report, notes: list[str]) -> int:
    entries = store.audit.entries(limit=MAX_AUDIT)
    by_seq: dict[int, list] = defaultdict(list)
    for entry in entries:
        by_seq[entry.seq].append(entry)
    for seq, leaf in sorted(audit_leaves.items()):
        found = by_seq.get(seq, [])
        if not found:
            report.add("audit", f"audit:{seq}", "deleted: the entry is a leaf but no longer stored", leaf.index)
            continue
        for entry in found:
            if entry.hash != leaf.record_hash:
                report.add("audit", f"audit:{seq}", "rewritten: its hash differs from the one in the log", leaf.index)
            elif _recomputed(entry) != entry.hash:
                report.add("audit", f"audit:{seq}", "rewritten: its content no longer matches its hash", leaf.index)
    later = sum(1 for seq in by_seq if seq not in audit_leaves)
    if later:
        notes.append(f"{later} audit entries are no leaf yet (sequenced within seconds; not proven)")
    return len(entries)


def _recomputed(entry) -> str:  # noqa: ANN001 - an AuditEntry
    try:
        return entry_hash(entry.seq, entry.time, entry.actor, entry.act, entry.subject, entry.details,
                          entry.prev_hash, entry.format)
    except ValueError:  # an unknown format: not what was sequenced
        return ""
