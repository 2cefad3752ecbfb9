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


class ReadBack(BaseModel):
    """How to check an undo took: read ``path`` on the same system; every field of ``expect`` must match."""

    path: str = Field(max_length=2000)
    expect: dict[str, Any] = Field(min_length=1)


class UndoCall(BaseModel):
    """Exactly what executing a step will do: an operation on a registered system of record."""

    kind: Literal["http", "handler"]
    system: str = Field(default="", description="the registered system of record it calls")
    target: str = Field(description="path on the system (POST) for http, handler name for handler")
    args: dict[str, Any]
    idempotency_key: str
    check: ReadBack | None = Field(default=None, description="the read-back that says whether the undo took")


class PlanStep(BaseModel):
    action_id: str
    status: StepStatus
    reason: str = ""
    action: str
    agent: str
    time: datetime
    risk: str = Field(description="from the operator's policy for this action and amount")
    risk_reason: str = ""
    reported_risk: str = Field(default="", description="the risk the agent's span reported (not used to decide)")
    objects: list[str]
    amount: str = ""
    system: str = ""
    fields: list[str] | None = Field(default=None, description="what the action changed (type:id#field), if declared")
    call: UndoCall | None = None
    attempts: int = 0
    finished_at: datetime | None = None
    restored: bool | None = Field(default=None, description="after the undo: the read-back matched (None: no check)")
    check_result: str = ""


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

    def tally(self) -> dict[str, int]:
        """Steps by status, plus how many done steps were read back as restored / not restored."""
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.status] = counts.get(step.status, 0) + 1
        counts["restored"] = sum(1 for step in self.steps if step.restored is True)
        counts["not_restored"] = sum(1 for step in self.steps if step.restored is False)
        return counts


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
