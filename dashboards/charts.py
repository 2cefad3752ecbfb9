"""Plotly figures: a story's timeline across agents, a trace's waterfall, an agent's golden signals
and the observe/assist/auto mix of flows.

Plotly reads HTML-like tags (``<a href>``, ``<b>``, ``<br>``...) in hover text, legend names and tick
labels: every value from a span goes in through ``safe_text.html``, and never into a hover template
(where ``%{...}`` would be read as a placeholder) but into ``customdata`` or ``meta``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from flightrec.dashboards.safe_text import html

KIND_COLORS = {
    "agent": "#4c78a8",
    "llm": "#9d6fd1",
    "tool": "#54a24b",
    "retrieval": "#72b7b2",
    "guardrail": "#f58518",
    "human": "#eeca3b",
    "action": "#b279a2",
    "undo": "#9d755d",
    "other": "#bab0ac",
}
SEVERITY_MARKERS = {
    "info": ("circle", 11),
    "notice": ("diamond", 14),
    "warning": ("triangle-up", 17),
    "critical": ("x", 18),
}
ERROR_COLOR = "#d62728"


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hoverlabel={"align": "left"},
    )
    return fig


def story_timeline(steps: list[dict[str, Any]]) -> go.Figure:
    """One lane per agent, one marker per step: color by kind, shape and size by severity."""
    fig = go.Figure()
    for kind, color in KIND_COLORS.items():
        chosen = [step for step in steps if step["kind"] == kind]
        if not chosen:
            continue
        fig.add_trace(
            go.Scatter(
                x=[step["time"] for step in chosen],
                y=[html(step["agent"] or "unknown") for step in chosen],
                mode="markers",
                name=kind,
                marker={
                    "color": color,
                    "symbol": [SEVERITY_MARKERS.get(step["severity"], SEVERITY_MARKERS["info"])[0] for step in chosen],
                    "size": [SEVERITY_MARKERS.get(step["severity"], SEVERITY_MARKERS["info"])[1] for step in chosen],
                    "line": {"width": 1, "color": "#333"},
                },
                customdata=[[html(step["severity"]), html(step["sentence"])] for step in chosen],
                hovertemplate=f"%{{x}}<br><b>%{{y}}</b> · {kind} · %{{customdata[0]}}"
                "<br>%{customdata[1]}<extra></extra>",
            )
        )
    lanes = len({step["agent"] for step in steps}) or 1
    fig.update_yaxes(title=None, categoryorder="category descending")
    fig.update_xaxes(title=None)
    return _layout(fig, 120 + 50 * lanes)


def tree_order(spans: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Spans depth-first (children after their parent, siblings by start time) with their depth."""
    ids = {span["span_id"] for span in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    for span in sorted(spans, key=lambda span: span["start_time"]):
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else ""
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[dict[str, Any], int]] = []
    stack = [(span, 0) for span in reversed(children.get("", []))]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span["span_id"], [])))
    return ordered


def offset_ms(start: str, origin: str) -> float:
    return (datetime.fromisoformat(start) - datetime.fromisoformat(origin)).total_seconds() * 1000


def is_error(span: dict[str, Any]) -> bool:
    return span["status_code"] == "Error"


def waterfall(spans: list[dict[str, Any]]) -> go.Figure:
    """Horizontal bars from each span's start to its end, indented by depth, errors in red."""
    ordered = tree_order(spans)
    origin = min(span["start_time"] for span in spans)
    fig = go.Figure(
        go.Bar(
            orientation="h",
            y=list(range(len(ordered))),
            base=[offset_ms(span["start_time"], origin) for span, _ in ordered],
            x=[max(span["duration_ms"], 0.5) for span, _ in ordered],
            marker_color=[
                ERROR_COLOR if is_error(span) else KIND_COLORS.get(span["operation"], KIND_COLORS["other"])
                for span, _ in ordered
            ],
            customdata=[[html(span["name"]), html(span["agent"]), html(span["operation"]), span["duration_ms"]]
                        for span, _ in ordered],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} · %{customdata[2]}"
            "<br>%{customdata[3]:.1f} ms<extra></extra>",
        )
    )
    fig.update_yaxes(
        autorange="reversed",
        tickmode="array",
        tickvals=list(range(len(ordered))),
        ticktext=["\u00a0" * 3 * depth + html(span["name"]) for span, depth in ordered],
        tickfont={"family": "monospace"},
        title=None,
    )
    fig.update_xaxes(title="ms since the trace started")
    return _layout(fig, 80 + 24 * len(ordered))


# --- triage: golden signals of one agent, one line per version -----------------------------------

