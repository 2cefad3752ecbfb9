"""Governance, for whoever answers for the agents: per flow, how often people correct them, how often
guardrails stop them, how much they do on their own, and what it would take to give a flow more autonomy.

``?agent=`` shows one agent's flows.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from flightrec.dashboards import api, charts, safe_text, ui
from flightrec.dashboards.safe_text import md

WINDOWS = {"Last 24 hours": 24, "Last 7 days": 24 * 7, "Last 30 days": 24 * 30, "Last 90 days": 24 * 90}
DEFAULT_WINDOW = "Last 7 days"
ALL_AGENTS = "All agents"
MODES_EXPLAINED = """\
Each action an agent takes runs in one of three modes:

- **Observe**: the agent only says what it would do; nothing is changed.
- **Assist**: the agent prepares the action and a person approves, edits, overrides or rejects it.
- **Auto**: the agent acts on its own; guardrails still check it, and risky cases go to a person.

A flow's *mode* below is the one most of its actions ran in. A flow moves one step toward autonomy
(observe → assist → auto) once it has enough runs and people rarely need to correct it, guardrails
rarely block it and it rarely fails: the bar is set on the Flight Recorder server.
"""


def verdict(flow: dict[str, Any]) -> tuple[str, str]:
    """A badge for where the flow stands: (color, words)."""
    standing = flow.get("standing", "")
    if standing == "over_bar":
        return "red", f"corrected {flow['correction_rate']:.0%}, above the bar for auto"
    if standing == "autonomous":
        return "blue", "runs on its own"
    if standing == "ready":
        return "green", f"ready for {'assist' if flow['mode'] == 'observe' else 'auto'}"
    return "orange", f"stays in {flow['mode']}"


TABLE_COLUMNS = {  # short headers, so all ten columns fit the page; the caption says what each counts
    "Agent": lambda flow: flow["agent"],
    "Flow": lambda flow: flow["flow"],
    "Mode": lambda flow: flow["mode"],
    "Runs": lambda flow: f"{flow['runs']:,}",
    "Corrected %": lambda flow: f"{flow['correction_rate'] * 100:.1f}",
    "Overridden %": lambda flow: f"{flow['override_rate'] * 100:.1f}",
    "Rejected %": lambda flow: f"{flow['reject_rate'] * 100:.1f}",
    "Blocks / 100 runs": lambda flow: f"{flow['block_rate'] * 100:.1f}",
    "Failed %": lambda flow: f"{flow['error_rate'] * 100:.1f}",
    "Human decisions": lambda flow: f"{flow['human_decisions']:,}",
}


def table(flows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The per-flow table's columns, every cell shown as text (``st.table`` wraps: nothing is cut off)."""
    return safe_text.table({name: [cell(flow) for flow in flows] for name, cell in TABLE_COLUMNS.items()})


st.title("Governance")
st.caption("Per flow: how often people correct the agents, how often guardrails stop them, how much they "
           "do on their own, and what it would take to let a flow do more.")
with st.expander("What observe, assist and auto mean", icon=":material/help:"):
    st.markdown(MODES_EXPLAINED)

window_col, agent_col = st.columns(2)
window = window_col.selectbox("Window", list(WINDOWS), index=list(WINDOWS).index(DEFAULT_WINDOW), key="gov_window")
flows = ui.load(api.governance, hours=WINDOWS[window])
agents = sorted({flow["agent"] for flow in flows})
wanted = st.query_params.get("agent", "")
agent = agent_col.selectbox("Agent", [ALL_AGENTS, *agents],
                            index=1 + agents.index(wanted) if wanted in agents else 0, key="gov_agent")
if agent != ALL_AGENTS:
    flows = [flow for flow in flows if flow["agent"] == agent]
    st.query_params["agent"] = agent
else:
    st.query_params.pop("agent", None)
if not flows:
    st.info(f"No runs recorded {window.lower()}. Agents record their flows as traces; "
            "pick a longer window to look further back.", icon=":material/info:")
    st.stop()

runs = sum(flow["runs"] for flow in flows)
ready = [flow for flow in flows if verdict(flow)[0] == "green"]
flows_metric, runs_metric, decisions_metric, ready_metric = st.columns(4)
flows_metric.metric("Flows", len(flows))
runs_metric.metric("Runs", f"{runs:,}")
decisions_metric.metric("Human decisions", f"{sum(flow['human_decisions'] for flow in flows):,}",
                        help="Approvals, edits, overrides and rejections by people")
ready_metric.metric("Ready for more autonomy", len(ready))
for flow in flows:
    if verdict(flow)[0] == "red":
        st.warning(f"**{md(flow['flow'])}** ({md(flow['agent'])}) acts on its own most of the time, "
                   f"yet people corrected {flow['correction_rate']:.1%} of its runs: above the bar for auto. "
                   "Consider moving it back to assist until that comes down.", icon=":material/gpp_maybe:")

st.subheader("How each flow's actions were taken")
st.caption("The share of each flow's actions taken in observe (gray), assist (blue) and auto (green) mode.")
st.plotly_chart(charts.mode_mix(flows), width="stretch", config={"displaylogo": False})

st.subheader("What it would take to give each flow more autonomy")
for flow in flows:
    color, words = verdict(flow)
    with st.container(border=True):
        st.markdown(f"**{md(flow['flow'])}** · {md(flow['agent'])} · now mostly "
                    f"**{md(flow['mode'])}** :{color}-badge[{md(words)}]")
        st.markdown(md(flow["next_step"]))
        st.caption(f"{flow['runs']:,} runs · people corrected {flow['correction_rate']:.1%} "
                   f"(overrode {flow['override_rate']:.1%}, rejected {flow['reject_rate']:.1%}) · "
                   f"{flow['block_rate'] * 100:.1f} guardrail blocks per 100 runs · "
                   f"failed {flow['error_rate']:.1%} · "
                   f"{flow['human_decisions']:,} human decisions")

st.subheader("Corrections, blocks and failures per flow")
st.caption(f"{window}. *Mode*: the mode most of the flow's actions ran in. *Corrected %*: runs a person "
           "overrode or rejected (*Overridden %*, *Rejected %*). *Blocks / 100 runs*: guardrail blocks. "
           "*Failed %*: runs that failed. *Human decisions*: approvals, edits, overrides and rejections.")
st.table(table(flows))
