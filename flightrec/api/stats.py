"""Counts of what is queryable now, and of what intake redacted on the way in."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import Field

from flightrec.api.deps import get_pipeline, get_store
from flightrec.collector import IngestPipeline
from flightrec.collector.redact import RedactionCounts
from flightrec.store import Store, StoreStats

router = APIRouter(tags=["stats"])


class Stats(StoreStats):
    """The store's counts, and redaction's since the server started (in memory, as Prometheus counters)."""

    redaction: RedactionCounts = Field(description="matches replaced at intake per signal and rule")


@router.get("/stats", summary="Counts of what is queryable now, and of what intake redacted", response_model=Stats)
def stats(store: Store = Depends(get_store), pipeline: IngestPipeline = Depends(get_pipeline)) -> Stats:
    return Stats(**store.stats().model_dump(), redaction=pipeline.redaction_counts())
