"""Loops: the same tool called with the same arguments over and over in one run."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from flightrec.detectors.context import PassContext
from flightrec.detectors.models import Finding
from flightrec.store import Store
from flightrec.store.signals import LoopRow


class LoopConfig(BaseModel):
    """When repeated identical tool calls count as a loop."""

    min_calls: int = Field(
        default=6, ge=2, description="identical calls in one run that make a loop (retries excluded)"
    )


class LoopDetector:
    """Runs that repeat one tool call with identical arguments at least ``min_calls`` times, per agent."""

    name = "loops"

    def __init__(self, store: Store, config: LoopConfig | None = None) -> None:
        self.store = store
        self.config = config or LoopConfig()

    def detect(self, ctx: PassContext) -> list[Finding]:
        rows = self.store.signals.repeated_tool_calls(since=ctx.since, until=ctx.until, min_calls=self.config.min_calls)
        run_objects = self._run_objects(ctx, {row.trace_id for row in rows})
        by_agent: dict[str, list[LoopRow]] = {}
        for row in rows:
            by_agent.setdefault(row.agent, []).append(row)
        findings = []
        for agent, loops in by_agent.items():
            worst = max(loops, key=lambda row: row.calls)
            # The business object: the tool call's own link, else the one the run (its root) names.
            objects = [row.object or run_objects.get(row.trace_id, "") for row in loops[:3]]
            findings.append(Finding(
                detector=self.name, dedup_key=f"{self.name}:{agent}", agent=agent,
                severity="error" if worst.calls >= 3 * self.config.min_calls else "warning",
                summary=(f"{agent} looped: it called {worst.tool} with the same arguments {worst.calls} times "
                         f"in one run ({len(loops)} run(s) looping in this window)"),
                details={"tool": worst.tool, "arguments": worst.arguments[:300], "runs": str(len(loops))},
                traces=[row.trace_id for row in loops[:3]],
                objects=list(dict.fromkeys(obj for obj in objects if obj)),
            ))
        return findings

    @staticmethod
    def _run_objects(ctx: PassContext, trace_ids: set[str]) -> dict[str, str]:
        """The object each of these runs names on its root span, from the pass's runs."""
        if not trace_ids or not len(ctx.runs):
            return {}
        chosen = np.isin(ctx.runs["trace_id"], list(trace_ids))
        return {str(t): str(o) for t, o in zip(ctx.runs["trace_id"][chosen], ctx.runs["object"][chosen], strict=True)}
