"""Golden signals from the API's rollups, computed for the triage page: plain functions over plain dicts.

A rollup row is one agent x flow x model x prompt version x time bucket (``GET /api/rollups``).
Here rows are folded per agent, version and bucket (the lines of the small multiples), the
changes of an agent's version are found (a new model / prompt version's first bucket), and the
runs before and after a change are compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

Row = dict[str, Any]

# (key, label, kind): "rate" is a share of runs, "per_run" a total divided by runs, "ms" a latency
# folded as a runs-weighted mean of the flows' values; "count" is a plain total.
COMPARED = (
    ("runs", "Runs", "count"),
    ("error_rate", "Failed runs", "rate"),
    ("override_rate", "Overridden by people", "rate"),
    ("reject_rate", "Rejected by people", "rate"),
    ("block_rate", "Blocked by guardrails", "rate"),  # blocks per run (most runs stop at their first)
    ("p50_ms", "Latency p50", "ms"),
    ("p95_ms", "Latency p95", "ms"),
    ("cost_per_run", "Cost per run", "usd"),
    ("tokens_per_run", "Tokens per run", "per_run"),
    ("tools_per_run", "Tool calls per run", "per_run"),
    ("decisions_per_run", "Human decisions per run", "per_run"),
)
NEUTRAL = {"runs", "decisions_per_run"}  # more is neither better nor worse
RATE_NOISE = 0.005  # rate changes below half a point are shown as unchanged
RATIO_NOISE = 0.05  # value changes below 5 % are shown as unchanged


def version_of(row: Row) -> str:
    """``gpt-4o / support-v12``: the model and prompt version a rollup row ran with."""
    return " / ".join(part for part in (row.get("model") or "", row.get("prompt_version") or "") if part) or "unknown"


def bucket_time(bucket_ms: int) -> datetime:
    return datetime.fromtimestamp(bucket_ms / 1000, tz=timezone.utc)


def fold(rows: Iterable[Row]) -> Row:
    """Rollup rows (flows, versions or buckets) folded into one: totals summed, rates weighted by runs."""
    rows = list(rows)
    runs = sum(row["runs"] for row in rows)

    def weighted(key: str) -> float:
        return sum(row[key] * row["runs"] for row in rows) / runs if runs else 0.0

    def per_run(key: str) -> float:
        return sum(row[key] for row in rows) / runs if runs else 0.0

    return {
        "runs": runs,
        "error_rate": weighted("error_rate"),
        "override_rate": weighted("override_rate"),
        "reject_rate": weighted("reject_rate"),
        "block_rate": per_run("guardrail_blocks"),
        "p50_ms": weighted("p50_ms"),
        "p95_ms": weighted("p95_ms"),
        "cost_usd": sum(row["cost_usd"] for row in rows),
        "cost_per_run": per_run("cost_usd"),
        "tokens_per_run": per_run("tokens"),
        "tools_per_run": per_run("tool_calls"),
        "decisions_per_run": per_run("human_decisions"),
    }


def agents_of(rows: Iterable[Row]) -> list[str]:
    return sorted({row["agent"] for row in rows})


def series(rows: Iterable[Row], agent: str) -> dict[str, list[Row]]:
    """Per version of ``agent`` (in order of first appearance): one folded point per bucket, oldest first."""
    grouped: dict[str, dict[int, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in sorted((row for row in rows if row["agent"] == agent), key=lambda row: row["bucket_ms"]):
        grouped[version_of(row)][row["bucket_ms"]].append(row)
    return {
        version: [{"bucket_ms": bucket, "time": bucket_time(bucket), **fold(chunk)}
                  for bucket, chunk in buckets.items()]
        for version, buckets in grouped.items()
    }


@dataclass(frozen=True)
class VersionChange:
    """An agent started running ``after`` at ``bucket_ms`` (the first bucket with it); before, ``before``."""

    agent: str
    before: str
    after: str
    bucket_ms: int

    @property
    def time(self) -> datetime:
        return bucket_time(self.bucket_ms)


def version_changes(rows: Iterable[Row], agent: str) -> list[VersionChange]:
    """Each version that first shows up after the window's first bucket, with the one it replaced.

    The replaced version is the busiest one in the agent's last bucket before the change; a
    version already present in the window's first bucket is not a change (it may be older).
    """
    mine = [row for row in rows if row["agent"] == agent]
    if not mine:
        return []
    runs: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in mine:
        runs[row["bucket_ms"]][version_of(row)] += row["runs"]
    buckets = sorted(runs)
    seen = set(runs[buckets[0]])
    changes = []
    for previous, bucket in zip(buckets, buckets[1:], strict=False):
        for version in sorted(runs[bucket], key=lambda version: -runs[bucket][version]):
            if version in seen:
                continue
            seen.add(version)
            before = max(runs[previous], key=lambda name: (runs[previous][name], name))
            changes.append(VersionChange(agent=agent, before=before, after=version, bucket_ms=bucket))
    return changes


def current_version(rows: Iterable[Row], agent: str) -> str:
    """The busiest version of ``agent`` in its latest bucket."""
    mine = [row for row in rows if row["agent"] == agent]
    if not mine:
        return ""
    latest = max(row["bucket_ms"] for row in mine)
    runs: dict[str, int] = defaultdict(int)
    for row in mine:
        if row["bucket_ms"] == latest:
            runs[version_of(row)] += row["runs"]
    return max(runs, key=lambda version: (runs[version], version))


def _delta(key: str, kind: str, before: float, after: float) -> tuple[str, int]:
    """The change as text, and its direction: 1 worse, -1 better, 0 same or neutral."""
    if kind == "rate":
        diff = after - before
        text = f"{diff * 100:+.1f} pts"
        moved = abs(diff) >= RATE_NOISE
    elif before > 0:
        ratio = after / before
        text = f"×{ratio:.2f}"
        moved = abs(ratio - 1) >= RATIO_NOISE
        diff = after - before
    else:
        diff = after - before
        text = "new" if after > 0 else "same"
        moved = after > 0
    if not moved:
        return ("same" if kind == "rate" or before > 0 else text), 0
    if key in NEUTRAL:
        return text, 0
    return text, (1 if diff > 0 else -1)


def fmt(kind: str, value: float) -> str:
    if kind == "rate":
        return f"{value:.1%}"
    if kind == "ms":
        return f"{value / 1000:,.1f} s" if value >= 1000 else f"{value:,.0f} ms"
    if kind == "usd":
        return f"${value:,.4f}"
    if kind == "count":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def before_after(rows: Iterable[Row], change: VersionChange) -> list[dict[str, Any]]:
    """One line per compared signal: the runs of ``change.before`` vs those of ``change.after`` in the window.

    Each line: ``signal``, ``before``, ``after`` (formatted), ``change`` (``+21.3 pts``, ``×1.42``)
    and ``worse`` (1 worse, -1 better, 0 unchanged or neutral).
    """
    rows = [row for row in rows if row["agent"] == change.agent]
    old = fold(row for row in rows if version_of(row) == change.before)
    new = fold(row for row in rows if version_of(row) == change.after)
    lines = []
    for key, label, kind in COMPARED:
        text, worse = _delta(key, kind, old[key], new[key])
        lines.append({"signal": label, "before": fmt(kind, old[key]), "after": fmt(kind, new[key]),
                      "change": text, "worse": worse})
    return lines


def unusual_traces(alert: Row) -> list[tuple[str, str]]:
    """An ``unusual_traces`` alert's trace ids, each with what made it unusual when the summary says so.

    The detector's summary reads ``<agent> ran N unusual trace(s): <flow (reasons)>; ...`` in the
    order of ``traces``; when that cannot be matched up the trace ids come alone.
    """
    traces = list(alert.get("traces", []))
    _, sep, described = alert.get("summary", "").partition(": ")
    reasons = [part.strip() for part in described.split("; ")] if sep else []
    if len(reasons) != len(traces):
        reasons = [""] * len(traces)
    return list(zip(traces, reasons, strict=True))
