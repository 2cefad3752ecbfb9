"""Version regression: when an agent's model, prompt or agent version changes, did it get worse?"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from flightrec.detectors.context import PerAgentDetector, Runs, cost_unknown, examples, priced, unpriced_calls
from flightrec.detectors.models import Finding
from flightrec.detectors.stats import proportion_worse, values_worse

# (label, how a run counts as bad) for the rates compared before and after
RATES = (
    ("failed runs", lambda runs: runs["failed"] > 0),
    ("runs overridden or rejected by people", lambda runs: (runs["overrides"] + runs["rejects"]) > 0),
    ("runs blocked by guardrails", lambda runs: runs["blocks"] > 0),
)
VALUES = (("latency", "duration_ms", "ms"), ("cost per run", "cost_usd", "USD"))


class VersionRegressionConfig(BaseModel):
    min_runs: int = Field(default=30, ge=5, description="runs needed on each side of the change")
    p_value: float = Field(default=0.001, gt=0, lt=1, description="significance of a worsening")
    min_rate_increase: float = Field(default=0.05, ge=0, description="smallest rate increase that matters (5 points)")
    min_value_ratio: float = Field(default=1.3, ge=1, description="smallest median ratio that matters for latency/cost")


def _version(runs: Runs, index: int) -> str:
    parts = (runs["model"][index], runs["prompt_version"][index], runs["agent_version"][index])
    return " / ".join(str(part) for part in parts if part)


class VersionRegressionDetector(PerAgentDetector):
    """Compares the runs before and after an agent's latest version change."""

    name = "version_regression"

    def __init__(self, config: VersionRegressionConfig | None = None) -> None:
        self.config = config or VersionRegressionConfig()

    def judge_agent(self, agent: str, runs: Runs) -> Finding | None:
        order = np.argsort(runs["start_ms"], kind="stable")
        runs = runs.where(order)
        versions = np.array([_version(runs, i) for i in range(len(runs))], dtype=object)
        if len(set(versions)) < 2:
            return None
        newest = versions[-1]
        first_new = int(np.argmax(versions == newest))
        if first_new == 0:
            return None
        previous = versions[first_new - 1]
        before, after = runs.where(versions == previous), runs.where(versions == newest)
        if min(len(before), len(after)) < self.config.min_runs:
            return None
        worse: list[str] = []
        details: dict[str, str] = {"before": previous, "after": newest, "runs_before": str(len(before)),
                                   "runs_after": str(len(after))}
        for label, bad in RATES:
            hits_before, hits_after = int(bad(before).sum()), int(bad(after).sum())
            rate_before, rate_after = hits_before / len(before), hits_after / len(after)
            p = proportion_worse(hits_before, len(before), hits_after, len(after))
            if p < self.config.p_value and rate_after - rate_before >= self.config.min_rate_increase:
                worse.append(f"{label} {rate_before:.0%} → {rate_after:.0%}")
                details[label] = f"{rate_before:.1%} → {rate_after:.1%} (p={p:.1e})"
        unknown_before, unknown_after = unpriced_calls(before), unpriced_calls(after)
        notes: list[str] = []
        if unknown_before or unknown_after:
            # a run with an unpriced call costs more than it says: compare fully priced runs only
            side = "after" if unknown_after else "before"
            notes.append(f"{cost_unknown(unknown_after or unknown_before)} {side} the change")
            details["cost unknown"] = f"{unknown_before} calls before, {unknown_after} after"
        for label, column, unit in VALUES:
            a, b = before, after
            if column == "cost_usd" and (unknown_before or unknown_after):
                a, b = before.where(priced(before)), after.where(priced(after))
                if min(len(a), len(b)) < self.config.min_runs:
                    details[label] = "not compared: " + notes[0]
                    continue
            median_before, median_after = float(np.median(a[column])), float(np.median(b[column]))
            p = values_worse(a[column], b[column])
            if p < self.config.p_value and median_after >= median_before * self.config.min_value_ratio > 0:
                worse.append(f"median {label} {median_before:,.4g} → {median_after:,.4g} {unit}")
                details[label] = f"median {median_before:,.4g} → {median_after:,.4g} {unit} (p={p:.1e})"
        if not worse:
            if not unknown_after:
                return None
            # a switch to a model with no price is not a cost drop: say what is not known
            traces, objects = examples(after, ~priced(after))
            return Finding(
                detector=self.name, dedup_key=f"{self.name}:{agent}:{previous}->{newest}:cost", agent=agent,
                severity="info",
                summary=(f"{agent} changed {previous} → {newest}: {cost_unknown(unknown_after)} since "
                         f"(no price for the model), so its cost is not compared"),
                details=details, traces=traces, objects=objects,
            )
        bad_after = np.zeros(len(after), dtype=bool)
        for _, bad in RATES:
            bad_after |= bad(after)
        traces, objects = examples(after, bad_after if bad_after.any() else np.ones(len(after), dtype=bool))
        return Finding(
            detector=self.name, dedup_key=f"{self.name}:{agent}:{previous}->{newest}", agent=agent,
            severity="error" if len(worse) > 1 else "warning",
            summary=f"{agent} got worse after changing {previous} → {newest}: " + "; ".join(worse + notes),
            details=details, traces=traces, objects=objects,
        )
