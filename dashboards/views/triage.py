"""Triage, for whoever was paged: is ingest healthy, what is firing, the golden signals of every agent,
and what changed.

``/triage?agent=support-agent`` (the link in every alert) focuses one agent.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from flightrec.dashboards import api, charts, operate, safe_text, signals, ui
from flightrec.dashboards.safe_text import md

ALL_AGENTS = "All agents"
WINDOWS = {"Last hour": (1, 300), "Last 6 hours": (6, 900), "Last 24 hours": (24, 900),
           "Last 3 days": (72, 3600), "Last 7 days": (168, 4 * 3600)}
DEFAULT_WINDOW = "Last 24 hours"
WORSE_COLORS = {1: "red", -1: "green"}


# --- the agent in focus: ?agent= in the URL, a selectbox on the page ----------------------------

def focus(agents: list[str]) -> str:
    """The agent chosen (empty for all); a new ``?agent=`` in the URL wins over the last choice."""
    param = st.query_params.get("agent", "")
    if param != st.session_state.get("triage_agent_param") or "triage_agent" not in st.session_state:
        st.session_state["triage_agent_param"] = param
        st.session_state["triage_agent"] = param or ALL_AGENTS
    chosen = st.session_state["triage_agent"]
    options = [ALL_AGENTS, *agents, *([chosen] if chosen not in (ALL_AGENTS, *agents) else [])]
    agent = st.selectbox("Agent", options, key="triage_agent", help="Focus on one agent (the alerts link here so)")
    agent = "" if agent == ALL_AGENTS else agent
    st.session_state["triage_agent_param"] = agent
    if agent:
        st.query_params["agent"] = agent
    else:
        st.query_params.pop("agent", None)
    return agent


def show_all() -> None:
    st.session_state["triage_agent"] = ALL_AGENTS


# --- run detectors now ---------------------------------------------------------------------------

def run_pass() -> None:
    try:
        st.session_state["triage_pass"] = ("ok", api.run_detectors())
    except api.ApiError as error:
        st.session_state["triage_pass"] = ("error", error.message)


def alert_line(alert: dict[str, Any]) -> str:
    return f"{ui.alert_badges(alert)} **{md(alert['agent'] or alert['detector'])}**: {md(alert['summary'])}"


def show_pass() -> None:
    """What the last "Run detectors now" found: fired, resolved, deliveries."""
    kind, result = st.session_state.get("triage_pass", ("", None))
    if kind == "error":
        st.error(f"The detector pass did not run: {md(result)}", icon=":material/cloud_off:")
        return
    if kind != "ok":
        return
    fired, resolved = result["fired"], result["resolved"]
    head = (f"Detector pass over {result['runs']:,} runs: {result['findings']} finding(s) in "
            f"{result['seconds']:.2f} s. Fired {len(fired)}, resolved {len(resolved)}.")
    with st.container(border=True):
        (st.warning if fired else st.success)(head, icon=":material/notifications_active:" if fired
                                              else ":material/check_circle:")
        for alert in fired:
            st.markdown(f":red[**Fired**] {alert_line(alert)}")
        for alert in resolved:
            st.markdown(f":green[**Resolved**] {alert_line(alert)}")
        if not fired and not resolved:
            st.caption("Nothing changed: alerts already firing keep firing, and no one was paged again.")
        for delivery in result.get("deliveries", []):
            outcome = (f":green[delivered] ({delivery.get('status_code')})" if delivery["ok"]
                       else f":red[failed]: {md(delivery.get('error') or str(delivery.get('status_code')))}")
            st.caption(f"{md(delivery['change'])} → {md(delivery['router'])}: {outcome}, "
                       f"{delivery.get('attempts', 0)} attempt(s)")


# --- active alerts -------------------------------------------------------------------------------

def show_alert(alert: dict[str, Any]) -> None:
    with st.container(border=True):
        st.markdown(f"{ui.alert_badges(alert)} **{md(alert['agent'] or '(no agent)')}** · "
                    f"{md(alert['detector'])}")
        st.markdown(f"**{md(alert['summary'])}**")
        st.caption(ui.alert_timing(alert, capital=True))
        ui.alert_links(alert, triage=False)
        operate.alert_panel(alert, actor, "triage")
        if alert.get("details"):
            with st.expander("Details", icon=":material/info:"):
                st.table(safe_text.table({"fact": list(alert["details"]), "value": list(alert["details"].values())}))


def show_active(active: list[dict[str, Any]], agent: str) -> None:
    firing = sum(alert["status"] == "firing" for alert in active)
    pending = len(active) - firing
    st.subheader("Active alerts")
    if not active:
        who = f"for {md(agent)}" if agent else "for any agent"
        st.success(f"Nothing is firing or pending {who}.", icon=":material/check_circle:")
        return
    st.caption(f"{firing} firing, {pending} pending"
               + (f" for **{md(agent)}**" if agent else "") + ". Most urgent first.")
    for alert in ui.by_urgency(active):
        show_alert(alert)


def show_outliers(active: list[dict[str, Any]]) -> None:
    unusual = [alert for alert in active if alert["detector"] == "unusual_traces"]
    if not unusual:
        return
    st.subheader("Unusual traces")
    st.caption("Runs far outside the usual on several counts at once (spans, tool calls, tokens, duration, "
               "errors, retries, guardrail blocks). Open one to see what it did.")
    for alert in unusual:
        st.markdown(f"**{md(alert['agent'])}**")
        for trace_id, reason in signals.unusual_traces(alert):
            link_col, why_col = st.columns([1, 3], vertical_alignment="center")
            with link_col:
                ui.link("trace", trace_id)
            why_col.caption(md(reason))


# --- golden signals and version changes ----------------------------------------------------------

def before_after_table(lines: list[dict[str, Any]]) -> str:
    rows = ["| Signal | Before | After | Change |", "|---|---|---|---|"]
    for line in lines:
        change = md(line["change"])
        color = WORSE_COLORS.get(line["worse"])
        rows.append(f"| {md(line['signal'])} | {md(line['before'])} | {md(line['after'])} | "
                    + (f":{color}[**{change}**]" if color else change) + " |")
    return "\n".join(rows)


def show_change(rows: list[dict[str, Any]], change: signals.VersionChange, alerts: list[dict[str, Any]]) -> None:
    lines = signals.before_after(rows, change)
    worse = [line["signal"].lower() for line in lines if line["worse"] > 0]
    with st.container(border=True):
        st.markdown(f":material/swap_horiz: **Version change** at {ui.when(change.time.isoformat(), '%m-%d %H:%M')} "
                    f"UTC: {safe_text.code(change.before)} → {safe_text.code(change.after)}")
        regression = [alert for alert in alerts if alert["detector"] == "version_regression"]
        for alert in regression:
            st.markdown(f"{ui.alert_badges(alert)} {md(alert['summary'])}")
        st.caption("Before and after, over the runs of each version in the window"
                   + (f". Worse after the change: {md(', '.join(worse))}." if worse else "."))
        st.markdown(before_after_table(lines))


def show_agent(rows: list[dict[str, Any]], agent: str, alerts: list[dict[str, Any]], focused: bool) -> None:
    mine = [alert for alert in alerts if alert["agent"] == agent]
    firing = [alert for alert in mine if alert["status"] == "firing"]
    title_col, link_col = st.columns([4, 1], vertical_alignment="bottom")
    title = f"{md(agent)}" + (f" :red-badge[{len(firing)} firing]" if firing else "")
    title_col.markdown(f"### {title}")
    title_col.caption(f"Now running {safe_text.code(signals.current_version(rows, agent))}")
    if not focused:
        with link_col:
            ui.triage_link(agent, "Focus on this agent")
    operate.triage_panel(agent, actor, hours, window)
    changes = signals.version_changes(rows, agent)
    st.plotly_chart(charts.golden_signals(signals.series(rows, agent), changes), width="stretch",
                    config={"displaylogo": False}, key=f"signals-{agent}")
    for change in changes:
        show_change(rows, change, mine)


# --- the page ------------------------------------------------------------------------------------

actor = ui.you_are()
st.title("Triage")
st.caption("What is firing, how each agent is doing, and what changed. Times are UTC.")
active = ui.load(api.active_alerts)
ui.ingest_health(actor)
ui.redaction_summary()
agent_col, window_col, run_col = st.columns([2, 2, 1], vertical_alignment="bottom")
with window_col:
    window = st.selectbox("Window", list(WINDOWS), index=list(WINDOWS).index(DEFAULT_WINDOW), key="triage_window")
hours, bucket_s = WINDOWS[window]
rows = ui.load(api.rollups, hours=hours, bucket_s=bucket_s)
with agent_col:
    agent = focus(sorted({*signals.agents_of(rows), *(alert["agent"] for alert in active if alert["agent"])}))
run_col.button("Run detectors now", icon=":material/radar:", on_click=run_pass, width="stretch",
               help="One detector pass now; shows what fired or resolved (and pages as configured)")
show_pass()

if agent:
    active = [alert for alert in active if alert["agent"] == agent]
    rows = [row for row in rows if row["agent"] == agent]
    st.button("Show every agent", icon=":material/close:", type="tertiary", on_click=show_all)
show_active(active, agent)
show_outliers(active)

st.subheader("Golden signals")
st.caption(f"Per agent (those firing first), {window.lower()} in {bucket_s // 60}-minute buckets: runs, "
           "failed runs, p95 latency (runs-weighted over its flows), cost and the share of runs people overrode. "
           "Each model / prompt version is its own color; a dashed red line marks the first bucket of a new version.")
if not rows:
    st.info(f"No runs recorded {window.lower()}" + (f" for **{md(agent)}**" if agent else "")
            + ". Agents send their traces to the collector (OTLP); pick a longer window to look further back.",
            icon=":material/info:")
    st.stop()
alerted = {alert["agent"] for alert in active if alert["status"] == "firing"}
for name in sorted(signals.agents_of(rows), key=lambda name: (name not in alerted, name)):  # firing first
    show_agent(rows, name, active, focused=bool(agent))
