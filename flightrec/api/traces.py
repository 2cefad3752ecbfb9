"""Traces by id."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from flightrec.api import names  # noqa: F401 - registers the {param:text} path convertor
from flightrec.api.deps import get_store
from flightrec.auth import tenant_of
from flightrec.store import SpanRecord, Store
from flightrec.store.erasures import ErasureRecord

router = APIRouter(tags=["traces"])
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class TraceView(BaseModel):
    trace_id: str
    spans: list[SpanRecord]
    erasures: list[ErasureRecord] = Field(default_factory=list, description="the spans of this trace whose content "
                                          "was erased on request: when, by which request, which keys")


@router.get(
    "/traces/{trace_id:text}",
    summary="Every span of one trace, time-ordered",
    response_model=TraceView,
    responses={400: {"description": "not a 32-hex-digit trace id"}, 404: {"description": "unknown trace"}},
)
def get_trace(trace_id: str, tenant: str = Depends(tenant_of), store: Store = Depends(get_store)) -> TraceView:
    trace_id = trace_id.lower()
    if not TRACE_ID.match(trace_id):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"trace id {trace_id!r} is not 32 hex digits")
    spans = [span for span in store.trace_spans(trace_id=trace_id) if not tenant or span.tenant == tenant]
    if not spans:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trace {trace_id} in the store")
    erasures = store.erasures.for_spans([(span.trace_id, span.span_id) for span in spans])
    return TraceView(trace_id=trace_id, spans=spans, erasures=erasures)
