"""Rollback console: stop an agent, read its last actions, plan their undo, approve, execute and watch.

``/?plan=<id>`` opens a plan (the link an author sends to the person who approves it); on this
page ``?agent=support-agent`` or ``?object=ticket:TCK-1042`` preselect what to look at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from flightrec.dashboards import api, safe_text, ui
from flightrec.dashboards.safe_text import md

RUNBOOK = """\
1. **Pause the agent** (Kill switch panel). Within about 2 s the SDK refuses its actions and records
   them as *blocked*. **Drain** instead stops new work and lets what is in flight finish.
2. **Look at its last actions** below and open the stories of the objects they touched.
3. **Build the plan** (a dry run: nothing is called) and read every step.
   *Irreversible*: hand it to a person, with the reason listed.
   *Conflicted*: someone changed the object since: decide by hand.
4. **High risk?** A second person approves: the plan's author cannot.
5. **Execute** and watch the progress. On a failure, fix the cause and press **Resume**: it is safe,
   each step carries an idempotency key, so nothing is done twice.
6. **Check the stories** of the affected objects: they say who undid what, with a rollback plan.
7. **Hand the work back to humans**; resume the agent only once the cause is fixed.
"""

ACTION_COLORS = {"performed": "green", "proposed": "blue", "observed": "gray", "failed": "red", "blocked": "orange"}
RISK_COLORS = {"low": "gray", "medium": "orange", "high": "red"}
STEP_COLORS = {"reversible": "blue", "irreversible": "orange", "conflicted": "yellow", "already_undone": "gray",
               "running": "violet", "done": "green", "failed": "red"}
STEP_LABELS = {"reversible": "reversible", "irreversible": "irreversible", "conflicted": "conflicted",
               "already_undone": "already undone", "running": "undoing…", "done": "undone", "failed": "failed"}
PLAN_COLORS = {"awaiting_approval": "orange", "ready": "blue", "running": "violet", "done": "green", "failed": "red"}
PLAN_LABELS = {"awaiting_approval": "awaiting approval", "ready": "ready to execute", "running": "executing",
               "done": "done", "failed": "failed"}
CONTROL_COLORS = {"running": "green", "paused": "red", "draining": "orange", "throttled": "orange"}
CONTROL_MEANINGS = {
    "running": "acting normally",
    "paused": "every action it attempts is refused and recorded as blocked",
    "draining": "no new work starts; work in flight finishes",
    "throttled": "limited to {max_per_minute} actions a minute",
}
EXECUTED = ("reversible", "running", "done", "failed")  # the steps an execution works through
FINISHED = ("done", "failed")
START_WAIT_S = 5.0  # after Execute, how long to wait for the plan's run to begin before drawing the page
BY_AGENT, BY_OBJECT = "Agent", "Object (type:id)"
DEFAULT_LAST = 10


# --- state kept across reruns ------------------------------------------------------------------

def flash(slot: str, kind: str, text: str) -> None:
    """Remember a message (Markdown: escape what came from the API) for the next run (callbacks run
    before the page is drawn)."""
    st.session_state.setdefault("rb_flash", {})[slot] = (kind, text)


def show_flash(slot: str) -> None:
    kind, text = st.session_state.get("rb_flash", {}).pop(slot, ("", ""))
    if kind == "error":
        st.error(text, icon=":material/block:")
    elif kind == "success":
        st.success(text, icon=":material/check_circle:")
    elif kind:
        st.info(text)


def call_api(slot: str, call: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    """Run an API call from a callback; a refusal becomes a readable message in ``slot``."""
    try:
        answer = call(*args, **kwargs)
    except api.ApiError as error:
        flash(slot, "error", md(error.message))
        return None
    api.clear_cache()  # stories, objects and actions changed
    return answer


def open_plan(plan_id: str | None) -> None:
    st.session_state["rb_plan"] = st.session_state["rb_plan_param"] = plan_id
    if plan_id:
        st.query_params["plan"] = plan_id
    else:
        st.query_params.pop("plan", None)


# --- callbacks: every act happens here, before the page is drawn ---------------------------------

def build_plan(actor: str, last: int, agent: str, ref: str) -> None:
    plan = call_api("plan", api.create_plan, actor=actor, last=last, agent=agent, object=ref)
    if plan is not None:
        open_plan(plan["id"])
        flash("plan", "info", f"Plan {md(plan['id'])} built: a dry run, nothing was called. Read every step below.")


def approve(plan_id: str, actor: str) -> None:
    if call_api("plan", api.approve_plan, plan_id, actor) is not None:
        flash("plan", "success", f"Approved by {md(actor)}. Anyone may execute it now.")


def execute(plan_id: str, actor: str) -> None:
    """Start (or resume) the plan, then wait until its run has begun, so the page polls it from the start."""
    try:
        before = api.plan(plan_id)["version"]
        api.execute_plan(plan_id, actor)
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            current = api.plan(plan_id)
            if current["version"] > before or current["status"] == "done":
                break
            time.sleep(0.05)
    except api.ApiError as error:
        flash("plan", "error", md(error.message))
    api.clear_cache()


def close_plan() -> None:
    open_plan(None)


def reopen() -> None:
    """Open the chosen recent plan, and point the choices above at what it undoes."""
    chosen = st.session_state.get("rb_recent")
    if not chosen:
        return
    open_plan(chosen)
    point_at_plan(chosen)


def point_at_plan(plan_id: str) -> None:
    """Set the choices (agent or object, how many) to what a plan undoes; before those widgets are drawn."""
    try:
        selector = api.plan(plan_id)["selector"]
    except api.ApiError:
        return  # the plan view explains it
    st.session_state["rb_last"] = selector["last"]
    if selector.get("agent"):
        st.session_state["rb_by"], st.session_state["rb_agent"] = BY_AGENT, selector["agent"]
    elif selector.get("object"):
        st.session_state["rb_by"], st.session_state["rb_object"] = BY_OBJECT, selector["object"]


def switch(agent: str, command: str, actor: str) -> None:
    reason = st.session_state.get("rb_reason", "").strip()
    limit = int(st.session_state.get("rb_limit") or 0) if command == "throttle" else 0
    answer = call_api("controls", api.set_control, agent, command, actor=actor, reason=reason, max_per_minute=limit)
    if answer is not None:
        flash("controls", "success", f"{md(agent)} is now {md(answer['state'])} (set by {md(actor)}).")


# --- pieces of the page ------------------------------------------------------------------------

def choose_target() -> tuple[str, str, int]:
    """Agent or object, and how many of its last actions: (agent, object ref, last)."""
    params = st.query_params
    if "rb_by" not in st.session_state:
        st.session_state["rb_by"] = BY_OBJECT if params.get("object") and not params.get("agent") else BY_AGENT
        st.session_state["rb_agent"] = params.get("agent") or None
        st.session_state["rb_object"] = params.get("object", "")
        if st.session_state.get("rb_plan"):
            point_at_plan(st.session_state["rb_plan"])
    by_col, what_col, last_col = st.columns([1, 2, 1], vertical_alignment="bottom")
    by = by_col.segmented_control("Undo the work of", [BY_AGENT, BY_OBJECT], key="rb_by", selection_mode="single",
                                  on_change=close_plan)
    st.session_state.setdefault("rb_last", DEFAULT_LAST)
    last = int(last_col.number_input("Last actions", min_value=1, max_value=500, step=5, key="rb_last",
                                     help="How many of the most recent actions to show and to plan"))
    if by == BY_OBJECT:
        ref = what_col.text_input("Object", key="rb_object", placeholder="ticket:TCK-1042",
                                  on_change=close_plan).strip()
        if ref:
            try:
                api.split_ref(ref)
            except ValueError as exc:
                what_col.warning(md(exc), icon=":material/search_off:")
                return "", "", last
        return "", ref, last
    try:
        agents = api.action_agents()
    except api.ApiError as error:
        st.error(md(error.message), icon=":material/cloud_off:")
        agents = []
    chosen = st.session_state.get("rb_agent")
    options = agents + ([chosen] if chosen and chosen not in agents else [])
    agent = what_col.selectbox("Agent", options, key="rb_agent", index=None, accept_new_options=True,
                               placeholder="choose or type an agent", on_change=close_plan,
                               help="Agents that acted recently; type another name to reach its kill switch")
    return (agent or "").strip(), "", last


def amount_of(item: dict[str, Any]) -> str:
    """An action's or a step's amount as text: a plan step carries it formatted, an action as number + currency."""
    amount = item.get("amount")
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):
        return f"{amount:,.2f} {item.get('currency') or ''}".strip() if amount else ""
    return str(amount or "")


def candidates_table(items: list[dict[str, Any]], steps: bool) -> str:
    """The candidates as a Markdown table: one row each, with its object, amount and status (a colored badge).

    ``steps``: the rows are a plan's steps (status reversible, irreversible, done...), else actions that took effect.
    """
    rows = ["| Time (UTC) | Action | Object | Amount | Status |", "|---|---|---|---|---|"]
    for item in items:
        status = str(item.get("status") or "")
        badge = (ui.badge(status, STEP_COLORS, STEP_LABELS.get(status)) if steps
                 else ui.badge(status, ACTION_COLORS))
        name = item.get("action") if steps else item.get("name")
        cells = [ui.when(item["time"], "%m-%d %H:%M:%S") if item.get("time") else "",
                 f"**{md(name or '?')}**", md(", ".join(item.get("objects") or []) or "(no object)"),
                 md(amount_of(item)), badge]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def scope_words(selector: dict[str, Any]) -> str:
    """Markdown: what a plan's selector covers (agent, object, flow, time window), whatever it carries."""
    parts = [f"agent **{md(selector['agent'])}**" if selector.get("agent") else "",
             f"**{md(selector['object'])}**" if selector.get("object") else "",
             f"flow **{md(selector['flow'])}**" if selector.get("flow") else ""]
    words = " · ".join(part for part in parts if part) or "every agent"
    since, until = selector.get("since"), selector.get("until")
    if since:
        words += f" since {ui.when(since)} UTC"
    if until:
        words += f" until {ui.when(until)} UTC"
    return words


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def show_actions(agent: str, ref: str, last: int, plan: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The plan's candidates: with a plan open, its own steps; else the actions a plan built now would
    consider (the last ``last`` that took effect, as ``GET /api/actions?performed=true`` lists them)."""
    st.subheader("Last actions")
    if plan is not None:
        steps = plan.get("steps") or []
        st.caption(f"Exactly the {plural(len(steps), 'action')} plan {md(plan.get('id', ''))} undoes "
                   f"({scope_words(plan.get('selector') or {})}), newest first, each with what the plan "
                   "does with it.")
        if steps:
            st.markdown(candidates_table(steps, steps=True))
        return steps
    who = f"agent **{md(agent)}**" if agent else f"**{md(ref)}**"
    try:
        items = api.actions(agent=agent, object=ref, last=last, performed=True)["items"]
    except api.ApiError as error:
        st.error(md(error.message), icon=":material/cloud_off:")
        return []
    if not items:
        st.info(f"No action of {who} took effect. Agents record them as action spans "
                "(`flightrec.operation=action`); proposed and observed ones change nothing, so a plan leaves "
                "them out.", icon=":material/info:")
        return []
    st.caption(f"The last {plural(len(items), 'action')} of {who} that took effect, newest first: exactly what "
               "a plan built now considers (proposed and observed actions changed nothing, so it leaves them out).")
    st.markdown(candidates_table(items, steps=False))
    return items


def show_stories(items: list[dict[str, Any]]) -> None:
    objects = list(dict.fromkeys(ref for item in items for ref in item.get("objects") or []))
    if objects:
        with st.expander(f"Open the stories ({plural(len(objects), 'object')})", icon=":material/menu_book:"):
            for object_ref in objects:
                ui.link("object", object_ref)


def show_switch(agents: list[str], actor: str) -> None:
    """The chosen agent's kill switch: its state, big, and the buttons that change it."""
    st.subheader("Kill switch")
    if not agents:
        st.caption("Choose an agent (or an object an agent acted on) to pause, drain, throttle or resume it.")
        return
    agent = agents[0] if len(agents) == 1 else st.selectbox("Agent", agents, key="rb_switch_agent",
                                                            help="The agents that acted on this object")
    try:
        control = api.control(agent)
    except api.ApiError as error:
        st.error(md(error.message), icon=":material/cloud_off:")
        return
    state = control["state"]
    with st.container(border=True):
        st.markdown(f"{md(agent)} is")
        st.markdown(f"## :{CONTROL_COLORS.get(state, 'gray')}[{md(state.upper())}]")
        st.caption(md(CONTROL_MEANINGS.get(state, "").format(**control)))
        if control.get("updated_at"):
            because = f": “{md(control['reason'])}”" if control.get("reason") else ""
            st.caption(f"Set by **{md(control['actor'])}** at {ui.when(control['updated_at'])} UTC{because}")
    show_flash("controls")
    st.text_input("Reason", key="rb_reason", placeholder="why (recorded in the audit trail)")
    disabled = not actor
    pause_col, drain_col = st.columns(2)
    pause_col.button("Paused" if state == "paused" else "Pause", key="rb_pause", type="primary",
                     icon=":material/pause_circle:", disabled=disabled or state == "paused",
                     on_click=switch, args=(agent, "pause", actor), width="stretch",
                     help="Already paused: Resume lets it act again" if state == "paused"
                     else "Refuse every action of this agent (within ~2 s, the SDK's cache)")
    drain_col.button("Draining" if state == "draining" else "Drain", key="rb_drain",
                     icon=":material/hourglass_bottom:", disabled=disabled or state == "draining",
                     on_click=switch, args=(agent, "drain", actor), width="stretch",
                     help="Already draining" if state == "draining" else "No new work; let the work in flight finish")
    limit_col, throttle_col = st.columns(2, vertical_alignment="bottom")
    limit_col.number_input("Actions a minute", min_value=1, max_value=10_000, value=10, key="rb_limit")
    throttle_col.button("Throttle", key="rb_throttle", icon=":material/speed:", disabled=disabled,
                        on_click=switch, args=(agent, "throttle", actor), width="stretch",
                        help="Allow at most this many actions a minute")
    st.button("Resume", key="rb_resume", icon=":material/play_circle:", disabled=disabled or state == "running",
              on_click=switch, args=(agent, "resume", actor), width="stretch",
              help="Let the agent act again: only once the cause is fixed")


def recent_plans(items: list[dict[str, Any]]) -> None:
    if not items:
        return
    labels = {}
    for item in items:
        selector = item["selector"]
        target = selector.get("agent") or selector.get("object") or selector.get("flow") or "?"
        labels[item["id"]] = (f"{item['id']} · {target}, last {selector['last']} · "
                              f"{PLAN_LABELS.get(item['status'], item['status'])} · by {item['author']} · "
                              f"{ui.when(item['created_at'], '%m-%d %H:%M')}")
    st.selectbox("Reopen a recent plan", list(labels), key="rb_recent", index=None, format_func=labels.__getitem__,
                 on_change=reopen, placeholder="recent plans, newest first")


SHOWN_STEP_FIELDS = {"action_id", "status", "reason", "action", "agent", "time", "risk", "objects", "amount", "call",
                     "attempts", "finished_at", "system", "fields", "risk_reason", "reported_risk", "restored",
                     "check_result"}


def step_line(step: dict[str, Any]) -> str:
    """Markdown: the step's status, action, objects, amount, system, risk and time (whichever it carries)."""
    status = str(step.get("status") or "")
    facts = [f"**{md(step.get('action') or '?')}** on {md(', '.join(step.get('objects') or []) or '(no object)')}"]
    if step.get("amount"):
        facts.append(md(amount_of(step)))
    if step.get("system"):
        facts.append(f"on {md(step['system'])}")
    if step.get("risk"):
        facts.append(f"{md(step['risk'])} risk")
    if step.get("agent"):
        facts.append(f"by {md(step['agent'])}")
    if step.get("time"):
        facts.append(f"{ui.when(step['time'])} UTC")
    restored = step.get("restored")
    check = (" :green-badge[restored]" if restored is True else " :red-badge[not restored]" if restored is False
             else "")
    return f"{ui.badge(status, STEP_COLORS, STEP_LABELS.get(status))}{check} " + " · ".join(facts)


def show_step(step: dict[str, Any]) -> None:
    st.markdown(step_line(step))
    status, reason = step.get("status"), md(step.get("reason") or "")
    if status == "irreversible":
        st.markdown(f":orange[Hand to a person: {reason}]")
    elif status == "conflicted":
        st.markdown(f":orange[Decide by hand: {reason}]")
    elif status == "failed":
        st.markdown(f":red[Undo failed: {reason}]")
    elif reason:
        st.caption(reason)
    notes = []
    if step.get("check_result"):
        notes.append(f"Read back: {md(step['check_result'])}")
    if step.get("risk_reason"):
        notes.append(f"Risk: {md(step['risk_reason'])}")
    if step.get("reported_risk") and step.get("reported_risk") != step.get("risk"):
        notes.append(f"the agent reported {md(step['reported_risk'])} risk (not used to decide)")
    if step.get("fields"):
        notes.append(f"changed {md(', '.join(map(str, step['fields'])))}")
    notes += [f"{md(name)}: {md(value)}" for name, value in step.items()  # whatever else the planner adds
              if name not in SHOWN_STEP_FIELDS and isinstance(value, (str, int, float)) and value not in ("", None)]
    if notes:
        st.caption(" · ".join(notes))
    call = step.get("call")
    with st.expander("What will be called" if status != "done" else "What was called", icon=":material/terminal:"):
        if not call:
            st.caption("Nothing: no automatic undo exists for this action.")
        else:
            how = "HTTP POST" if call.get("kind") == "http" else "handler"
            st.markdown(f"{how} on {md(call['system'])}" if call.get("system") else how)
            st.code(str(call.get("target", "")), language=None, wrap_lines=True)  # as text, whatever it holds
            st.json(call.get("args") or {}, expanded=True)
            check = call.get("check")
            if isinstance(check, dict):
                st.caption(f"Then reads back {safe_text.code(check.get('path', ''))} to check the undo took: "
                           f"expects {safe_text.code(json.dumps(check.get('expect'), ensure_ascii=False))}")
            st.caption(f"Idempotency-Key: {safe_text.code(call.get('idempotency_key', ''))} · "
                       f"attempts so far: {md(step.get('attempts', 0))}")


def progress_of(plan: dict[str, Any]) -> tuple[int, int]:
    steps = [step for step in plan["steps"] if step["status"] in EXECUTED]
    return sum(step["status"] == "done" for step in steps), len(steps)


def plan_steps(plan_id: str, live: bool) -> None:
    """Status, progress and every step; polled each second while the plan runs."""
    try:
        plan = api.plan(plan_id)
    except api.ApiError as error:
        st.error(md(error.message), icon=":material/cloud_off:")
        return
    if live and plan["status"] in FINISHED:
        api.clear_cache()  # the stories now tell the undo
        st.rerun()  # the whole page: result, Resume button, fresh actions
    done, total = progress_of(plan)
    st.markdown(f"**Status:** {ui.badge(plan['status'], PLAN_COLORS, PLAN_LABELS.get(plan['status']))}")
    if plan["status"] in ("running", *FINISHED):
        st.progress(done / total if total else 1.0, text=f"{done} of {total} steps undone")
    counts: dict[str, int] = {}
    for step in plan["steps"]:
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    st.caption(" · ".join(f"{count} {md(STEP_LABELS.get(status, status))}" for status, count in counts.items())
               or "No step: nothing that took effect matches.")
    for step in plan["steps"]:
        with st.container(border=True):
            show_step(step)


def show_result(plan: dict[str, Any], actor: str) -> None:
    done, total = progress_of(plan)
    if plan["status"] == "done":
        st.success(f"Done: {done} of {total} steps undone. Check the stories below say who undid what.",
                   icon=":material/task_alt:")
    elif plan["status"] == "failed":
        st.error(f"Stopped: {md(plan.get('error') or 'a step failed')}. Fix the cause, then resume: steps already "
                 "done are not repeated (each carries an idempotency key).", icon=":material/error:")
        st.button("Resume", key="rb_resume_plan", type="primary", icon=":material/replay:", disabled=not actor,
                  on_click=execute, args=(plan["id"], actor))
    else:
        return
    left_by_hand = [step for step in plan["steps"] if step["status"] in ("irreversible", "conflicted")]
    if left_by_hand:
        st.warning(f"{plural(len(left_by_hand), 'step')} not undone automatically: hand them to a person "
                   "(the reason is on each step below).", icon=":material/person_alert:")
    st.markdown("**Affected objects**")
    for object_ref in dict.fromkeys(ref for step in plan["steps"] for ref in step["objects"]):
        ui.link("object", object_ref)


def share_link(plan_id: str) -> str:
    """Markdown naming the link that opens this plan (``/?plan=<id>``) for someone else."""
    url = urlsplit(st.context.url or "")
    if not url.scheme:
        return f"plan {md(plan_id)} (Reopen a recent plan)"
    path = url.path[: -len("/rollback")] if url.path.endswith("/rollback") else url.path
    link = urlunsplit((url.scheme, url.netloc, path.rstrip("/") + "/", urlencode({"plan": plan_id}), ""))
    return f"this link: {safe_text.code(link)}"


def show_plan(plan_id: str, actor: str) -> None:
    try:
        plan = api.plan(plan_id)
    except api.ApiError as error:
        if error.status == 404:
            st.warning(f"There is no plan {md(plan_id)} (any more): build one, or reopen a recent one.",
                       icon=":material/search_off:")
        else:
            st.error(md(error.message), icon=":material/cloud_off:")
        return
    selector = plan.get("selector") or {}
    st.subheader(f"Plan {md(plan['id'])}")
    st.caption(f"Undo the last {md(selector.get('last', '?'))} actions that took effect of {scope_words(selector)} · "
               f"built by **{md(plan.get('author', '?'))}** at {ui.when(plan['created_at'])} UTC")
    show_flash("plan")
    status = plan["status"]
    approved = ", ".join(f"{md(item['actor'])} ({ui.when(item['at'], '%H:%M:%S')})" for item in plan["approvals"])
    if plan["requires_approval"] and status == "awaiting_approval":
        signed_in = (ui.signed_in() or {}).get("kind") not in (None, "local")
        how = ("they sign in with their own token and press Approve" if signed_in
               else "they enter their name under “You are” and press Approve")
        st.warning(f"**Needs a second person.** This plan undoes high-risk actions: someone other than "
                   f"{md(plan['author'])} must approve it before it can run. Send them {share_link(plan_id)}: "
                   f"{how}.", icon=":material/group:")
    elif plan["requires_approval"]:
        st.caption(f"High-risk plan, approved by {approved}.")
    elif approved:
        st.caption(f"Approved by {approved}.")

    live = status == "running"
    done, total = progress_of(plan)
    if status in ("awaiting_approval", "ready"):
        approve_col, execute_col = st.columns(2)
        if status == "awaiting_approval":
            approve_col.button(f"Approve as {md(actor) or '…'}", key="rb_approve", icon=":material/how_to_reg:",
                               disabled=not actor, on_click=approve, args=(plan_id, actor), width="stretch",
                               help="A second person approves; the author's approval is refused")
        why_not = ("enter your name under “You are” first" if not actor else
                   "a second person must approve first" if status == "awaiting_approval" else
                   "no step can be undone automatically" if not total else None)
        execute_col.button(f"Execute: undo {plural(total, 'step')}", key="rb_execute", type="primary",
                           icon=":material/undo:", disabled=why_not is not None, on_click=execute,
                           args=(plan_id, actor), width="stretch",
                           help=f"Not yet: {why_not}" if why_not else "Start now; the progress shows below")
    show_result(plan, actor)
    st.fragment(plan_steps, run_every=1 if live else None)(plan_id, live)


def show_runbook() -> None:
    with st.expander("Runbook", expanded=True, icon=":material/checklist:"):
        st.markdown(RUNBOOK)


# --- the page ----------------------------------------------------------------------------------

actor = ui.you_are()
st.title("Rollback console")
st.caption("Stop an agent, see what it did, undo its last actions, and hand the work back to humans.")
if not actor:
    st.warning("Enter your name under **You are** in the sidebar: every pause, plan, approval and execution "
               "is recorded under it. The buttons stay off until then.", icon=":material/badge:")
plan_param = st.query_params.get("plan") or None
if plan_param != st.session_state.get("rb_plan_param"):  # a new ?plan= (a shared link, Plan rollback) wins
    st.session_state["rb_plan_param"] = plan_param
    if plan_param:
        st.session_state["rb_plan"] = plan_param
        if "rb_by" in st.session_state:  # choose_target points its choices at the plan on a first run
            point_at_plan(plan_param)
st.session_state.setdefault("rb_plan", None)
try:
    recent = api.plans(limit=20)["items"]
except api.ApiError as error:  # one clear message, and the runbook still readable
    st.error(md(error.message), icon=":material/cloud_off:")
    show_runbook()
    st.stop()

agent, ref, last = choose_target()
work, side = st.columns([2, 1], gap="large")
try:
    open_now = api.plan(st.session_state["rb_plan"]) if st.session_state.get("rb_plan") else None
except api.ApiError:
    open_now = None  # the plan view below explains it
with work:
    items = show_actions(agent, ref, last, open_now) if agent or ref or open_now else []
    if not (agent or ref or open_now):
        st.info("Choose an agent, or an object (type:id), to see its last actions.", icon=":material/touch_app:")
    show_stories(items)
    st.subheader("Undo plan")
    build_col, recent_col = st.columns([1, 1], vertical_alignment="bottom")
    build_col.button("Build the plan (dry run)", key="rb_build", icon=":material/fact_check:",
                     disabled=not (actor and (agent or ref)), on_click=build_plan, args=(actor, last, agent, ref),
                     width="stretch", help=f"Of the last {last} actions that took effect. Nothing is called: "
                                           "every step says whether and how it can be undone")
    with recent_col:
        recent_plans(recent)
    if st.session_state.get("rb_plan"):
        show_plan(st.session_state["rb_plan"], actor)
    else:
        show_flash("plan")
with side:
    switch_agents = [agent] if agent else list(dict.fromkeys(item["agent"] for item in items if item.get("agent")))
    show_switch(switch_agents, actor)
    show_runbook()
