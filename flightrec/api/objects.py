"""Business objects: lists, their spans across traces and agents, and their stories."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from flightrec.api.names import split_as_sent
from flightrec.auth import principal_of, tenant_of
from flightrec.stories import ObjectSummary, Story, narrate, object_summary, story_html
from flightrec.store import ObjectRef, SpanRecord, Store
from flightrec.store.models import INGEST_PRINCIPAL

router = APIRouter(tags=["objects"])
NOT_FOUND = {404: {"description": "no span names this object"}}


class ObjectSpans(BaseModel):
    object: ObjectRef
    spans: list[SpanRecord]


RunsQuery = Query(50, ge=1, le=1000, description="tell the latest this many runs (traces) of the object")


def object_ref(request: Request, type: str, id: str) -> ObjectRef:
    """The object the path names; either part may hold any text (a ``/`` in the type sent as ``%2F``)."""
    type, id = split_as_sent(request, type, id)
    return ObjectRef(type=type.strip().lower(), id=id.strip())


def _spans_or_404(store: Store, obj: ObjectRef, tenant: str, runs: int | None = None) -> list[SpanRecord]:
    """The object's spans (of ``tenant`` only, when the reader is scoped to one); 404 when none."""
    spans = store.object_spans(obj=obj, runs=runs)
    if tenant:
        spans = [span for span in spans if span.tenant == tenant]
    if not spans:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no spans linked to {obj}: check the type and id")
    return spans


def _story(store: Store, obj: ObjectRef, runs: int, tenant: str) -> Story:
    spans = _spans_or_404(store, obj, tenant, runs)
    runs_total = None if tenant else store.object_run_count(obj=obj)  # scoped: count only the runs it may see
    return story_of(store, obj, spans, runs_total)


def story_of(store: Store, obj: ObjectRef, spans: list[SpanRecord], runs_total: int | None) -> Story:
    """Narrate these spans of the object, with what the store knows of them (undos, ingest tokens)."""
    actions = [f"{span.trace_id}:{span.span_id}" for span in spans if span.operation == "action"]
    verified = set(store.actions.undone(action_ids=actions))  # an ingested "undone" is a claim, not a record
    return narrate(obj, spans, runs_total=runs_total, verified_undos=verified, speakers=_speakers(store, spans))


def _speakers(store: Store, spans: list[SpanRecord]) -> dict[str, set[str]]:
    """What each ingest token named on these spans speaks for (nothing, once unknown)."""
    out: dict[str, set[str]] = {}
    for name in {span.resource_attributes.get(INGEST_PRINCIPAL, "") for span in spans} - {""}:
        principal = store.principals.get(name=name)
        out[name] = set(principal.agents) | set(principal.services) if principal is not None else set()
    return out


@router.get("/objects", summary="Recently touched business objects, with their last status", response_model=Page[ObjectSummary])
def list_objects(
    type: str = Query("", description="only objects of this type (ticket, order, ...)"),
    q: str = Query("", description="only objects whose id contains this text"),
    agent: str = Query("", description="only objects this agent touched (each still lists every agent that did)"),
    limit: int = Query(50, ge=1, le=1000, description="at most this many"),
    tenant: str = Depends(tenant_of),
    store: Store = Depends(get_store),
) -> Page[ObjectSummary]:
    activity = store.recent_objects(object_type=type.strip().lower(), text=q.strip(), agent=agent.strip(),
                                    limit=limit, tenant=tenant)
    return Page.of([object_summary(entry) for entry in activity])


@router.get(
    "/objects/{type}/{id:text}/spans",
    summary="Every span linked to a business object (and their descendants), time-ordered",
    response_model=ObjectSpans,
    responses=NOT_FOUND,
)
def object_spans(obj: ObjectRef = Depends(object_ref), tenant: str = Depends(tenant_of),
                 store: Store = Depends(get_store)) -> ObjectSpans:
    return ObjectSpans(object=obj, spans=_spans_or_404(store, obj, tenant))


@router.get(
    "/objects/{type}/{id:text}/story",
    summary="The object's history narrated: summary, steps, outcome",
    response_model=Story,
    responses=NOT_FOUND,
)
def object_story(obj: ObjectRef = Depends(object_ref), runs: int = RunsQuery, tenant: str = Depends(tenant_of),
                 store: Store = Depends(get_store)) -> Story:
    return _story(store, obj, runs, tenant)


@router.get(
    "/objects/{type}/{id:text}/story.html",
    summary="The story as a self-contained, printable HTML file",
    response_class=HTMLResponse,
    responses=NOT_FOUND,
)
def object_story_html(
    request: Request, obj: ObjectRef = Depends(object_ref), runs: int = RunsQuery, store: Store = Depends(get_store)
) -> HTMLResponse:
    """An export of evidence: audited (who took which object's story, and how many runs of it)."""
    story = _story(store, obj, runs, tenant_of(request))
    store.audit.append(actor=principal_of(request).name, act="story.export", subject=f"{obj.type}:{obj.id}",
                       details={"runs": str(len(story.traces)), "runs_total": str(story.runs_total)})
    filename = f"story-{story.object.type}-{story.object.id}.html"
    return HTMLResponse(story_html(story), headers={"Content-Disposition": content_disposition("inline", filename)})


def content_disposition(disposition: str, filename: str) -> str:
    """A Content-Disposition value safe for any file name (RFC 6266): printable ASCII only, never CR or LF.

    ``filename`` is an ASCII stand-in (anything else, quotes, slashes and backslashes become ``_``);
    ``filename*`` carries the real name, UTF-8 and percent-encoded (RFC 5987).
    """
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\/' else "_" for char in filename)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