VERSION_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d")
CHANGE_COLOR = "#d62728"
# (key, title, y-axis tick format, scale): the small multiples, left to right
GOLDEN_SIGNALS = (
    ("runs", "Runs", ",d", 1),
    ("error_rate", "Failed runs", ".0%", 1),
    ("p95_ms", "Latency p95 (s)", ",.0f", 1 / 1000),
    ("cost_usd", "Cost (USD)", "$,.2f", 1),
    ("override_rate", "Overridden by people", ".0%", 1),
)
HOVER = {"runs": "%{y:,d} runs", "error_rate": "%{y:.1%} failed", "p95_ms": "p95 %{y:,.1f} s",
         "cost_usd": "$%{y:,.4f}", "override_rate": "%{y:.1%} overridden"}


def golden_signals(by_version: dict[str, list[dict[str, Any]]], changes: list[Any]) -> go.Figure:
    """One row of small multiples (runs, failed runs, p95 latency, cost, overrides) for one agent.

    ``by_version`` maps each model / prompt version to its points (``signals.series``): each version
    is its own colored line, so a change shows as one color handing over to the next; ``changes``
    (``signals.VersionChange``) are dashed vertical lines at the new version's first bucket.
    """
    fig = make_subplots(rows=1, cols=len(GOLDEN_SIGNALS), subplot_titles=[title for _, title, _, _ in GOLDEN_SIGNALS],
                        horizontal_spacing=0.045)
    for index, (version, points) in enumerate(by_version.items()):
        color = VERSION_COLORS[index % len(VERSION_COLORS)]
        times = [point["time"] for point in points]
        for col, (key, _, _, scale) in enumerate(GOLDEN_SIGNALS, start=1):
            values = [point[key] * scale for point in points]
            hover = f"<b>%{{meta[0]}}</b><br>%{{x|%H:%M}} UTC · {HOVER[key]}<extra></extra>"
            name = html(version)
            if key == "runs":
                trace = go.Bar(x=times, y=values, name=name, legendgroup=f"v{index}", marker_color=color,
                               showlegend=True, meta=[name], hovertemplate=hover)
            else:
                trace = go.Scatter(x=times, y=values, name=name, legendgroup=f"v{index}", mode="lines+markers",
                                   line={"color": color, "width": 2}, marker={"size": 5}, showlegend=False,
                                   meta=[name], hovertemplate=hover)
            fig.add_trace(trace, row=1, col=col)
    for col, (_, _, tickformat, _) in enumerate(GOLDEN_SIGNALS, start=1):
        fig.update_yaxes(tickformat=tickformat, rangemode="tozero", row=1, col=col)
        fig.update_xaxes(tickformat="%H:%M", nticks=4, row=1, col=col)
    for change in changes:
        at = change.time.isoformat()
        for col in range(1, len(GOLDEN_SIGNALS) + 1):
            fig.add_vline(x=at, line={"color": CHANGE_COLOR, "dash": "dash", "width": 1.5}, row=1, col=col)
    if changes:  # the dashed lines explained in the legend
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="version change",
                                 line={"color": CHANGE_COLOR, "dash": "dash", "width": 1.5}, hoverinfo="skip"),
                      row=1, col=1)
    fig.update_layout(barmode="stack", bargap=0.15)
    _layout(fig, 250)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.18, "x": 0, "title": None})
    return fig


# --- governance: how each flow's actions were taken ---------------------------------------------

MODE_COLORS = {"observe": "#bab0ac", "assist": "#4c78a8", "auto": "#54a24b"}
MODE_MEANINGS = {
    "observe": "the agent only said what it would do",
    "assist": "the agent prepared it, a person decided",
    "auto": "the agent acted on its own",
}


def mode_mix(flows: list[dict[str, Any]]) -> go.Figure:
    """A stacked horizontal bar per flow: the share of its actions taken in observe, assist and auto mode."""
    labels = [html(f"{flow['flow']} ({flow['agent']})") for flow in flows]
    fig = go.Figure()
    for mode, color in MODE_COLORS.items():
        counts = [flow["mode_mix"].get(mode, 0) for flow in flows]
        totals = [sum(flow["mode_mix"].values()) or 1 for flow in flows]
        fig.add_trace(go.Bar(
            orientation="h", y=labels, x=[count / total for count, total in zip(counts, totals, strict=True)],
            name=mode, marker_color=color, customdata=counts,
            text=[f"{count / total:.0%}" if count else "" for count, total in zip(counts, totals, strict=True)],
            textposition="inside", insidetextanchor="middle",
            hovertemplate=f"<b>%{{y}}</b><br>{mode}: %{{customdata}} actions (%{{x:.0%}})<br>"
                          f"{MODE_MEANINGS[mode]}<extra></extra>",
        ))
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title="share of the flow's actions")
    fig.update_yaxes(autorange="reversed", title=None)
    return _layout(fig, 90 + 34 * len(flows))

