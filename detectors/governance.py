"""Governance: per flow, how much people correct the agents, and what more autonomy would take."""

from __future__ import annotations

from pydantic import BaseModel, Field

MODES = ("observe", "assist", "auto")
NEXT_MODE = {"observe": "assist", "assist": "auto"}


class Rollup(BaseModel):
    """Golden signals of one agent x flow x model x prompt version x time bucket."""

    agent: str
    flow: str
    model: str
    prompt_version: str
    bucket_ms: int
    runs: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    tokens: int
    cost_usd: float
    guardrail_blocks: int
    override_rate: float
    reject_rate: float
    tool_calls: int
    human_decisions: int
    observe_actions: int
    assist_actions: int
    auto_actions: int


class AutonomyBar(BaseModel):
    """What a flow must show before it moves one step toward autonomy."""

    min_runs: int = Field(default=100, ge=1)
    max_correction_rate: float = Field(default=0.05, description="overridden or rejected runs")
    max_block_rate: float = Field(default=0.02, description="guardrail blocks per run")
    max_error_rate: float = Field(default=0.03, description="failed runs")


class FlowGovernance(BaseModel):
    agent: str
    flow: str
    runs: int
    correction_rate: float
    override_rate: float
    reject_rate: float
    block_rate: float
    error_rate: float
    human_decisions: int
    mode_mix: dict[str, int]
    mode: str
    standing: str = Field(
        default="", description="ready (for the next mode), hold, autonomous, or over_bar (auto, corrected too often)"
    )
    next_step: str


def rollups_from_columns(columns: dict[str, list]) -> list[Rollup]:
    names = list(columns)
    return [Rollup(**dict(zip(names, values, strict=True))) for values in zip(*columns.values())]


def _next_step(flow: FlowGovernance, bar: AutonomyBar) -> str:
    target = NEXT_MODE.get(flow.mode)
    if target is None:
        if flow.correction_rate > bar.max_correction_rate:
            return (f"{flow.flow} runs in auto mode but people corrected {flow.correction_rate:.0%} of its runs "
                    f"(the bar is {bar.max_correction_rate:.0%}): consider moving it back to assist.")
        return f"{flow.flow} already runs in auto mode; keep its correction rate under {bar.max_correction_rate:.0%}."
    needs = []
    if flow.runs < bar.min_runs:
        needs.append(f"{bar.min_runs - flow.runs} more runs")
    for label, value, limit in (
        ("people's overrides and rejections", flow.correction_rate, bar.max_correction_rate),
        ("guardrail blocks", flow.block_rate, bar.max_block_rate),
        ("failed runs", flow.error_rate, bar.max_error_rate),
    ):
        if value > limit:
            needs.append(f"{label} down from {value:.0%} to {limit:.0%} or less")
    if not needs:
        return f"{flow.flow} meets the bar to move from {flow.mode} to {target}."
    return f"To move {flow.flow} from {flow.mode} to {target}: " + "; ".join(needs) + "."


def _standing(flow: FlowGovernance, bar: AutonomyBar) -> str:
    if flow.mode == "auto":
        return "over_bar" if flow.correction_rate > bar.max_correction_rate else "autonomous"
    return "ready" if "meets the bar" in flow.next_step else "hold"


def govern(rollups: list[Rollup], bar: AutonomyBar | None = None) -> list[FlowGovernance]:
    """One line per agent and flow over the rollups' window."""
    bar = bar or AutonomyBar()
    grouped: dict[tuple[str, str], list[Rollup]] = {}
    for row in rollups:
        grouped.setdefault((row.agent, row.flow), []).append(row)
    result = []
    for (agent, flow), rows in sorted(grouped.items()):
        runs = sum(row.runs for row in rows)

        def rate(field: str, rows: list[Rollup] = rows, runs: int = runs) -> float:
            return sum(getattr(row, field) * row.runs for row in rows) / runs if runs else 0.0

        mix = {mode: sum(getattr(row, f"{mode}_actions") for row in rows) for mode in MODES}
        governance = FlowGovernance(
            agent=agent, flow=flow, runs=runs, override_rate=rate("override_rate"), reject_rate=rate("reject_rate"),
            correction_rate=min(1.0, rate("override_rate") + rate("reject_rate")),
            block_rate=sum(row.guardrail_blocks for row in rows) / runs if runs else 0.0,
            error_rate=rate("error_rate"), human_decisions=sum(row.human_decisions for row in rows), mode_mix=mix,
            mode=max(MODES, key=lambda mode: (mix[mode], MODES.index(mode))) if any(mix.values()) else "observe",
            next_step="",
        )
        governance.next_step = _next_step(governance, bar)
        governance.standing = _standing(governance, bar)
        result.append(governance)
    return result
