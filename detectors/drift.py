"""Baseline drift: an agent's error rate, latency or cost per run leaves its baseline and stays out.

Each agent's runs in the window are cut into ``buckets`` time buckets by when they ended (as a
latency histogram records a request when it completes: bucketing by start would leave the latest
buckets with only the runs short enough to have finished). The latest ``for_buckets`` buckets,
pooled, are the recent period; the runs of the earlier buckets are the baseline. Per metric:

- error rate: the two-proportion z-score of the recent rate over the baseline rate;
- latency and cost per run: a rank test, the z-score of how often a recent run exceeds a
  baseline run (0.5 when nothing changed). Ranks ignore the shape of the distribution, so
  skewed or two-humped latencies (runs that wait for a person) and single huge runs do not
  disturb it.

The z-score is then divided by the baseline's own overdispersion (``stats.overdispersion``:
how much more the baseline buckets differ from the baseline than sampling explains, robust to
the quarter that differs most, never below 1). Where hours differ from each other more than
sampling explains (daily cycles, bursts), a shift must be that much larger. A metric drifts when
its z-score reaches ``z``, the change is large enough to matter, and the newest half of the
recent period is still worse than the baseline. Pooling the recent period is the ``for``: a
small shift needs all of it to become significant, a large one fires sooner, and a spike
confined to one bucket is diluted. One finding per agent names every metric that drifted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from flightrec.detectors.context import PerAgentDetector, Runs, cost_unknown, examples, unpriced_calls
from flightrec.detectors.models import Finding
from flightrec.detectors.stats import overdispersion as overdispersion_of
from flightrec.detectors.stats import proportion_z, superiority, superiority_z


@dataclass(frozen=True)
class Metric:
    """A golden signal the detector follows: a rate of bad runs or a per-run value."""

    label: str
    column: str
    kind: Literal["rate", "value"]
    unit: str = ""


METRICS = (
    Metric("error rate", "failed", "rate"),
    Metric("latency", "duration_ms", "value", "ms"),
    Metric("cost per run", "cost_usd", "value", "USD"),
)


class DriftConfig(BaseModel):
    """How the window is cut, how much history is needed, and how large a shift must be to fire."""

    buckets: int = Field(default=24, ge=8, description="time buckets the agent's runs are cut into, by run end")
    for_buckets: int = Field(
        default=8, ge=1,
        description="latest buckets pooled as the recent period (the 'for'; a third of the window): a shift must hold",
    )
    min_runs_per_bucket: int = Field(default=8, ge=1, description="baseline buckets with fewer runs are not history")
    min_history: int = Field(default=6, ge=3, description="baseline buckets needed before judging")
    min_runs: int = Field(default=30, ge=5, description="runs needed in the recent period before judging")
    z: float = Field(default=4.0, gt=0, description="z-score (after overdispersion) that counts as out of baseline")
    min_relative_change: float = Field(
        default=0.5, ge=0, description="rates: the recent rate must exceed the baseline rate by this share ..."
    )
    min_rate_increase: float = Field(default=0.02, ge=0, description="... and by this much absolutely (2 points)")
    min_superiority: float = Field(
        default=0.6, gt=0.5, lt=1,
        description="latency, cost: how often a recent run must exceed a baseline run (0.5 means no change)",
    )

    @model_validator(mode="after")
    def _room_for_history(self) -> DriftConfig:
        """The recent period must leave enough buckets for the history."""
        if self.buckets - self.for_buckets < self.min_history:
            raise ValueError("buckets - for_buckets must be at least min_history")
        return self


@dataclass
class _Periods:
    """An agent's runs cut into buckets: which bucket each run ended in, which are recent and history."""

    index: np.ndarray
    recent: np.ndarray
    newest: np.ndarray
    history: list[int]


@dataclass
class _Shift:
    """One metric of one agent, recent period against baseline.

    ``baseline`` and ``recent`` are rates, or medians for values; ``large`` says the change is big
    enough to matter, ``holds`` that the newest half of the recent period is still worse; ``bad``
    marks the runs that show it (failed, or above the baseline's 95th percentile), for examples;
    ``exceeds`` is how often a recent run exceeds a baseline run (values only).
    """

    z: float
    overdispersion: float
    baseline: float
    recent: float
    holds: bool
    large: bool
    bad: np.ndarray
    exceeds: float = 0.0


def _span(ms: float) -> str:
    """A duration for people: minutes under an hour, else hours."""
    hours = ms / 3_600_000
    return f"{hours:.1f} h" if hours >= 1 else f"{ms / 60_000:.0f} min"


def _quantity(value: float, unit: str) -> str:
    """A metric value with its unit; milliseconds of a second or more in seconds."""
    if unit == "ms":
        return f"{value / 1000:,.3g} s" if value >= 1000 else f"{value:,.3g} ms"
    return f"{value:,.3g} {unit}"


