"""One trace: how the run ended (and why), a waterfall of its spans and a table of them."""

from __future__ import annotations

from typing import Any

import streamlit as st

from flightrec.dashboards import api, charts, safe_text, ui
from flightrec.dashboards.safe_text import md

# OTLP's span status as people read it: "Unset" is the default of a span that reported no error.
SPAN_STATUS = {"Error": "error", "Ok": "ok", "Unset": "ok"}
STATUS_HELP = ("error: the span reported an error (its message in the next column); blocked: a guardrail "
               "blocked here; ok: no error reported")


def span_status(span: dict[str, Any]) -> str:
    if span["status_code"] == "Error":
        return "error"
    if span["guardrail_verdict"] == "block":
        return "blocked"
    return SPAN_STATUS.get(span["status_code"], span["status_code"].lower() or "ok")


def error_message(span: dict[str, Any]) -> str:
    """What the span said went wrong: its status message, else an exception event's message."""
    if span["status_message"]:
        return span["status_message"]
    for event in span.get("events") or []:
        attributes = event.get("attributes") or {}
        if event.get("name") == "exception" and (attributes.get("exception.message") or attributes.get("exception.type")):
            return ": ".join(filter(None, (attributes.get("exception.type"), attributes.get("exception.message"))))
    return ""


def block_reason(span: dict[str, Any]) -> str:
    attributes = span.get("attributes") or {}
    return attributes.get("flightrec.guardrail.reason", "")


def outcome(spans: list[dict[str, Any]]) -> str:
    """How the run ended, as the stories tell it: failed, blocked, overridden, pending or completed."""
    if any(span["status_code"] == "Error" and (not span["parent_span_id"] or span["operation"] == "action")
           for span in spans):
        return "failed"
    if any(span["guardrail_verdict"] == "block" for span in spans):
        return "blocked"
    if any(span["human_decision"] in ("reject", "override") for span in spans):
        return "overridden"
    if (any(span["operation"] == "action" and span["mode"] == "assist" for span in spans)
            and not any(span["operation"] == "human" for span in spans)):
        return "pending"
    return "completed"


def tokens(span: dict[str, Any]) -> int:
    return int(span.get("input_tokens") or 0) + int(span.get("output_tokens") or 0)


def cost(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def show_outcome(spans: list[dict[str, Any]], status: str) -> None:
    """Why the run ended so: every error's message and every guardrail block's reason, as text."""
    errors = [span for span in spans if span["status_code"] == "Error"]
    blocks = [span for span in spans if span["guardrail_verdict"] == "block"]
    lines = [f"- {md(span['name'])}: {md(error_message(span) or 'no message recorded')}" for span in errors]
    lines += [f"- {md(span['name'])} blocked" + (f": {md(block_reason(span))}" if block_reason(span) else "")
              for span in blocks]
    if status == "failed":
        failed = next((span for span in errors if not span["parent_span_id"]), errors[0])  # the run's own first
        st.error(f"**The run failed.** {md(error_message(failed) or 'No message recorded.')}",
                 icon=":material/error:")
    elif status == "blocked":
        first = blocks[0]
        st.warning(f"**A guardrail stopped the run:** {md(first['name'])}"
                   + (f": {md(block_reason(first))}" if block_reason(first) else "."), icon=":material/gpp_bad:")
    if len(lines) > 1 or (lines and status not in ("failed", "blocked")):
        st.markdown("\n".join(lines))


trace_id = st.query_params.get("trace", "")
if not trace_id:
    st.title("Trace")
    trace_id = st.text_input("Trace id", placeholder="32 hex digits", help="From a story step or the search").strip()
    if not trace_id:
        st.info("Open a trace from a story step, search in the sidebar, or paste a trace id above.")
        st.stop()
    st.query_params["trace"] = trace_id

data = ui.load(api.trace, trace_id, not_found=f"Flight Recorder has no trace **{md(trace_id)}**.")
spans = data["spans"]
ordered = charts.tree_order(spans)
root = ordered[0][0]
status = outcome(spans)
st.title(md(f"Run “{root['name']}”" + (f" by {root['agent']}" if root["agent"] else "")))
st.caption(f"Trace {safe_text.code(data['trace_id'])} · {ui.status_badge(status)}")
start = min(span["start_time"] for span in spans)
end = max(span["end_time"] for span in spans)
errors = sum(charts.is_error(span) for span in spans)
blocks = sum(span["guardrail_verdict"] == "block" for span in spans)
input_tokens = sum(int(span.get("input_tokens") or 0) for span in spans)
output_tokens = sum(int(span.get("output_tokens") or 0) for span in spans)
total_cost = sum(float(span.get("cost_usd") or 0) for span in spans)

spans_metric, duration_metric, tokens_metric, cost_metric, errors_metric, blocks_metric = st.columns(6)
spans_metric.metric("Spans", len(spans), help=f"{len({span['agent'] for span in spans if span['agent']})} agent(s)")
duration_metric.metric("Duration", ui.duration(charts.offset_ms(end, start)))
tokens_metric.metric("Tokens", f"{input_tokens + output_tokens:,}",
                     help=f"{input_tokens:,} in (prompts) · {output_tokens:,} out (completions)")
cost_metric.metric("Cost", cost(total_cost), help="What the model calls cost, as the agent reported (USD)")
errors_metric.metric("Errors", errors, help="Spans that reported an error")
blocks_metric.metric("Guardrail blocks", blocks, help="Guardrail checks that blocked the run")
st.caption(f"Started {ui.when(start)} UTC")
show_outcome(spans, status)

touched = sorted({ref for span in spans for ref in span["objects"]})
if touched:
    st.markdown("**Business objects in this trace**")
    columns = st.columns(4)
    for index, ref in enumerate(touched):
        with columns[index % len(columns)]:
            ui.link("object", ref)

st.subheader("Waterfall")
st.plotly_chart(charts.waterfall(spans), width="stretch", config={"displaylogo": False})
st.subheader("Spans")
st.dataframe(
    [
        {
            "span": "\u00a0" * 3 * depth + span["name"],
            "agent": span["agent"],
            "operation": span["operation"],
            "starts at (ms)": round(charts.offset_ms(span["start_time"], start), 1),
            "duration (ms)": round(span["duration_ms"], 1),
            "status": span_status(span),
            "message": (error_message(span) or block_reason(span)) if span_status(span) != "ok" else "",
            "tokens": tokens(span) or None,
            "cost (USD)": float(span.get("cost_usd") or 0) or None,
            "what": span["model"] or span["tool"] or span["action_name"] or span["human_decision"]
            or span["guardrail_verdict"],
        }
        for span, depth in ordered
    ],
    hide_index=True,
    width="stretch",
    column_config={"status": st.column_config.TextColumn(help=STATUS_HELP),
                   "tokens": st.column_config.NumberColumn(format="%d", help="in + out"),
                   "cost (USD)": st.column_config.NumberColumn(format="%.5f")},
)
