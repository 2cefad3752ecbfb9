"""Business objects: lists, their spans across traces and agents, and their stories."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from stories import ObjectSummary, Story, narrate, object_summary, story_html
from store import ObjectRef, SpanRecord, Store

router = APIRouter(tags=["objects"])
NOT_FOUND = {404: {"description": "no span names this object"}}


class ObjectSpans(BaseModel):
    object: ObjectRef
    spans: list[SpanRecord]


RunsQuery = Query(50, ge=1, le=1000, description="tell the latest this many runs (traces) of the object")


def _spans_or_404(store: Store, type: str, id: str, runs: int | None = None) -> tuple[ObjectRef, list[SpanRecord]]:
    obj = ObjectRef(type=type.strip().lower(), id=id.strip())
    spans = store.object_spans(obj=obj, runs=runs)
    if not spans:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no spans linked to {obj}: check the type and id")
    return obj, spans


def _story(store: Store, type: str, id: str, runs: int) -> Story:
    obj, spans = _spans_or_404(store, type, id, runs)
    return narrate(obj, spans, runs_total=store.object_run_count(obj=obj))


@router.get("/objects", summary="Recently touched business objects, with their last status", response_model=Page[ObjectSummary])
def list_objects(
    type: str = Query("", description="only objects of this type (ticket, order, ...)"),
    q: str = Query("", description="only objects whose id contains this text"),
    limit: int = Query(50, ge=1, le=1000, description="at most this many"),
    store: Store = Depends(get_store),
) -> Page[ObjectSummary]:
    activity = store.recent_objects(object_type=type.strip().lower(), text=q.strip(), limit=limit)
    return Page.of([object_summary(entry) for entry in activity])


@router.get(
    "/objects/{type}/{id}/spans",
    summary="Every span linked to a business object (and their descendants), time-ordered",
    response_model=ObjectSpans,
    responses=NOT_FOUND,
)
def object_spans(type: str, id: str, store: Store = Depends(get_store)) -> ObjectSpans:
    obj, spans = _spans_or_404(store, type, id)
    return ObjectSpans(object=obj, spans=spans)


@router.get(
    "/objects/{type}/{id}/story",
    summary="The object's history narrated: summary, steps, outcome",
    response_model=Story,
    responses=NOT_FOUND,
)
def object_story(type: str, id: str, runs: int = RunsQuery, store: Store = Depends(get_store)) -> Story:
    return _story(store, type, id, runs)


@router.get(
    "/objects/{type}/{id}/story.html",
    summary="The story as a self-contained, printable HTML file",
    response_class=HTMLResponse,
    responses=NOT_FOUND,
)
def object_story_html(type: str, id: str, runs: int = RunsQuery, store: Store = Depends(get_store)) -> HTMLResponse:
    story = _story(store, type, id, runs)
    filename = f"story-{story.object.type}-{story.object.id}.html".replace('"', "")
    return HTMLResponse(story_html(story), headers={"Content-Disposition": f'inline; filename="{filename}"'})
