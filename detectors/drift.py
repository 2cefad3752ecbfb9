"""Baseline drift: a metric leaves its robust rolling baseline and stays out for a while."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from detectors.context import PassContext, Runs, examples
from detectors.models import Finding
from detectors.stats import robust_z

METRICS = (
    ("error rate", lambda runs: (runs["failed"] > 0).astype(float), "mean"),
    ("p95 latency (ms)", lambda runs: runs["duration_ms"], "p95"),
    ("cost per run (USD)", lambda runs: runs["cost_usd"], "mean"),
)


class DriftConfig(BaseModel):
    buckets: int = Field(default=24, ge=8, description="time buckets the window is cut into, per agent")
    min_runs_per_bucket: int = Field(default=8, ge=1, description="buckets with fewer runs are not judged")
    min_history: int = Field(default=6, ge=3, description="baseline buckets needed before judging")
    z: float = Field(default=4.0, gt=0, description="robust z-score that counts as out of baseline")
    min_relative_change: float = Field(default=0.5, ge=0, description="and at least this change vs the baseline")
    for_buckets: int = Field(default=3, ge=1, description="consecutive latest buckets out before firing (the 'for')")


def _aggregate(values: np.ndarray, how: str) -> float:
    return float(np.percentile(values, 95)) if how == "p95" else float(values.mean())


class BaselineDriftDetector:
    """Per agent and metric: the latest buckets against the median/MAD of the earlier ones."""

    name = "baseline_drift"

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()

    def detect(self, ctx: PassContext) -> list[Finding]:
        findings = []
        for agent, runs in ctx.by_agent.items():
            findings.extend(self._agent(agent, runs))
        return findings

    def _series(self, runs: Runs) -> list[np.ndarray]:
        start = runs["start_ms"]
        edges = np.linspace(start.min(), start.max() + 1, self.config.buckets + 1)
        index = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, self.config.buckets - 1)
        return [index == b for b in range(self.config.buckets) if (index == b).sum() >= self.config.min_runs_per_bucket]

    def _agent(self, agent: str, runs: Runs) -> list[Finding]:
        config = self.config
        buckets = self._series(runs)
        if len(buckets) < config.min_history + config.for_buckets:
            return []
        findings = []
        for label, metric, how in METRICS:
            values = metric(runs)
            series = np.array([_aggregate(values[mask], how) for mask in buckets])
            baseline, latest = series[: -config.for_buckets], series[-config.for_buckets :]
            z = robust_z(latest, baseline)
            reference = float(np.median(baseline))
            change = (latest - reference) / reference if reference > 0 else np.where(latest > 0, np.inf, 0.0)
            if not (np.all(z >= config.z) and np.all(change >= config.min_relative_change)):
                continue
            recent = np.zeros(len(runs), dtype=bool)
            for mask in buckets[-config.for_buckets :]:
                recent |= mask
            traces, objects = examples(runs, recent)
            findings.append(Finding(
                detector=self.name, dedup_key=f"{self.name}:{agent}:{label}", agent=agent, severity="warning",
                summary=(f"{agent}'s {label} drifted from its baseline {reference:,.4g} to {latest[-1]:,.4g} "
                         f"over the last {config.for_buckets} periods (robust z {z.min():.1f}+)"),
                details={"metric": label, "baseline": f"{reference:.4g}", "latest": ", ".join(f"{v:.4g}" for v in latest)},
                traces=traces, objects=objects,
            ))
        return findings
