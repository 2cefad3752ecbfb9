"""What one detector pass looks at: the window's runs as numpy columns, grouped by agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from flightrec.detectors.models import Finding
from flightrec.store.signals import RunFeatures

NUMERIC = (
    "start_ms", "duration_ms", "spans", "tool_calls", "distinct_tools", "tokens_in", "tokens_out", "cost_usd",
    "errors", "failed", "retries", "blocks", "overrides", "rejects", "human_decisions",
)


@dataclass
class Runs:
    """Runs as columns: numeric ones as float arrays, text ones as object arrays."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["trace_id"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def where(self, mask: np.ndarray) -> "Runs":
        return Runs({name: values[mask] for name, values in self.columns.items()})

    @classmethod
    def from_features(cls, features: RunFeatures) -> "Runs":
        columns = {
            name: np.asarray(values, dtype=float if name in NUMERIC else object)
            for name, values in features.columns.items()
        }
        return cls(columns)


@dataclass
class PassContext:
    """The window of one pass and its runs, split by agent once for every detector."""

    since: datetime
    until: datetime
    runs: Runs
    by_agent: dict[str, Runs] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.runs):
            agents = self.runs["agent"]
            self.by_agent = {agent: self.runs.where(agents == agent) for agent in sorted(set(agents)) if agent}


def examples(runs: Runs, mask: np.ndarray, limit: int = 3) -> tuple[list[str], list[str]]:
    """Example trace ids and objects (newest first) of the runs a finding is about."""
    chosen = runs.where(mask)
    order = np.argsort(-chosen["start_ms"])[:limit]
    traces = [str(chosen["trace_id"][i]) for i in order]
    objects = [str(chosen["object"][i]) for i in order if chosen["object"][i]]
    return traces, list(dict.fromkeys(objects))


class PerAgentDetector:
    """A detector that judges each agent's runs on their own: subclasses write ``judge_agent``."""

    name = ""

    def detect(self, ctx: PassContext) -> list[Finding]:
        return [finding for agent, runs in ctx.by_agent.items() if (finding := self.judge_agent(agent, runs))]

    def judge_agent(self, agent: str, runs: Runs) -> Finding | None:
        raise NotImplementedError
