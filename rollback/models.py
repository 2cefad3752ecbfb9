"""Undo plans and kill switch states, as the API and the console see them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

StepStatus = Literal["reversible", "irreversible", "conflicted", "already_undone", "running", "done", "failed"]
PlanStatus = Literal["awaiting_approval", "ready", "running", "done", "failed"]
ControlStateName = Literal["running", "paused", "throttled", "draining"]


class Selector(BaseModel):
    """Which actions a plan undoes: by agent, object, flow, time window, and how many (newest first)."""

    agent: str = ""
    object: str = Field(default="", description="type:id")
    flow: str = ""
    since: datetime | None = None
    until: datetime | None = None
    last: int = Field(default=10, ge=1, le=10_000)


class UndoCall(BaseModel):
    """Exactly what executing a step will do."""

    kind: Literal["http", "handler"]
    target: str = Field(description="URL for http, handler name for handler")
    args: dict[str, Any]
    idempotency_key: str


class PlanStep(BaseModel):
    action_id: str
    status: StepStatus
    reason: str = ""
    action: str
    agent: str
    time: datetime
    risk: str
    objects: list[str]
    amount: str = ""
    call: UndoCall | None = None
    attempts: int = 0
    finished_at: datetime | None = None


class Approval(BaseModel):
    actor: str
    at: datetime


class UndoPlan(BaseModel):
    """Newest action first; each step reversible, irreversible (why) or conflicted (by whom)."""

    id: str
    author: str
    created_at: datetime
    selector: Selector
    steps: list[PlanStep]
    status: PlanStatus
    requires_approval: bool
    approvals: list[Approval] = Field(default_factory=list)
    version: int = 1
    error: str = ""

    @property
    def runnable_steps(self) -> list[PlanStep]:
        return [step for step in self.steps if step.status in ("reversible", "running", "failed")]


class ControlState(BaseModel):
    """A kill switch: what an agent (or flow) may do now."""

    scope: Literal["agent", "flow"]
    name: str
    state: ControlStateName
    max_per_minute: int = 0
    actor: str = ""
    reason: str = ""
    updated_at: datetime | None = None


class ControlDecision(BaseModel):
    """The answer to an agent asking before it acts."""

    allowed: bool
    state: ControlStateName
    max_per_minute: int = 0
    throttle_key: str = Field(default="", description="what the limit counts: 'agent:<name>' or 'flow:<name>'")
    reason: str = ""
