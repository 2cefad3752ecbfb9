"""Business objects: every span that touched one, across traces and agents."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel

from flightrec.api.deps import get_store
from store import ObjectRef, SpanRecord, Store

router = APIRouter(tags=["objects"])


class ObjectSpans(BaseModel):
    object: ObjectRef
    spans: list[SpanRecord]


@router.get(
    "/objects/{type}/{id}/spans",
    summary="Every span linked to a business object (and their descendants), time-ordered",
    response_model=ObjectSpans,
    responses={404: {"description": "no span names this object"}},
)
def object_spans(type: str, id: str, store: Store = Depends(get_store)) -> ObjectSpans:
    obj = ObjectRef(type=type.strip().lower(), id=id.strip())
    spans = store.object_spans(obj=obj)
    if not spans:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no spans linked to {obj}")
    return ObjectSpans(object=obj, spans=spans)
