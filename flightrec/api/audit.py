"""The audit trail of people's acts, its signed head, and its integrity check."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel

from flightrec.api.deps import get_audit_heads, get_store
from flightrec.api.envelope import Page
from flightrec.evidence.audit_heads import HeadKeeper
from flightrec.evidence.audit_verify import AuditVerification
from flightrec.evidence.keys import PublicKey
from flightrec.store import Store
from flightrec.store.audit import AuditEntry, SignedHead

router = APIRouter(tags=["audit"])


class HeadAnswer(BaseModel):
    """The newest signed head (None before the first entry) and the key that signs heads."""

    head: SignedHead | None
    key: PublicKey


class VerifyAgainst(BaseModel):
    """A head kept outside the store (e.g. saved earlier from ``GET /api/audit/head``) to check the log against."""

    head: SignedHead


@router.get("/audit", summary="Audit entries in order (or newest first)", response_model=Page[AuditEntry])
def audit_entries(
    since: int = Query(0, ge=0, description="entries after this sequence number"),
    after: datetime | None = Query(None, description="entries after this time (ISO 8601; no zone: UTC)"),
    actor: str = Query("", max_length=512, description="only this actor's entries"),
    act: str = Query("", max_length=512, description="only entries of this act, e.g. rollback.approve"),
    order: Literal["asc", "desc"] = Query("asc", description="asc: oldest first; desc: newest first"),
    limit: int = Query(1000, ge=1, le=100_000),
    store: Store = Depends(get_store),
) -> Page[AuditEntry]:
    return Page.of(store.audit.entries(since_seq=since, after=after, actor=actor, act=act, order=order, limit=limit))


@router.get("/audit/head", summary="The newest signed head of the audit log and the public key",
            response_model=HeadAnswer)
def audit_head(keeper: HeadKeeper = Depends(get_audit_heads)) -> HeadAnswer:
    """Save this answer to check the log against later (``flightrec audit verify --head FILE``)."""
    return HeadAnswer(head=keeper.newest_head(), key=keeper.key.public())


VERIFY_DOC = ("Checks sequence numbers, links, each entry's hash, each stored head's signature and entry, and this "
              "server's head file. Entries after the newest valid head are chained but not proven.")


@router.get("/audit/verify", summary="Check the audit log against its signed heads", description=VERIFY_DOC,
            response_model=AuditVerification)
def verify(keeper: HeadKeeper = Depends(get_audit_heads)) -> AuditVerification:
    return keeper.verify()


@router.post("/audit/verify", summary="Check the audit log against a head kept outside the store too",
             description=VERIFY_DOC, response_model=AuditVerification,
             responses={422: {"description": "the body is not {head: {seq, hash, time, key_id, signature}}"}})
def verify_against(body: VerifyAgainst = Body(...), keeper: HeadKeeper = Depends(get_audit_heads)) -> AuditVerification:
    return keeper.verify([("the given head", body.head)])
