"""Detector passes, the alerts they raise, and the rollups triage and governance read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from flightrec.detectors.governance import FlowGovernance, Rollup, govern, rollups_from_columns
from flightrec.detectors.models import Alert
from flightrec.detectors.runner import DetectorRunner, PassResult
from flightrec.api.deps import get_detectors, get_store
from flightrec.api.envelope import Page
from flightrec.store import Store

router = APIRouter(tags=["alerts"])


class AlertList(BaseModel):
    alerts: list[Alert]


@router.post("/detectors/run", summary="Run one detector pass now; answers the alerts it fired or resolved",
             response_model=PassResult)
def run_detectors(detectors: DetectorRunner = Depends(get_detectors)) -> PassResult:
    return detectors.run_pass()


@router.get("/alerts", summary="Alerts, newest first", response_model=AlertList)
def list_alerts(
    status: Literal["", "pending", "firing", "resolved"] = Query("", description="only alerts in this state"),
    limit: int = Query(200, ge=1, le=10_000),
    detectors: DetectorRunner = Depends(get_detectors),
) -> AlertList:
    return AlertList(alerts=detectors.book.list(status=status, limit=limit))


@router.get("/rollups", summary="Golden signals per agent, flow, model, prompt version and time bucket",
            response_model=Page[Rollup])
def rollups(
    hours: float = Query(24.0, gt=0, le=24 * 90, description="window, ending now"),
    bucket_s: int = Query(900, ge=60, le=86_400, description="bucket size in seconds"),
    store: Store = Depends(get_store),
) -> Page[Rollup]:
    until = datetime.now(tz=timezone.utc)
    columns = store.signals.rollups(since=until - timedelta(hours=hours), until=until, bucket_s=bucket_s)
    return Page.of(rollups_from_columns(columns))


@router.get("/governance", summary="Per flow: corrections by people, guardrail blocks, mode mix, next step",
            response_model=Page[FlowGovernance])
def governance(
    hours: float = Query(24.0 * 7, gt=0, le=24 * 90, description="window, ending now"),
    store: Store = Depends(get_store),
) -> Page[FlowGovernance]:
    until = datetime.now(tz=timezone.utc)
    columns = store.signals.rollups(since=until - timedelta(hours=hours), until=until, bucket_s=86_400)
    return Page.of(govern(rollups_from_columns(columns)))
