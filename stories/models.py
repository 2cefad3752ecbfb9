"""The story a person reads: a summary, ordered steps, an outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from flightrec.store.models import ObjectRef

StepKind = Literal["agent", "llm", "tool", "retrieval", "guardrail", "human", "action", "undo", "other"]
Severity = Literal["info", "notice", "warning", "critical"]


class StoryStep(BaseModel):
    """One plain sentence about one thing that happened, with the evidence behind it."""

    time: datetime
    agent: str
    kind: StepKind
    sentence: str
    severity: Severity = "info"
    trace_id: str
    span_id: str
    details: dict[str, str] = Field(default_factory=dict, description="readable facts behind the sentence")


class Story(BaseModel):
    """Everything the agents did to one business object, across traces and agents."""

    object: ObjectRef
    summary: str
    steps: list[StoryStep]
    outcome: str
    status: str = Field(description="completed, failed, blocked, overridden, pending or undone")
    traces: list[str]
    runs_total: int = Field(description="runs that ever touched the object; the story tells the latest len(traces)")
    agents: list[str]
    first_seen: datetime
    last_seen: datetime


class ObjectSummary(BaseModel):
    """One business object in a list: when it was last touched, by whom, and how that ended."""

    type: str
    id: str
    last_seen: datetime
    traces: int
    agents: list[str]
    last_status: str
