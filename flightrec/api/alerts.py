"""Detector passes and the alerts they raise."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from detectors.models import Alert
from detectors.runner import DetectorRunner, PassResult
from flightrec.api.deps import get_detectors

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
