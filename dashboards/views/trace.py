"""One trace: a waterfall of its spans and a table of them."""

from __future__ import annotations

import streamlit as st

from flightrec.dashboards import api, charts, safe_text, ui
from flightrec.dashboards.safe_text import md

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
st.title(md(f"Run “{root['name']}”" + (f" by {root['agent']}" if root["agent"] else "")))
st.caption(f"Trace {safe_text.code(data['trace_id'])}")
start = min(span["start_time"] for span in spans)
end = max(span["end_time"] for span in spans)
errors = sum(charts.is_error(span) for span in spans)

spans_metric, agents_metric, duration_metric, errors_metric = st.columns(4)
spans_metric.metric("Spans", len(spans))
agents_metric.metric("Agents", len({span["agent"] for span in spans if span["agent"]}))
duration_metric.metric("Duration", ui.duration(charts.offset_ms(end, start)))
errors_metric.metric("Errors", errors)
st.caption(f"Started {ui.when(start)} UTC")

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
            "status": span["status_code"],
            "what": span["model"] or span["tool"] or span["action_name"] or span["human_decision"]
            or span["guardrail_verdict"],
        }
        for span, depth in ordered
    ],
    hide_index=True,
    width="stretch",
)
