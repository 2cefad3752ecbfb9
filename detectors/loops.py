"""Loops: the same tool called with the same arguments over and over in one run."""

from __future__ import annotations

from pydantic import BaseModel, Field

from detectors.models import Finding
from store import Store


class LoopConfig(BaseModel):
    min_calls: int = Field(default=6, ge=2, description="identical calls in one run that make a loop (retries excluded)")


class LoopDetector:
    name = "loops"

    def __init__(self, store: Store, config: LoopConfig | None = None) -> None:
        self.store = store
        self.config = config or LoopConfig()

    def detect(self, ctx) -> list[Finding]:  # noqa: ANN001 - PassContext
        rows = self.store.signals.repeated_tool_calls(since=ctx.since, until=ctx.until, min_calls=self.config.min_calls)
        by_agent: dict[str, list] = {}
        for row in rows:
            by_agent.setdefault(row.agent, []).append(row)
        findings = []
        for agent, loops in by_agent.items():
            worst = max(loops, key=lambda row: row.calls)
            findings.append(Finding(
                detector=self.name, dedup_key=f"{self.name}:{agent}", agent=agent,
                severity="error" if worst.calls >= 3 * self.config.min_calls else "warning",
                summary=(f"{agent} looped: it called {worst.tool} with the same arguments {worst.calls} times in one run "
                         f"({len(loops)} run(s) looping in this window)"),
                details={"tool": worst.tool, "arguments": worst.arguments[:300], "runs": str(len(loops))},
                traces=[row.trace_id for row in loops[:3]],
                objects=list(dict.fromkeys(row.object for row in loops[:3] if row.object)),
            ))
        return findings
