"""The audit trail of people's acts, and its integrity check."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from flightrec.store import Store
from flightrec.store.audit import AuditEntry, verify_chain

router = APIRouter(tags=["audit"])


class ChainCheck(BaseModel):
    ok: bool
    entries: int
    problems: list[str]


@router.get("/audit", summary="Audit entries in order", response_model=Page[AuditEntry])
def audit_entries(
    since: int = Query(0, ge=0, description="entries after this sequence number"),
    limit: int = Query(1000, ge=1, le=100_000),
    store: Store = Depends(get_store),
) -> Page[AuditEntry]:
    return Page.of(store.audit.entries(since_seq=since, limit=limit))


@router.get("/audit/verify", summary="Check the hash chain of the whole audit log", response_model=ChainCheck)
def verify(store: Store = Depends(get_store)) -> ChainCheck:
    entries = store.audit.entries(limit=10_000_000)
    problems = verify_chain(entries)
    return ChainCheck(ok=not problems, entries=len(entries), problems=problems)
