"""Health (open, for probes): ``/api/health`` answers 503 when intake is not healthy; ``/live`` only says the process serves."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from flightrec.collector.health import assess
from flightrec.collector.pipeline import IntakeMetrics
from flightrec.collector.quarantine import QuarantineSummary
from flightrec.collector.writer import WriterMetrics
from flightrec.api.deps import get_runtime
from flightrec.leader import LeaderStatus
from flightrec.runtime import Runtime

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    problems: list[str]
    backlog_spans: int
    store: str
    quarantine: QuarantineSummary
    intake: IntakeMetrics
    writer: WriterMetrics
    leader: LeaderStatus


class Liveness(BaseModel):
    status: str


@router.get(
    "/health",
    summary="Intake health (WAL backlog, writer, quarantine), ingest counters and the leader; 503 when intake "
    "is not healthy",
    response_model=Health,
    responses={503: {"model": Health, "description": "degraded or failing: `problems` says why"}},
)
def health(response: Response, runtime: Runtime = Depends(get_runtime)) -> Health:
    assert runtime.wal and runtime.pipeline and runtime.writer and runtime.leader
    settings = runtime.settings
    judged = assess(runtime.pipeline, runtime.wal, runtime.writer, settings.health_policy())
    if judged.status != "ok":
        response.status_code = 503
    return Health(
        status=judged.status,
        problems=judged.problems,
        backlog_spans=runtime.wal.backlog_spans,
        store=settings.store_config().target().describe(),
        quarantine=judged.quarantine,
        intake=runtime.pipeline.metrics,
        writer=runtime.writer.metrics,
        leader=runtime.leader.status(),
    )


@router.get("/health/live", summary="Liveness: the process serves (for restart probes)", response_model=Liveness)
def live() -> Liveness:
    return Liveness(status="live")
