"""Liveness and the WAL backlog (open, for health checks)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from collector.pipeline import IntakeMetrics
from collector.writer import WriterMetrics
from flightrec.api.deps import get_runtime
from flightrec.runtime import Runtime

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    backlog_spans: int
    store: str
    intake: IntakeMetrics
    writer: WriterMetrics


@router.get("/health", summary="Liveness, WAL backlog and ingest counters", response_model=Health)
def health(runtime: Runtime = Depends(get_runtime)) -> Health:
    assert runtime.wal and runtime.pipeline and runtime.writer
    writer = runtime.writer.metrics
    degraded = writer.insert_failures > 0 and runtime.wal.pending_segments() > 1
    return Health(
        status="degraded" if degraded else "ok",
        backlog_spans=runtime.wal.backlog_spans,
        store=runtime.settings.store_config().target().describe(),
        intake=runtime.pipeline.metrics,
        writer=writer,
    )