class BaselineDriftDetector(PerAgentDetector):
    """Per agent and metric: the recent period's runs against the earlier runs of the window."""

    name = "baseline_drift"

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()

    def judge_agent(self, agent: str, runs: Runs) -> Finding | None:
        """One finding per agent, naming every metric that drifted (one problem, one page)."""
        config = self.config
        ended = runs["start_ms"] + runs["duration_ms"]
        edges = np.linspace(ended.min(), ended.max() + 1, config.buckets + 1)
        index = np.clip(np.searchsorted(edges, ended, side="right") - 1, 0, config.buckets - 1)
        first_recent = config.buckets - config.for_buckets
        recent = index >= first_recent
        newest = index >= config.buckets - max(1, config.for_buckets // 2)
        counts = np.bincount(index, minlength=config.buckets)
        history = [b for b in range(first_recent) if counts[b] >= config.min_runs_per_bucket]
        if len(history) < config.min_history or recent.sum() < config.min_runs:
            return None
        periods = _Periods(index=index, recent=recent, newest=newest, history=history)
        period = _span(float(ended.max() - edges[first_recent]))
        changes: list[str] = []
        details = {"period": period, "runs_baseline": str(int((~recent).sum())), "runs_recent": str(int(recent.sum()))}
        bad = np.zeros(len(runs), dtype=bool)
        unknown = unpriced_calls(runs)
        notes = []
        for metric in METRICS:
            if metric.column == "cost_usd" and unknown:
                # runs with unpriced calls understate their cost: neither a drop nor a rise can be read
                notes.append(cost_unknown(unknown))
                details[metric.label] = "not compared: " + notes[-1]
                continue
            shift = self._rate(runs, metric, periods) if metric.kind == "rate" else self._value(runs, metric, periods)
            if shift.z < config.z or not shift.large or not shift.holds:
                continue
            if metric.kind == "rate":
                changes.append(f"{metric.label} {shift.baseline:.1%} → {shift.recent:.1%} (z {shift.z:.1f})")
            else:
                changes.append(
                    f"median {metric.label} {_quantity(shift.baseline, metric.unit)} → "
                    f"{_quantity(shift.recent, metric.unit)}, a recent run above a baseline run "
                    f"{shift.exceeds:.0%} of the time (z {shift.z:.1f})"
                )
            details[metric.label] = (f"baseline {shift.baseline:.4g}, recent {shift.recent:.4g}, z {shift.z:.2f}, "
                                     f"overdispersion {shift.overdispersion:.2f}")
            bad |= shift.bad
        if not changes:
            return None
        worst = recent & bad
        traces, objects = examples(runs, worst if worst.any() else recent)
        return Finding(
            detector=self.name, dedup_key=f"{self.name}:{agent}", agent=agent,
            severity="error" if len(changes) > 1 else "warning",
            summary=f"{agent} drifted from its baseline over the last {period}: " + "; ".join(changes + notes),
            details=details, traces=traces, objects=objects,
        )

    def _rate(self, runs: Runs, metric: Metric, periods: _Periods) -> _Shift:
        """The recent share of bad runs against the baseline's (two-proportion test)."""
        index, recent, newest, history = periods.index, periods.recent, periods.newest, periods.history
        bad = runs[metric.column] > 0
        base_n, recent_n = int((~recent).sum()), int(recent.sum())
        base_hits, recent_hits = int(bad[~recent].sum()), int(bad[recent].sum())
        rate, recent_rate = base_hits / base_n, recent_hits / recent_n
        floor = max(rate, 1.0 / (base_n + 1))
        deviations = []
        for b in history:
            in_bucket = index == b
            n = int(in_bucket.sum())
            deviations.append((float(bad[in_bucket].mean()) - rate) / np.sqrt(floor * (1 - floor) / n))
        overdispersion = overdispersion_of(np.asarray(deviations))
        return _Shift(
            z=proportion_z(base_hits, base_n, recent_hits, recent_n) / overdispersion,
            overdispersion=overdispersion, baseline=rate, recent=recent_rate,
            holds=float(bad[newest].mean()) > rate,
            large=(recent_rate >= rate * (1 + self.config.min_relative_change)
                   and recent_rate - rate >= self.config.min_rate_increase),
            bad=bad,
        )

    def _value(self, runs: Runs, metric: Metric, periods: _Periods) -> _Shift:
        """How often a recent run's value exceeds a baseline run's (rank test)."""
        index, recent, newest, history = periods.index, periods.recent, periods.newest, periods.history
        values = runs[metric.column]
        score = superiority(values[~recent], values)
        deviations = []
        for b in history:
            in_bucket = index == b
            deviations.append((float(score[in_bucket].mean()) - 0.5) * np.sqrt(12 * int(in_bucket.sum())))
        overdispersion = overdispersion_of(np.asarray(deviations))
        mean = float(score[recent].mean())
        return _Shift(
            z=superiority_z(mean, int((~recent).sum()), int(recent.sum())) / overdispersion,
            overdispersion=overdispersion,
            baseline=float(np.median(values[~recent])), recent=float(np.median(values[recent])),
            holds=float(score[newest].mean()) > 0.5,
            large=mean >= self.config.min_superiority,
            bad=score >= 0.95, exceeds=mean,
        )
