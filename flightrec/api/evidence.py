"""Evidence: the signing key, the evidence log's signed checkpoints, inclusion and consistency proofs, and
the check of the whole store against the log (``flightrec verify --store``)."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from flightrec.api.deps import get_audit_heads, get_sequencer, get_store
from flightrec.auth import acting_as, principal_of
from flightrec.evidence import proofs
from flightrec.evidence.audit_heads import HeadKeeper
from flightrec.evidence.checkpoints import Checkpoint
from flightrec.evidence.keys import PublicKey
from flightrec.evidence.log_verify import StoreVerification, verify_store
from flightrec.evidence.sequencer import Sequencer
from flightrec.store import Store

router = APIRouter(tags=["evidence"])


class CheckpointAnswer(BaseModel):
    """The checkpoint signed now (``created``), or the newest one when the tree has not grown since."""

    checkpoint: Checkpoint
    created: bool


class CheckpointRequest(BaseModel):
    actor: str = ""


def as_http(call):  # noqa: ANN001, ANN202 - an evidence function and its answer
    """Call it; a request it refuses (proofs, bundle exports) is answered with the status it names."""
    try:
        return call()
    except proofs.ProofRequestError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


@router.get("/evidence/key", summary="The server's Ed25519 public key (PEM, raw base64, fingerprint)",
            response_model=PublicKey)
def evidence_key(keeper: HeadKeeper = Depends(get_audit_heads)) -> PublicKey:
    return keeper.key.public()


@router.get("/evidence/checkpoint", summary="The newest signed checkpoint of the evidence log, or the one of ?size=",
            response_model=Checkpoint, responses={404: {"description": "no checkpoint (of that size)"}})
def checkpoint(size: int | None = Query(None, ge=0, description="a checkpoint's tree size"),
               store: Store = Depends(get_store)) -> Checkpoint:
    return as_http(lambda: Checkpoint.of(proofs.checkpoint_for(store.evidence, size)))


@router.post("/evidence/checkpoints", summary="Sequence what is stored now and sign a checkpoint (audited)",
             response_model=CheckpointAnswer)
def sign_now(request: Request, body: CheckpointRequest = Body(default_factory=CheckpointRequest),
             store: Store = Depends(get_store), sequencer: Sequencer = Depends(get_sequencer)) -> CheckpointAnswer:
    actor = acting_as(request, body.actor, "who asks for the checkpoint") if body.actor else principal_of(request).name
    # The act is recorded first, so the checkpoint it asks for covers its own audit entry.
    store.audit.append(actor=actor, act="evidence.checkpoint", subject="evidence-log", details={})
    signed, created = sequencer.checkpoint()
    return CheckpointAnswer(checkpoint=Checkpoint.of(signed), created=created)


@router.get("/evidence/proofs/inclusion", summary="The inclusion proof of a span or an audit entry in a checkpoint",
            response_model=proofs.InclusionProof,
            responses={400: {"description": "neither or both of a span and an audit entry named"},
                       404: {"description": "no such span, entry or checkpoint"},
                       409: {"description": "not sequenced yet, or sequenced after the checkpoint"}})
def inclusion(trace_id: str = Query("", max_length=128), span_id: str = Query("", max_length=64),
              audit_seq: int | None = Query(None, ge=1),
              size: int | None = Query(None, ge=1, description="a checkpoint's tree size (default: the newest)"),
              store: Store = Depends(get_store)) -> proofs.InclusionProof:
    span = bool(trace_id or span_id)
    if span == (audit_seq is not None):
        raise HTTPException(400, "name one span (trace_id and span_id) or one audit entry (audit_seq)")
    if span:
        if not (trace_id and span_id):
            raise HTTPException(400, "a span needs both trace_id and span_id")
        return as_http(lambda: proofs.span_inclusion(store.evidence, trace_id, span_id, size))
    entries = store.audit.entries(since_seq=audit_seq - 1, limit=1)
    exists = bool(entries) and entries[0].seq == audit_seq
    return as_http(lambda: proofs.audit_inclusion(store.evidence, audit_seq, size, exists))


@router.get("/evidence/proofs/consistency", summary="The consistency proof between two checkpoints",
            response_model=proofs.ConsistencyProof,
            responses={400: {"description": "old > new, or old < 1"}, 404: {"description": "a size is no checkpoint"}})
def consistency(old: int = Query(..., ge=0), new: int = Query(..., ge=0),
                store: Store = Depends(get_store)) -> proofs.ConsistencyProof:
    return as_http(lambda: proofs.consistency(store.evidence, old, new))


@router.post("/evidence/verify", summary="Re-hash every stored span and audit entry against the log and its "
             "newest checkpoint", response_model=StoreVerification)
def verify(store: Store = Depends(get_store), keeper: HeadKeeper = Depends(get_audit_heads)) -> StoreVerification:
    return verify_store(store, keeper.key.public_raw, store.config.retention_days)
