"""Every alert the detectors raised: filter by status, agent and detector; open the facts behind each.

``?status=firing`` (or pending, resolved, all) and ``?agent=`` preselect the filters.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from flightrec.dashboards import api, operate, safe_text, ui
from flightrec.dashboards.safe_text import md

STATUSES = ("firing", "pending", "resolved", "all")
ANY = "any"
DETECTORS = {
    "version_regression": "worse after a model, prompt or agent version change",
    "baseline_drift": "a signal drifted from its usual level",
    "unusual_traces": "runs far outside the usual",
    "loops": "the same tool called with the same arguments over and over",
    "budgets": "spend above its budget",
}


def from_url(key: str, param: str, allowed: tuple[str, ...] | None, default: str) -> None:
    """Seed a filter from ``?param=`` when the URL changed since the last run (a shared link wins)."""
    value = st.query_params.get(param, "")
    seen = f"{key}_param"
    if value != st.session_state.get(seen) or key not in st.session_state:
        st.session_state[seen] = value
        st.session_state[key] = value if value and (allowed is None or value in allowed) else default


def to_url(key: str, param: str, value: str, default: str) -> None:
    st.session_state[f"{key}_param"] = "" if value == default else value
    if value == default:
        st.query_params.pop(param, None)
    else:
        st.query_params[param] = value


def show_alert(alert: dict[str, Any]) -> None:
    with st.container(border=True):
        head_col, time_col = st.columns([3, 2])
        head_col.markdown(f"{ui.alert_badges(alert)} **{md(alert['agent'] or '(no agent)')}** · "
                          f"{md(alert['detector'])}")
        time_col.caption(ui.alert_timing(alert, capital=True))
        st.markdown(md(alert["summary"]))
        ui.alert_links(alert)
        operate.alert_panel(alert, actor, "alerts")
        with st.expander("Details", icon=":material/info:", key=f"alert-{alert['id']}"):
            facts = {**alert.get("details", {}), "detector": f"{alert['detector']}: "
                     f"{DETECTORS.get(alert['detector'], 'see the detector settings')}",
                     "dedup key": alert["dedup_key"], "group": alert["group"], "alert id": alert["id"],
                     "last updated (UTC)": ui.when(alert["updated_at"])}
            st.table(safe_text.table({"fact": list(facts), "value": [str(value) for value in facts.values()]}))


actor = ui.you_are()
st.title("Alerts")
st.caption("What the detectors found, newest first. Firing alerts paged someone (if a pager route is set); "
           "pending ones wait for their detector's hold time; resolved ones stopped being found. Times are UTC.")

from_url("alerts_status", "status", STATUSES, "all")
from_url("alerts_agent", "agent", None, ANY)
status_col, agent_col, detector_col, limit_col = st.columns([3, 2, 2, 1], vertical_alignment="bottom")
status = status_col.segmented_control("Status", STATUSES, key="alerts_status", selection_mode="single") or "all"
limit = limit_col.selectbox("Show", [50, 200, 1000], index=1, key="alerts_limit", help="How many of the newest")
alerts = ui.load(api.alerts, "" if status == "all" else status, limit=limit)

agents = sorted({alert["agent"] for alert in alerts if alert["agent"]})
chosen_agent = st.session_state["alerts_agent"]
agent = agent_col.selectbox("Agent", [ANY, *agents, *([chosen_agent] if chosen_agent not in (ANY, *agents) else [])],
                            key="alerts_agent")
detector = detector_col.selectbox("Detector", [ANY, *sorted({alert["detector"] for alert in alerts})],
                                  key="alerts_detector")
to_url("alerts_status", "status", status, "all")
to_url("alerts_agent", "agent", agent, ANY)

shown = [alert for alert in alerts
         if (agent == ANY or alert["agent"] == agent) and (detector == ANY or alert["detector"] == detector)]
counts = {name: sum(alert["status"] == name for alert in shown) for name in ("firing", "pending", "resolved")}
firing_metric, pending_metric, resolved_metric = st.columns(3)
firing_metric.metric("Firing", counts["firing"])
pending_metric.metric("Pending", counts["pending"])
resolved_metric.metric("Resolved", counts["resolved"])
if not shown:
    what = "" if status == "all" else f"{status} "
    st.info(f"No {what}alerts" + (f" for **{md(agent)}**" if agent != ANY else "")
            + (f" from {md(detector)}" if detector != ANY else "")
            + ". The detectors run on the server's interval, or now from the Triage page.", icon=":material/info:")
    ui.triage_link("", "Open Triage")
    st.stop()
st.caption(f"{len(shown)} alert(s)" + (" (the API's newest only: show more above)" if len(alerts) >= limit else ""))
for alert in shown:
    show_alert(alert)
