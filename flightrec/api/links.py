"""Finding the unlinked: runs no object links to, runs by session or user, and links attached by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from flightrec.auth import acting_as
from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from flightrec.store import ObjectRef, Store
from flightrec.store.runs import RunSummary

router = APIRouter(tags=["links"])


class LinkRequest(BaseModel):
    object: str = Field(description="the business object as type:id, e.g. ticket:TCK-1042")
    trace_id: str = Field(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")
    span_id: str = Field(default="", pattern="^([0-9a-f]{16})?$", description="the span to link (default: the run's root)")
    actor: str = Field(default="", description="who acts, without sign-in only (loopback, no API token); signed in: the principal")
    reason: str = Field(default="", max_length=1000, description="why this run belongs to the object")


class Link(BaseModel):
    object: str
    trace_id: str
    span_id: str
    source: str = "manual"


@router.get("/runs/unlinked", summary="Recent runs that link to no business object", response_model=Page[RunSummary])
def unlinked_runs(
    hours: float = Query(24, gt=0, le=24 * 366, description="how far back to look"),
    limit: int = Query(50, ge=1, le=1000),
    store: Store = Depends(get_store),
) -> Page[RunSummary]:
    since = datetime.now(tz=timezone.utc) - timedelta(hours=hours)
    return Page.of(store.runs.unlinked(since=since, limit=limit))


@router.get("/runs", summary="Runs by session / conversation id or user id", response_model=Page[RunSummary])
def runs_by_session(
    session: str = Query(..., min_length=1, max_length=500, description="a session, conversation or user id"),
    limit: int = Query(20, ge=1, le=500),
    store: Store = Depends(get_store),
) -> Page[RunSummary]:
    return Page.of(store.runs.by_session_or_user(value=session, limit=limit))


@router.post("/links", summary="Attach a run (or one of its spans) to a business object by hand; audited",
             response_model=Link, responses={400: {"description": "bad object or missing actor"},
                                             404: {"description": "no such trace or span"}})
def add_link(body: LinkRequest, request: Request, store: Store = Depends(get_store)) -> Link:
    actor = acting_as(request, body.actor, "who is attaching the run")
    try:
        ref = ObjectRef.parse(body.object)
    except ValueError as exc:
        raise HTTPException(400, f"object must be type:id, e.g. ticket:TCK-1042 ({exc})") from exc
    found = store.runs.span_of(trace_id=body.trace_id, span_id=body.span_id)
    if found is None:
        what = f"span {body.span_id} of trace {body.trace_id}" if body.span_id else f"trace {body.trace_id}"
        raise HTTPException(404, f"no {what} is stored")
    span_id, start_ns, tenant, agent = found
    store.runs.add_manual_link(object_type=ref.type, object_id=ref.id, trace_id=body.trace_id, span_id=span_id,
                               start_ns=start_ns, tenant=tenant, agent=agent)
    store.audit.append(actor=actor, act="link.add", subject=f"object:{ref}",
                       details={"trace": body.trace_id, "span": span_id, "reason": body.reason})
    return Link(object=str(ref), trace_id=body.trace_id, span_id=span_id)
