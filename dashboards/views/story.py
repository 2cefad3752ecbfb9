"""One business object's story: summary, outcome, a timeline across agents, and every step."""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from flightrec.dashboards import api, charts, safe_text, ui
from flightrec.dashboards.safe_text import md

KIND_ICONS = {
    "agent": ":material/smart_toy:",
    "llm": ":material/psychology:",
    "tool": ":material/build:",
    "retrieval": ":material/search:",
    "guardrail": ":material/shield:",
    "human": ":material/person:",
    "action": ":material/bolt:",
    "undo": ":material/undo:",
    "other": ":material/radio_button_unchecked:",
}
OUTCOME_BOXES = {"completed": st.success, "failed": st.error, "blocked": st.warning, "overridden": st.warning}
HIGHLIGHTED_KINDS = {"human": "human decision", "guardrail": "guardrail"}
SPAN_FIELDS = ("name", "agent", "operation", "model", "tool", "action_name", "action_system", "action_risk",
               "mode", "guardrail_verdict", "human_decision", "status_code", "status_message", "duration_ms",
               "start_time", "end_time", "input_tokens", "output_tokens", "cost_usd", "trace_id", "span_id")


def step_label(step: dict[str, Any]) -> str:
    """The sentence, colored by severity, led by its time and a badge for what needs attention."""
    color = ui.SEVERITY_COLORS.get(step["severity"], "gray")
    badge = HIGHLIGHTED_KINDS.get(step["kind"]) or (step["severity"] if step["severity"] != "info" else "")
    lead = f"{safe_text.code(ui.when(step['time'], '%H:%M:%S'))} " + (f":{color}-badge[{md(badge)}] " if badge else "")
    sentence = md(step["sentence"])
    return lead + (f":{color}[**{sentence}**]" if step["severity"] in ("warning", "critical") else sentence)


def show_facts(step: dict[str, Any]) -> None:
    """The readable facts behind one step, straight from the story."""
    st.caption(f"{ui.when(step['time'])} UTC · agent **{md(step['agent'])}** · "
               f"{md(step['kind'])} · {md(step['severity'])}")
    if step["details"]:
        st.table(safe_text.table({"fact": list(step["details"]), "value": list(step["details"].values())}))
    ui.link("trace", step["trace_id"], "Open the whole trace")


def show_raw_span(step: dict[str, Any]) -> None:
    """The step's span as recorded, read from its trace."""
    try:
        spans = api.trace(step["trace_id"])["spans"]
    except api.ApiError as error:
        st.error(md(error.message))
        return
    span = next((span for span in spans if span["span_id"] == step["span_id"]), None)
    if span is None:
        st.warning(f"Span {md(step['span_id'])} is not in trace {md(step['trace_id'])}.")
        return
    st.markdown("**Raw span**")
    recorded = [name for name in SPAN_FIELDS if span.get(name) not in (None, "", 0)]
    st.table(safe_text.table({"field": recorded, "value": [str(span[name]) for name in recorded]}))
    st.json({"attributes": span["attributes"], "resource": span["resource_attributes"], "events": span["events"]},
            expanded=1)


def file_name(kind: str, ident: str) -> str:
    """``story-ticket-TCK-1042.html``: the object's id reduced to characters safe in any file name."""
    return "story-" + re.sub(r"[^\w.-]+", "_", f"{kind}-{ident}", flags=re.ASCII).strip("._") + ".html"


ref = st.query_params.get("object", "")
if not ref:
    st.title("Story")
    ref = st.text_input("Business object", placeholder="ticket:TCK-1042",
                        help="type:id of a ticket, order, invoice, customer, account or asset").strip()
    if not ref:
        st.info("Pick an object on the Objects page, search in the sidebar, or type one above.")
        st.stop()
    st.query_params["object"] = ref
try:
    kind, ident = api.split_ref(ref)
except ValueError as exc:
    st.warning(md(exc), icon=":material/search_off:")
    st.stop()

story = ui.load(api.story, ref, not_found=f"Flight Recorder has nothing recorded for **{md(ref)}**. "
                                          "Check the id, or find the object with the search in the sidebar.")
steps = story["steps"]
title_col, download_col = st.columns([4, 1], vertical_alignment="bottom")
title_col.title(md(f"{kind.capitalize()} {ident}"))
title_col.markdown(ui.status_badge(story["status"]))
try:
    download_col.download_button("Download story", api.story_html(ref), file_name=file_name(kind, ident),
                                 mime="text/html", icon=":material/download:", on_click="ignore")
except api.ApiError as error:
    download_col.caption(f"Download unavailable: {md(error.message)}")

st.markdown(md(story["summary"]))
OUTCOME_BOXES.get(story["status"], st.info)(f"**Outcome:** {md(story['outcome'])}")
steps_metric, attention_metric, agents_metric, runs_metric = st.columns(4)
steps_metric.metric("Steps", len(steps))
attention_metric.metric("Need attention", sum(step["severity"] in ("warning", "critical") for step in steps),
                        help="Steps with a warning or critical severity: blocks, overrides, failures")
agents_metric.metric("Agents", len(story["agents"]))
runs_metric.metric("Runs", len(story["traces"]), help="Traces (agent workflows) that touched this object")
st.caption(f"Between {ui.when(story['first_seen'])} and {ui.when(story['last_seen'])} UTC, "
           f"by {md(', '.join(story['agents']))}.")

if steps:
    st.subheader("Timeline")
    st.plotly_chart(charts.story_timeline(steps), width="stretch", config={"displaylogo": False})
st.subheader("What happened")
st.caption("Open a step for the facts behind it and its raw span.")
runs = {trace_id: number for number, trace_id in enumerate(dict.fromkeys(step["trace_id"] for step in steps), 1)}
for index, step in enumerate(steps):
    if index == 0 or step["trace_id"] != steps[index - 1]["trace_id"]:
        st.markdown(f"**Run {runs[step['trace_id']]} of {len(runs)}** · {ui.when(step['time'])} UTC · "
                    f"{md(step['agent'])}")
    expander = st.expander(step_label(step), key=f"step-{ref}-{index}", icon=KIND_ICONS.get(step["kind"]),
                           type="step", on_change="rerun")
    with expander:
        show_facts(step)
        if expander.open:
            show_raw_span(step)
