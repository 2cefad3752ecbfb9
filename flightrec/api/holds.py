"""Legal holds: placed, listed, released; each act audited under the signed-in principal.

A hold exempts from retention the traces linked to an object, an agent's spans, or one trace
(store/retention.py says how the TTL honours it); releasing it lets what it alone kept expire.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from flightrec.auth import acting_as
from flightrec.store import ObjectRef, Store
from flightrec.store.holds import Hold

router = APIRouter(tags=["holds"])
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _reason(value: str) -> str:
    """A reason with text in it (a hold and its release are read in court; 'x' is the caller's choice)."""
    if not value.strip():
        raise ValueError("a reason is required (e.g. the matter or request the hold is for)")
    return value.strip()


class HoldRequest(BaseModel):
    """What to hold: exactly one of object, agent, trace; and why."""

    object: str = Field(default="", description="a business object as type:id: every trace linked to it")
    agent: str = Field(default="", max_length=256, description="an agent: every span it sent")
    trace: str = Field(default="", description="one trace id (32 hex digits)")
    reason: str = Field(max_length=2000, description="why it is held (the matter, the request)")
    actor: str = Field(default="", description="who acts, without sign-in only (signed in: the principal)")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _reason(value)

    @model_validator(mode="after")
    def _one_target(self) -> HoldRequest:
        given = [name for name in ("object", "agent", "trace") if getattr(self, name).strip()]
        if len(given) != 1:
            raise ValueError(f"name exactly one of object, agent, trace to hold (given: {', '.join(given) or 'none'})")
        return self


class ReleaseRequest(BaseModel):
    reason: str = Field(max_length=2000, description="why the hold ends")
    actor: str = Field(default="", description="who acts, without sign-in only (signed in: the principal)")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _reason(value)


@router.get("/holds", summary="Legal holds, newest first (released ones too unless active=true)",
            response_model=Page[Hold])
def list_holds(active: bool = Query(False, description="only holds in force"),
               store: Store = Depends(get_store)) -> Page[Hold]:
    return Page.of(store.holds.all(active_only=active))


@router.post("/holds", summary="Place a legal hold: what it covers outlives its retention; audited",
             response_model=Hold, status_code=201,
             responses={400: {"description": "bad object or trace id"}, 404: {"description": "nothing stored to hold"}})
def add_hold(body: HoldRequest, request: Request, store: Store = Depends(get_store)) -> Hold:
    actor = acting_as(request, body.actor, "who places the hold")
    if body.object.strip():
        try:
            ref = ObjectRef.parse(body.object)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        if not store.holds.object_exists(object_type=ref.type, object_id=ref.id):
            raise HTTPException(404, f"no stored span links to {ref}: check the type and id (GET /api/objects)")
        kind, object_type, key = "object", ref.type, ref.id
    elif body.agent.strip():
        key = body.agent.strip()
        known, close = store.agents_like(name=key)
        if not known:
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise HTTPException(404, f"no spans of agent {key!r} are stored{hint}")
        kind, object_type = "agent", ""
    else:
        key = body.trace.strip().lower()
        if not TRACE_ID.match(key):
            raise HTTPException(400, f"trace id {body.trace!r} is not 32 hex digits")
        if not store.holds.trace_exists(trace_id=key):
            raise HTTPException(404, f"no trace {key} is stored")
        kind, object_type = "trace", ""
    hold = store.holds.add(kind=kind, key=key, object_type=object_type, reason=body.reason, created_by=actor)
    store.audit.append(actor=actor, act="hold.add", subject=f"hold:{hold.id}",
                       details={"target": hold.target, "reason": hold.reason})
    return hold


@router.post("/holds/{hold_id}/release", summary="Release a legal hold: what it alone kept expires; audited",
             response_model=Hold, responses={404: {"description": "no such hold"},
                                             409: {"description": "already released"}})
def release_hold(hold_id: str, body: ReleaseRequest, request: Request, store: Store = Depends(get_store)) -> Hold:
    actor = acting_as(request, body.actor, "who releases the hold")
    hold = store.holds.get(hold_id=hold_id)
    if hold is None:
        raise HTTPException(404, f"no hold {hold_id!r}: GET /api/holds lists them")
    if hold.released:
        raise HTTPException(409, f"hold {hold_id} was released already, by {hold.released_by} at "
                            f"{hold.released_at:%Y-%m-%d %H:%M:%S} UTC")
    released = store.holds.release(hold=hold, released_by=actor, reason=body.reason)
    store.audit.append(actor=actor, act="hold.release", subject=f"hold:{hold.id}",
                       details={"target": hold.target, "reason": released.release_reason})
    store.retention.expire_released(store.config.retention_policy())
    return released
