"""Findings, alerts and their lifecycle, as detectors, the pager and the API see them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Severity = Literal["critical", "error", "warning", "info"]
AlertStatus = Literal["pending", "firing", "resolved"]


class Finding(BaseModel):
    """What one detector saw in one pass: a candidate alert, identified by its dedup key."""

    detector: str
    dedup_key: str = Field(description="same problem, same key: pass after pass, trigger and resolve")
    agent: str = ""
    severity: Severity = "warning"
    summary: str = Field(description="one sentence for the pager; <= 1024 characters")
    details: dict[str, str] = Field(default_factory=dict)
    traces: list[str] = Field(default_factory=list, description="example trace ids")
    objects: list[str] = Field(default_factory=list, description="example objects (type:id) whose stories show it")


class Alert(BaseModel):
    """A finding's life: pending until it has held for its detector's ``for`` time, firing, then resolved."""

    id: str
    detector: str
    agent: str
    status: AlertStatus
    severity: Severity
    summary: str
    dedup_key: str
    group: str = Field(description="alerts that belong together (same agent), for grouped notifications")
    started_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    details: dict[str, str] = Field(default_factory=dict)
    traces: list[str] = Field(default_factory=list)
    objects: list[str] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict, description="triage view and example stories")


class AlertTransition(BaseModel):
    """What a detector pass changed: the pager is told about these, and only these."""

    alert: Alert
    change: Literal["fired", "resolved"]
