"""Stop an agent and plan the undo of its work from where the SRE is: the triage page and every alert.

One panel per agent: its kill switch state, Pause, Drain (and Resume once stopped), and **Plan rollback**,
which builds an undo plan (a dry run) for the agent and a time window (the alert's, or the triage
window) and opens the rollback console on it (``/rollback?plan=<id>``), the plan ready to read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import streamlit as st

from flightrec.dashboards import api, signals, ui
from flightrec.dashboards.safe_text import md

CONTROL_COLORS = {"running": "green", "paused": "red", "draining": "orange", "throttled": "orange"}
PLAN_LAST = 100  # how many of the window's actions that took effect a plan from here undoes at most
EVIDENCE_TRACES = 20  # an alert's example runs read to find where its window starts
Window = tuple[datetime | None, datetime | None]


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    return then if then.tzinfo else then.replace(tzinfo=timezone.utc)


def window_words(window: Window) -> str:
    since, until = window
    if since and until:
        return f"between {since:%m-%d %H:%M} and {until:%m-%d %H:%M} UTC"
    return f"since {since:%m-%d %H:%M} UTC" if since else "(any time)"


def alert_window(alert: dict[str, Any]) -> Window:
    """The time an alert is about: from its earliest evidence (its example runs, and for a version
    regression the first bucket of the new version) until it resolved (still open: until now)."""
    starts: list[datetime] = []
    for trace_id in alert.get("traces", [])[:EVIDENCE_TRACES]:
        try:
            spans = api.trace(trace_id)["spans"]
        except api.ApiError:
            continue
        starts += [when for when in (parse_time(span["start_time"]) for span in spans) if when]
    after = (alert.get("details") or {}).get("after", "")
    if alert.get("detector") == "version_regression" and after:
        try:
            rows = api.rollups(hours=24 * 7, bucket_s=300)
        except api.ApiError:
            rows = []
        model_prompt = " / ".join(after.split(" / ")[:2])
        starts += [change.time for change in signals.version_changes(rows, alert["agent"])
                   if change.after == model_prompt]
    started = parse_time(alert.get("started_at"))
    since = min(starts) if starts else (started - timedelta(hours=1) if started else None)
    return since, parse_time(alert.get("resolved_at"))


def _flash_key(key: str) -> str:
    return f"op_flash_{key}"


def _switch(agent: str, command: str, actor: str, reason: str, key: str) -> None:
    try:
        answer = api.set_control(agent, command, actor=actor, reason=reason)
    except api.ApiError as error:
        st.session_state[_flash_key(key)] = ("error", f"{command.capitalize()} refused: {md(error.message)}")
        return
    st.session_state[_flash_key(key)] = ("success", f"{md(agent)} is now **{md(answer['state'])}** "
                                                    f"(set by {md(actor)}).")


def _plan(agent: str, actor: str, window: Callable[[], Window], key: str) -> None:
    """Build the plan, then open the console on it (a button, not a callback: switch_page needs the run)."""
    since, until = window()
    try:
        plan = api.create_plan(actor=actor, last=PLAN_LAST, agent=agent, since=since, until=until)
    except api.ApiError as error:
        st.session_state[_flash_key(key)] = ("error", f"No plan: {md(error.message)}")
        return
    st.switch_page(ui.ROLLBACK_PAGE, query_params={"plan": plan["id"]})


def state_line(agent: str, control: dict[str, Any]) -> str:
    """Markdown: ``support-agent is PAUSED · set by erin at ...: “reason”``."""
    state = str(control.get("state") or "running")
    line = f"{md(agent)} is :{CONTROL_COLORS.get(state, 'gray')}-badge[{md(state.upper())}]"
    if control.get("updated_at") and state != "running":
        because = f": “{md(control['reason'])}”" if control.get("reason") else ""
        line += f" · set by {md(control.get('actor') or 'someone')} at {ui.when(control['updated_at'])} UTC{because}"
    return line


def agent_panel(agent: str, actor: str, *, key: str, window: Callable[[], Window], window_text: str,
                reason: str) -> None:
    """The agent's kill switch and Plan rollback, in one row; ``window`` is computed only when planning."""
    try:
        control = api.control(agent)
    except api.ApiError as error:
        st.caption(f"Kill switch unknown: {md(error.message)}")
        return
    state = str(control.get("state") or "running")
    who = None if actor else "Enter your name under “You are” in the sidebar first"
    state_col, pause_col, drain_col, resume_col, plan_col = st.columns([3, 1, 1, 1, 2], vertical_alignment="center")
    state_col.markdown(state_line(agent, control))
    pause_col.button("Pause", key=f"op_pause_{key}", icon=":material/pause_circle:", width="stretch",
                     disabled=bool(who) or state == "paused", on_click=_switch,
                     args=(agent, "pause", actor, reason, key),
                     help=who or ("Already paused: Resume lets it act again" if state == "paused"
                                  else "Refuse every action of this agent (within ~2 s)"))
    drain_col.button("Drain", key=f"op_drain_{key}", icon=":material/hourglass_bottom:", width="stretch",
                     disabled=bool(who) or state == "draining", on_click=_switch,
                     args=(agent, "drain", actor, reason, key),
                     help=who or ("Already draining" if state == "draining"
                                  else "No new work; let the work in flight finish"))
    resume_col.button("Resume", key=f"op_resume_{key}", icon=":material/play_circle:", width="stretch",
                      disabled=bool(who) or state == "running", on_click=_switch,
                      args=(agent, "resume", actor, "", key),
                      help=who or ("Running already" if state == "running"
                                   else "Let the agent act again: only once the cause is fixed"))
    if plan_col.button("Plan rollback", key=f"op_plan_{key}", icon=":material/undo:", type="primary",
                       width="stretch", disabled=bool(who),
                       help=who or f"A dry run: the undo of the last {PLAN_LAST} actions of {md(agent)} that took "
                                   f"effect {window_text}, opened in the rollback console"):
        _plan(agent, actor, window, key)
    kind, text = st.session_state.pop(_flash_key(key), ("", ""))
    if kind == "error":
        st.error(text, icon=":material/block:")
    elif kind:
        st.success(text, icon=":material/check_circle:")


def alert_panel(alert: dict[str, Any], actor: str, key: str) -> None:
    """Pause, Drain and Plan rollback for an alert's agent, the plan over the alert's window."""
    if not alert.get("agent"):
        return
    agent_panel(alert["agent"], actor, key=f"{key}_{alert['id']}", window=lambda: alert_window(alert),
                window_text="in this alert's window (from its earliest evidence until it resolved)",
                reason=f"alert {alert['id']}: {alert['detector']}")


def triage_panel(agent: str, actor: str, hours: float, window_name: str) -> None:
    """Pause, Drain and Plan rollback for an agent on the triage page, the plan over the triage window."""
    agent_panel(agent, actor, key=f"triage_{agent}",
                window=lambda: (datetime.now(tz=timezone.utc) - timedelta(hours=hours), None),
                window_text=window_name.lower(), reason="from triage")
