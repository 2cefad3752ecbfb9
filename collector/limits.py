"""What a request may carry: the time window the store can hold and keeps, and how much a refusal says."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

MAX_REASONS = 5  # reasons quoted in one partial_success message
STORE_MAX_NS = 2**63 - 1  # DateTime64(9) ends at 2262-04-11; OTLP times are uint64
DEFAULT_MAX_FUTURE_S = 86_400


class SpanLimits(BaseModel):
    """The time window a span, its end and its events must fall in to be stored."""

    oldest_ns: int = Field(default=0, ge=0, description="earliest start (retention); 0: no limit")
    newest_ns: int = Field(default=STORE_MAX_NS, ge=0, description="latest start, end or event time")

    @classmethod
    def now(cls, *, retention_days: int = 0, max_future_s: int = DEFAULT_MAX_FUTURE_S) -> "SpanLimits":
        """Limits for a request arriving now: within retention, at most ``max_future_s`` ahead."""
        now = time.time_ns()
        oldest = now - retention_days * 86_400 * 1_000_000_000 if retention_days else 0
        return cls(oldest_ns=max(0, oldest), newest_ns=min(STORE_MAX_NS, now + max_future_s * 1_000_000_000))


def time_problem(field: str, value: int, limits: SpanLimits) -> str | None:
    if value > STORE_MAX_NS:
        return f"{field} = {value} is beyond what the store can hold (2262-04-11)"
    if value > limits.newest_ns:
        ahead_s = (value - time.time_ns()) // 1_000_000_000
        return f"{field} is {ahead_s} s in the future, past the allowed clock skew: check the sender's clock"
    return None


def keep_valid(
    items: Any, problem_of: Callable[[Any], str | None], label_of: Callable[[Any, int], str], reasons: list[str]
) -> tuple[int, int]:
    """Remove the items a check refuses from a repeated protobuf field, in place: (kept, removed).

    The first MAX_REASONS refusals are added to ``reasons`` as "<label>: <problem>".
    """
    bad = []
    for index, item in enumerate(items):
        problem = problem_of(item)
        if problem is None:
            continue
        bad.append(index)
        if len(reasons) < MAX_REASONS:
            reasons.append(f"{label_of(item, index)}: {problem}")
    for index in reversed(bad):
        del items[index]
    return len(items), len(bad)
