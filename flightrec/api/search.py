"""Search: objects, agents and traces by id or text."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from flightrec.stories import object_summary
from flightrec.store import Store

router = APIRouter(tags=["search"])
HEX = re.compile(r"^[0-9a-fA-F]{6,32}$")


class SearchHit(BaseModel):
    kind: Literal["object", "agent", "trace"]
    key: str
    label: str
    detail: str


@router.get("/search", summary="Find objects, agents and traces by id or text, runs by session or user id",
            response_model=Page[SearchHit])
def search(
    q: str = Query(..., min_length=1, max_length=200, description="an id, part of one, or text"),
    limit: int = Query(10, ge=1, le=100, description="at most this many per kind"),
    store: Store = Depends(get_store),
) -> Page[SearchHit]:
    text = q.strip()
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for entry in store.recent_objects(text=text, limit=limit):
        summary = object_summary(entry)
        key = f"{entry.type}:{entry.id}"
        seen.add(key)
        hits.append(SearchHit(kind="object", key=key, label=f"{entry.type} {entry.id}",
                              detail=f"{summary.last_status} · {entry.traces} run{'s' if entry.traces != 1 else ''} · {', '.join(entry.agents)}"))
    for ref in store.objects_by_span_text(text=text, limit=limit):
        if str(ref) not in seen:
            hits.append(SearchHit(kind="object", key=str(ref), label=f"{ref.type} {ref.id}", detail=f"a run mentions “{text}”"))
    for agent in store.find_agents(text=text, limit=limit):
        hits.append(SearchHit(kind="agent", key=agent, label=agent, detail="agent"))
    for run in store.runs.by_session_or_user(value=text, limit=limit):
        who = f"session {run.session_id}" if run.session_id == text else f"user {run.user_id}"
        hits.append(SearchHit(kind="trace", key=run.trace_id, label=f"run {run.name}",
                              detail=f"{who} · {run.agent or run.service} · {run.started_at:%Y-%m-%d %H:%M}"))
    if HEX.match(text):
        for trace_id in store.find_traces(id_prefix=text, limit=limit):
            hits.append(SearchHit(kind="trace", key=trace_id, label=f"trace {trace_id[:12]}…", detail="trace"))
    return Page.of(hits)
