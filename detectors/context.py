"""What one detector pass looks at: the window's runs as numpy columns, grouped by agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from flightrec.detectors.models import Finding
from flightrec.store.signals import RunFeatures

NUMERIC = (
    "start_ms", "duration_ms", "spans", "tool_calls", "distinct_tools", "tokens_in", "tokens_out", "cost_usd",
    "errors", "failed", "retries", "blocks", "overrides", "rejects", "human_decisions", "unpriced_calls",
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


def unpriced_calls(runs: Runs) -> int:
    """LLM calls in these runs that have no price: their cost is unknown, not 0 (absent column: none)."""
    column = runs.columns.get("unpriced_calls")
    return int(column.sum()) if column is not None and len(column) else 0


def priced(runs: Runs) -> np.ndarray:
    """Runs whose every LLM call has a price: the only runs whose cost_usd is their cost."""
    column = runs.columns.get("unpriced_calls")
    return np.ones(len(runs), dtype=bool) if column is None else column == 0


def cost_unknown(calls: int) -> str:
    """The words triage shows for costs that are not known."""
    return f"cost unknown for {calls} call{'' if calls == 1 else 's'}"


class PerAgentDetector:
    """A detector that judges each agent's runs on their own: subclasses write ``judge_agent``."""

    name = ""

    def detect(self, ctx: PassContext) -> list[Finding]:
        return [finding for agent, runs in ctx.by_agent.items() if (finding := self.judge_agent(agent, runs))]

    def judge_agent(self, agent: str, runs: Runs) -> Finding | None:
        raise NotImplementedError
