"""Erasure of a data subject's content on request (issue 11): previewed, carried out, listed; audited.

The span records and every evidence proof stay valid (evidence/erasure.py says what is erased and
how ``verify --store`` tells an erased span from a tampered one).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request

from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from flightrec.auth import acting_as
from flightrec.evidence.erasure import ErasureError, ErasureOrder, ErasureOutcome, erase
from flightrec.store import Store
from flightrec.store.erasures import ErasureRequest

router = APIRouter(tags=["erasures"])


@router.get("/erasures", summary="Erasure requests carried out, newest first", response_model=Page[ErasureRequest])
def list_erasures(store: Store = Depends(get_store)) -> Page[ErasureRequest]:
    return Page.of(store.erasures.requests())


@router.post("/erasures", summary="Erase a subject's content (or preview it with dry_run); proofs stay valid; audited",
             response_model=ErasureOutcome,
             responses={400: {"description": "a malformed subject"}, 404: {"description": "no span links to the subject"},
                        409: {"description": "spans in scope are under legal hold (override_hold to erase anyway)"}})
def post_erasure(body: ErasureOrder, request: Request, store: Store = Depends(get_store)) -> ErasureOutcome:
    actor = acting_as(request, body.actor, "who requests the erasure")
    try:
        return erase(store, body, actor)
    except ErasureError as exc:
        raise HTTPException(exc.status, str(exc)) from exc
