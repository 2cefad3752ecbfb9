"""Inclusion and consistency proofs of the evidence log, against its signed checkpoints.

A proof is computed from stored nodes only: the coordinates a proof needs do not depend on the
hashes, so one pass with placeholder hashes lists them, one query reads them, a second pass
computes the proof. Answers carry everything an offline check needs besides the public key
(``GET /api/evidence/key``): the leaf data, its index, the audit path, the signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel

from flightrec.evidence import leaves as canon
from flightrec.evidence.checkpoints import Checkpoint
from flightrec.evidence.merkle import Nodes, consistency_proof, inclusion_proof, inclusion_proofs
from flightrec.store.evidence_log import EvidenceRepository, LeafRow, StoredCheckpoint

T = TypeVar("T")


class ProofRequestError(ValueError):
    """A proof that cannot be given as asked; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InclusionProof(BaseModel):
    """Leaf ``leaf_index`` of the tree of ``tree_size`` leaves, the audit path (hex, RFC 9162 order)
    and the checkpoint that signs that tree's root."""

    kind: str
    ref: str
    leaf_index: int
    tree_size: int
    leaf_data: str
    leaf_hash: str
    record_hash: str
    content_hash: str
    path: list[str]
    checkpoint: Checkpoint


class ConsistencyProof(BaseModel):
    """The proof that the tree of ``old`` leaves is a prefix of the tree of ``new``, with both checkpoints."""

    old: int
    new: int
    path: list[str]
    old_checkpoint: Checkpoint
    new_checkpoint: Checkpoint


def read_nodes(repo: EvidenceRepository, compute: Callable[[Nodes], T]) -> T:
    """Run ``compute`` over the stored nodes, reading every node it needs in one query."""
    asked: set[tuple[int, int]] = set()

    def placeholder(level: int, index: int) -> bytes:
        asked.add((level, index))
        return bytes(32)

    compute(placeholder)
    found = repo.node_hashes(asked)
    missing = sorted(asked - found.keys())
    if missing:
        raise ProofRequestError(500, f"the log's stored tree lacks node(s) {missing[:5]} (level, index): run "
                                     "`flightrec verify --store`")
    return compute(lambda level, index: bytes.fromhex(found[(level, index)]))


def inclusion_paths(repo: EvidenceRepository, indices: Sequence[int], size: int) -> dict[int, list[bytes]]:
    """The audit paths of many leaves in the tree of ``size`` leaves, from one read of every node they
    need (an evidence bundle's thousands of proofs: one query, not one per leaf)."""
    return read_nodes(repo, lambda nodes: inclusion_proofs(nodes, indices, size))


def checkpoint_for(repo: EvidenceRepository, size: int | None) -> StoredCheckpoint:
    """The checkpoint of ``size`` leaves (None: the newest); 404 when there is none."""
    if size is None:
        found = repo.latest_checkpoint()
        if found is None:
            raise ProofRequestError(404, "no checkpoint has been signed yet: POST /api/evidence/checkpoints signs one")
        return found
    found = repo.checkpoint(size=size)
    if found is None:
        sizes = ", ".join(str(c.size) for c in repo.checkpoints(limit=5)) or "none yet"
        raise ProofRequestError(404, f"no checkpoint of tree size {size}: proofs are given against signed "
                                     f"checkpoints only (newest sizes: {sizes}; GET /api/evidence/checkpoint)")
    return found


def _ref(leaf: LeafRow) -> str:
    return f"audit:{leaf.audit_seq}" if leaf.kind == "audit" else f"{leaf.trace_id}:{leaf.span_id}"


def inclusion(repo: EvidenceRepository, leaf: LeafRow, size: int | None) -> InclusionProof:
    checkpoint = checkpoint_for(repo, size)
    if leaf.index >= checkpoint.size:
        raise ProofRequestError(409, f"{_ref(leaf)} is leaf {leaf.index}, sequenced after the checkpoint of "
                                     f"{checkpoint.size} leaves: ask again after the next checkpoint (or POST "
                                     "/api/evidence/checkpoints)")
    path = read_nodes(repo, lambda nodes: inclusion_proof(nodes, leaf.index, checkpoint.size))
    data = canon.leaf_data(leaf.kind, leaf.trace_id, leaf.span_id, leaf.audit_seq, leaf.record_hash,
                           leaf.content_hash)
    return InclusionProof(kind=leaf.kind, ref=_ref(leaf), leaf_index=leaf.index, tree_size=checkpoint.size,
                          leaf_data=data.decode(), leaf_hash=leaf.leaf_hash, record_hash=leaf.record_hash,
                          content_hash=leaf.content_hash, path=[node.hex() for node in path],
                          checkpoint=Checkpoint.of(checkpoint))


def span_inclusion(repo: EvidenceRepository, trace_id: str, span_id: str, size: int | None) -> InclusionProof:
    found = repo.leaves_of_span(trace_id=trace_id, span_id=span_id)
    if not found:
        if repo.span_stored(trace_id=trace_id, span_id=span_id):
            raise ProofRequestError(409, f"span {trace_id}:{span_id} is stored but not sequenced yet: the "
                                         "sequencer appends new spans within seconds; ask again")
        raise ProofRequestError(404, f"no span {trace_id}:{span_id} is stored (ids are hex, as stored)")
    return inclusion(repo, found[0], size)


def audit_inclusion(repo: EvidenceRepository, seq: int, size: int | None, entry_exists: bool) -> InclusionProof:
    found = repo.leaves_of_audit(seq=seq)
    if not found:
        if entry_exists:
            raise ProofRequestError(409, f"audit entry {seq} is not sequenced yet; ask again in a few seconds")
        raise ProofRequestError(404, f"there is no audit entry {seq}")
    return inclusion(repo, found[0], size)


def consistency(repo: EvidenceRepository, old: int, new: int) -> ConsistencyProof:
    if old > new:
        raise ProofRequestError(400, f"old ({old}) is larger than new ({new}): a consistency proof goes from a "
                                     "smaller tree to a larger one")
    if old < 1:
        raise ProofRequestError(400, "old must be at least 1: every tree is consistent with the empty one")
    old_checkpoint, new_checkpoint = checkpoint_for(repo, old), checkpoint_for(repo, new)
    path = read_nodes(repo, lambda nodes: consistency_proof(nodes, old, new))
    return ConsistencyProof(old=old, new=new, path=[node.hex() for node in path],
                            old_checkpoint=Checkpoint.of(old_checkpoint), new_checkpoint=Checkpoint.of(new_checkpoint))
