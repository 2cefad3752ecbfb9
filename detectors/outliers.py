"""Unusual traces: IsolationForest over per-run features, with the features that made each unusual."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from sklearn.ensemble import IsolationForest

from flightrec.detectors.context import PassContext
from flightrec.detectors.models import Finding
from flightrec.detectors.stats import robust_z

FEATURES = ("spans", "tool_calls", "distinct_tools", "tokens", "duration_ms", "errors", "retries", "blocks")


class OutlierConfig(BaseModel):
    min_runs: int = Field(default=200, ge=20, description="runs in the window before outliers are looked for")
    top: int = Field(default=5, ge=1, description="outliers reported")
    min_feature_z: float = Field(
        default=6.0, gt=0, description="an outlier must also be this far (robust z, log scale) from typical ..."
    )
    min_scale: float = Field(default=0.25, gt=0, description="smallest spread assumed per feature (log units)")
    min_features: int = Field(
        default=3, ge=1,
        description="... on at least this many features (errors and retries, spans and tool calls move together)",
    )
    seed: int = 0


class UnusualTraceDetector:
    """Isolation scores rank runs; only runs far outside typical on several features are reported."""

    name = "unusual_traces"

    def __init__(self, config: OutlierConfig | None = None) -> None:
        self.config = config or OutlierConfig()

    def detect(self, ctx: PassContext) -> list[Finding]:
        runs = ctx.runs
        if len(runs) < self.config.min_runs:
            return []
        columns = {name: runs[name] for name in FEATURES if name != "tokens"}
        columns["tokens"] = runs["tokens_in"] + runs["tokens_out"]
        matrix = np.log1p(np.column_stack([columns[name] for name in FEATURES]))
        forest = IsolationForest(n_estimators=100, random_state=self.config.seed).fit(matrix)
        scores = forest.score_samples(matrix)
        z = np.column_stack(
            [robust_z(matrix[:, j], matrix[:, j], self.config.min_scale) for j in range(matrix.shape[1])]
        )
        extreme = (z >= self.config.min_feature_z).sum(axis=1) >= self.config.min_features
        candidates = [i for i in np.argsort(scores) if extreme[i]][: self.config.top]
        findings: dict[str, list[int]] = {}
        for i in candidates:
            findings.setdefault(str(runs["agent"][i]), []).append(int(i))
        result = []
        for agent, indexes in findings.items():
            described = []
            for i in indexes:
                why = sorted(range(len(FEATURES)), key=lambda j: -z[i, j])[:3]
                reasons = ", ".join(f"{FEATURES[j]} {np.expm1(matrix[i, j]):,.0f}" for j in why if z[i, j] >= 3)
                described.append(f"{runs['flow'][i]} ({reasons})")
            result.append(Finding(
                detector=self.name, dedup_key=f"{self.name}:{agent}", agent=agent, severity="warning",
                summary=f"{agent} ran {len(indexes)} unusual trace(s): " + "; ".join(described),
                details={"features": ", ".join(FEATURES), "scores": ", ".join(f"{scores[i]:.3f}" for i in indexes)},
                traces=[str(runs["trace_id"][i]) for i in indexes],
                objects=[str(runs["object"][i]) for i in indexes if runs["object"][i]],
            ))
        return result
