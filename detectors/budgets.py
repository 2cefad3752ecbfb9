"""Budgets: what agents and business objects cost over the window, against set limits."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from flightrec.detectors.context import PassContext, Runs, cost_unknown, examples, unpriced_calls
from flightrec.detectors.models import Finding
from flightrec.store import Store


class BudgetConfig(BaseModel):
    agent_usd: dict[str, float] = Field(default_factory=dict, description="total USD per agent over the window")
    default_agent_usd: float | None = Field(default=None, description="the same for agents not listed (None: off)")
    run_usd: float | None = Field(default=0.05, description="mean USD per run of an agent (over its last runs)")
    recent_runs: int = Field(default=50, ge=5, description="runs the per-run mean is taken over")
    object_usd: float | None = Field(default=5.0, description="total USD per business object over the window")


class BudgetDetector:
    """Spend against budgets. Costs are sums of known costs: where LLM calls have no price the spend
    is at least that, and an over-budget finding says "cost unknown for N calls". A known spend
    under its budget with unpriced calls pages nobody: the unknown share shows in the rollups
    (``unpriced_calls``), where triage reads it."""

    name = "budgets"

    def __init__(self, store: Store, config: BudgetConfig | None = None) -> None:
        self.store = store
        self.config = config or BudgetConfig()

    def detect(self, ctx: PassContext) -> list[Finding]:
        findings = []
        for agent, runs in ctx.by_agent.items():
            limit = self.config.agent_usd.get(agent, self.config.default_agent_usd)
            if limit is not None:
                findings += self._agent_total(agent, runs, limit)
            if self.config.run_usd is not None and len(runs) >= self.config.recent_runs:
                findings += self._run_mean(agent, runs, self.config.run_usd)
        if self.config.object_usd is not None:
            for obj, usd, runs_count, unknown in self.store.signals.object_costs(
                since=ctx.since, until=ctx.until, min_usd=self.config.object_usd
            ):
                note = f" (at least: {cost_unknown(unknown)})" if unknown else ""
                findings.append(Finding(
                    detector=self.name, dedup_key=f"{self.name}:object:{obj}", severity="warning",
                    summary=(f"{obj.replace(':', ' ', 1)} cost {usd:,.2f} USD{note} over {runs_count} runs, "
                             f"over the per-object budget of {self.config.object_usd:,.2f} USD"),
                    details={"object": obj, "spent_usd": f"{usd:.4f}", "unpriced_calls": str(unknown)}, objects=[obj],
                ))
        return findings

    def _agent_total(self, agent: str, runs: Runs, limit: float) -> list[Finding]:
        total, unknown = float(runs["cost_usd"].sum()), unpriced_calls(runs)
        details = {"spent_usd": f"{total:.4f}", "budget_usd": f"{limit:.4f}", "unpriced_calls": str(unknown)}
        if total > limit:
            traces, objects = examples(runs, runs["cost_usd"] >= np.percentile(runs["cost_usd"], 90))
            note = f" (at least: {cost_unknown(unknown)})" if unknown else ""
            return [Finding(
                detector=self.name, dedup_key=f"{self.name}:agent:{agent}", agent=agent, severity="error",
                summary=f"{agent} spent {total:,.2f} USD{note} in the window, over its budget of {limit:,.2f} USD",
                details=details, traces=traces, objects=objects,
            )]
        return []

    def _run_mean(self, agent: str, runs: Runs, budget: float) -> list[Finding]:
        recent = np.argsort(-runs["start_ms"])[: self.config.recent_runs]
        mask = np.zeros(len(runs), dtype=bool)
        mask[recent] = True
        last = runs.where(mask)
        mean, unknown = float(last["cost_usd"].mean()), unpriced_calls(last)
        details = {"mean_run_usd": f"{mean:.4f}", "budget_usd": f"{budget:.4f}", "unpriced_calls": str(unknown)}
        if mean > budget:
            traces, objects = examples(runs, mask)
            note = f" (at least: {cost_unknown(unknown)})" if unknown else ""
            return [Finding(
                detector=self.name, dedup_key=f"{self.name}:run:{agent}", agent=agent, severity="warning",
                summary=(f"{agent}'s last {len(recent)} runs cost {mean:,.3f} USD each on average{note}, "
                         f"over the per-run budget of {budget:,.3f} USD"),
                details=details, traces=traces, objects=objects,
            )]
        return []
