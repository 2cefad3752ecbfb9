"""Quarantined WAL segments: what the store refused for its data, and replaying it once fixed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from flightrec.collector import BatchWriter
from flightrec.collector.quarantine import QuarantinedSegment, UnknownSegment
from flightrec.api.deps import get_store, get_writer
from flightrec.api.envelope import Page
from flightrec.auth import acting_as
from flightrec.store import Store

router = APIRouter(tags=["quarantine"])


class ReplayRequest(BaseModel):
    actor: str = Field(default="", description="who acts, without sign-in only (loopback, no API token); signed in: the principal")


class Replayed(BaseModel):
    segment: str
    spans: int
    status: Literal["queued"] = "queued"


def _replay(writer: BatchWriter, store: Store, name: str, actor: str) -> Replayed:
    try:
        queued = writer.replay(name)
    except UnknownSegment:
        raise HTTPException(404, f"no quarantined segment named {name!r}: GET /api/quarantine lists them") from None
    store.audit.append(actor=actor, act="wal.replay", subject=f"segment:{name}",
                       details={"spans": str(queued.spans), "queued_as": queued.token})
    return Replayed(segment=name, spans=queued.spans)


def _actor(body: ReplayRequest, request: Request) -> str:
    return acting_as(request, body.actor, "who is replaying the segment")


@router.get("/quarantine", summary="Segments set aside because the store refused their data", response_model=Page[QuarantinedSegment])
def list_quarantine(writer: BatchWriter = Depends(get_writer)) -> Page[QuarantinedSegment]:
    return Page.of(writer.quarantine.entries())


@router.post("/quarantine/replay", summary="Queue every quarantined segment again", response_model=Page[Replayed],
             responses={400: {"description": "missing actor"}})
def replay_all(body: ReplayRequest, request: Request, writer: BatchWriter = Depends(get_writer),
               store: Store = Depends(get_store)) -> Page[Replayed]:
    actor = _actor(body, request)
    return Page.of([_replay(writer, store, entry.segment, actor) for entry in writer.quarantine.entries()])


@router.post("/quarantine/{segment}/replay", summary="Queue one quarantined segment again", response_model=Replayed,
             responses={400: {"description": "missing actor"}, 404: {"description": "no such segment"}})
def replay_one(segment: str, body: ReplayRequest, request: Request, writer: BatchWriter = Depends(get_writer),
               store: Store = Depends(get_store)) -> Replayed:
    return _replay(writer, store, segment, _actor(body, request))
