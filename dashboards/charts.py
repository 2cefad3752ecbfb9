"""Plotly figures: a story's timeline across agents and a trace's waterfall."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import plotly.graph_objects as go

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
                y=[step["agent"] or "unknown" for step in chosen],
                mode="markers",
                name=kind,
                marker={
                    "color": color,
                    "symbol": [SEVERITY_MARKERS.get(step["severity"], SEVERITY_MARKERS["info"])[0] for step in chosen],
                    "size": [SEVERITY_MARKERS.get(step["severity"], SEVERITY_MARKERS["info"])[1] for step in chosen],
                    "line": {"width": 1, "color": "#333"},
                },
                customdata=[[step["severity"], step["sentence"]] for step in chosen],
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
            customdata=[[span["name"], span["agent"], span["operation"], span["duration_ms"]] for span, _ in ordered],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} · %{customdata[2]}"
            "<br>%{customdata[3]:.1f} ms<extra></extra>",
        )
    )
    fig.update_yaxes(
        autorange="reversed",
        tickmode="array",
        tickvals=list(range(len(ordered))),
        ticktext=["\u00a0" * 3 * depth + span["name"] for span, depth in ordered],
        tickfont={"family": "monospace"},
        title=None,
    )
    fig.update_xaxes(title="ms since the trace started")
    return _layout(fig, 80 + 24 * len(ordered))
