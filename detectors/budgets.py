"""Budgets: what agents and business objects cost over the window, against set limits."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from flightrec.detectors.context import PassContext, examples
from flightrec.detectors.models import Finding
from flightrec.store import Store


class BudgetConfig(BaseModel):
    agent_usd: dict[str, float] = Field(default_factory=dict, description="total USD per agent over the window")
    default_agent_usd: float | None = Field(default=None, description="the same for agents not listed (None: off)")
    run_usd: float | None = Field(default=0.05, description="mean USD per run of an agent (over its last runs)")
    recent_runs: int = Field(default=50, ge=5, description="runs the per-run mean is taken over")
    object_usd: float | None = Field(default=5.0, description="total USD per business object over the window")


class BudgetDetector:
    name = "budgets"

    def __init__(self, store: Store, config: BudgetConfig | None = None) -> None:
        self.store = store
        self.config = config or BudgetConfig()

    def detect(self, ctx: PassContext) -> list[Finding]:
        findings = []
        for agent, runs in ctx.by_agent.items():
            total = float(runs["cost_usd"].sum())
            limit = self.config.agent_usd.get(agent, self.config.default_agent_usd)
            if limit is not None and total > limit:
                traces, objects = examples(runs, runs["cost_usd"] >= np.percentile(runs["cost_usd"], 90))
                findings.append(Finding(
                    detector=self.name, dedup_key=f"{self.name}:agent:{agent}", agent=agent, severity="error",
                    summary=f"{agent} spent {total:,.2f} USD in the window, over its budget of {limit:,.2f} USD",
                    details={"spent_usd": f"{total:.4f}", "budget_usd": f"{limit:.4f}"}, traces=traces, objects=objects,
                ))
            if self.config.run_usd is not None and len(runs) >= self.config.recent_runs:
                recent = np.argsort(-runs["start_ms"])[: self.config.recent_runs]
                mean = float(runs["cost_usd"][recent].mean())
                if mean > self.config.run_usd:
                    mask = np.zeros(len(runs), dtype=bool)
                    mask[recent] = True
                    traces, objects = examples(runs, mask)
                    findings.append(Finding(
                        detector=self.name, dedup_key=f"{self.name}:run:{agent}", agent=agent, severity="warning",
                        summary=(f"{agent}'s last {len(recent)} runs cost {mean:,.3f} USD each on average, "
                                 f"over the per-run budget of {self.config.run_usd:,.3f} USD"),
                        details={"mean_run_usd": f"{mean:.4f}", "budget_usd": f"{self.config.run_usd:.4f}"},
                        traces=traces, objects=objects,
                    ))
        if self.config.object_usd is not None:
            for obj, usd, runs_count in self.store.signals.object_costs(
                since=ctx.since, until=ctx.until, min_usd=self.config.object_usd
            ):
                findings.append(Finding(
                    detector=self.name, dedup_key=f"{self.name}:object:{obj}", severity="warning",
                    summary=(f"{obj.replace(':', ' ', 1)} cost {usd:,.2f} USD over {runs_count} runs, "
                             f"over the per-object budget of {self.config.object_usd:,.2f} USD"),
                    details={"object": obj, "spent_usd": f"{usd:.4f}"}, objects=[obj],
                ))
        return findings
