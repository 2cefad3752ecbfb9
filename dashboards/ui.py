"""Shared pieces of the pages: page paths, colors, error handling, links and the search box."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NoReturn

import streamlit as st

from flightrec.dashboards import api, identity
from flightrec.dashboards.safe_text import code, md

# Page scripts live in views/, not pages/: a pages/ folder next to the entrypoint is Streamlit's
# legacy multipage convention, and a URL opened directly (/rollback) would run that file standalone.
START_PAGE = "views/start.py"
OBJECTS_PAGE = "views/objects.py"
STORY_PAGE = "views/story.py"
TRACE_PAGE = "views/trace.py"
ROLLBACK_PAGE = "views/rollback.py"
TRIAGE_PAGE = "views/triage.py"
ALERTS_PAGE = "views/alerts.py"
GOVERNANCE_PAGE = "views/governance.py"
AUDIT_PAGE = "views/audit.py"
EVIDENCE_PAGE = "views/evidence.py"
ACTOR_KEY = "you_are"

STATUS_COLORS = {
    "completed": "green",
    "failed": "red",
    "blocked": "orange",
    "overridden": "violet",
    "pending": "blue",
    "undone": "gray",
}
SEVERITY_COLORS = {"info": "gray", "notice": "blue", "warning": "orange", "critical": "red"}
ALERT_SEVERITY_COLORS = {"critical": "red", "error": "orange", "warning": "yellow", "info": "blue"}
ALERT_SEVERITY_ORDER = ("critical", "error", "warning", "info")
ALERT_STATUS_COLORS = {"firing": "red", "pending": "orange", "resolved": "green"}


def stop_with(error: api.ApiError, not_found: str | None = None) -> NoReturn:
    """Explain a failed API call on the page (never a traceback) and end this run.

    ``not_found`` is Markdown (the caller escapes what it quotes); the API's own message is shown as text.
    """
    if error.status in (400, 404, 422):
        st.warning(not_found if error.status == 404 and not_found else md(error.message),
                   icon=":material/search_off:")
    else:
        st.error(md(error.message), icon=":material/cloud_off:")
    st.stop()


def load(fetch: Callable[..., Any], *args: Any, not_found: str | None = None, **kwargs: Any) -> Any:
    """``fetch(*args, **kwargs)``, or stop the page with a readable message if the API fails."""
    try:
        with st.spinner("Asking Flight Recorder..."):
            return fetch(*args, **kwargs)
    except api.ApiError as error:
        stop_with(error, not_found)


def when(iso: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An API timestamp as people read it (UTC)."""
    try:
        return datetime.fromisoformat(iso).strftime(fmt)
    except (TypeError, ValueError):
        return str(iso)


def duration(ms: float) -> str:
    """``129675`` -> ``2 min 10 s``: durations as people say them."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def status_badge(status: str) -> str:
    """Markdown for a colored status badge."""
    return f":{STATUS_COLORS.get(status, 'gray')}-badge[{md(status or 'unknown')}]"


def badge(text: str, colors: dict[str, str], label: str | None = None) -> str:
    """Markdown for a badge colored by ``colors[text]`` (gray when unknown), reading ``label`` if given."""
    return f":{colors.get(text, 'gray')}-badge[{md(label or text or 'unknown')}]"


def ago(iso: str, now: datetime | None = None) -> str:
    """How long before ``now`` an API timestamp was, as people say it (``2 h 5 min``)."""
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return ""
    now = now or datetime.now(tz=then.tzinfo or timezone.utc)
    return duration(max((now - then).total_seconds(), 0) * 1000)


def alert_badges(alert: dict[str, Any]) -> str:
    """Markdown: the alert's severity and status as colored badges."""
    return (f"{badge(alert['severity'], ALERT_SEVERITY_COLORS)} "
            f"{badge(alert['status'], ALERT_STATUS_COLORS)}")


def alert_timing(alert: dict[str, Any], capital: bool = False) -> str:
    """When an alert started and resolved (UTC), and for how long it has lasted (Markdown)."""
    started = f"{'S' if capital else 's'}tarted {when(alert['started_at'])} UTC"
    if alert.get("resolved_at"):
        lasted = ago(alert["started_at"], datetime.fromisoformat(alert["resolved_at"]))
        return f"{started} · resolved {when(alert['resolved_at'])} UTC (after {lasted})"
    return f"{started} ({md(alert['status'])} for {ago(alert['started_at'])})"


def by_urgency(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts most urgent first: firing before pending, critical before info, then newest first."""
    status_rank = {"firing": 0, "pending": 1, "resolved": 2}
    newest_first = sorted(alerts, key=lambda alert: alert["started_at"], reverse=True)
    return sorted(newest_first, key=lambda alert: (
        status_rank.get(alert["status"], 3),
        ALERT_SEVERITY_ORDER.index(alert["severity"]) if alert["severity"] in ALERT_SEVERITY_ORDER else 9,
    ))


def triage_link(agent: str, label: str | None = None) -> None:
    """A link to the triage page, focused on ``agent`` (all agents when empty); ``label`` is Markdown."""
    st.page_link(TRIAGE_PAGE, label=label or (f"Triage {md(agent)}" if agent else "Triage"),
                 icon=":material/monitor_heart:", query_params={"agent": agent} if agent else None)


def alert_links(alert: dict[str, Any], triage: bool = True, columns: int = 4) -> None:
    """Links from an alert to the triage page and to the stories and traces that show it."""
    targets: list[tuple[str, str]] = [("object", ref) for ref in alert.get("objects", [])]
    targets += [("trace", trace_id) for trace_id in alert.get("traces", [])]
    cells = st.columns(columns)
    offset = 0
    if triage:
        with cells[0]:
            triage_link(alert["agent"])
        offset = 1
    for index, (kind, key) in enumerate(targets, start=offset):
        with cells[index % columns]:
            link(kind, key)


def signed_in() -> dict | None:
    """The principal the dashboards act as, or None when the API cannot say (unreachable, refused)."""
    try:
        return api.me()
    except api.ApiError:
        return None


def sign_in_gate() -> bool:
    """With sign-in on the API (an API token is configured), ask who you are until the API accepts it.

    Answers whether the page may run. Either a token, kept for this browser session only, or, where
    Streamlit's ``[auth]`` is configured, a sign-in with the identity provider, whose ID token is sent
    instead; every request then acts as that principal, and the API records acts under its name.
    """
    try:
        principal = api.me()
    except api.ApiError as exc:
        if exc.status != 401:
            return True  # unreachable or failing: the page says so itself
        sign_in_page(exc)
        return False
    if principal.get("kind") != "local":
        with st.sidebar:
            st.caption(f"Signed in as **{md(principal['name'])}** ({md(', '.join(principal['roles']))})")
            typed = api.TOKEN_KEY in st.session_state
            if (typed or identity.logged_in()) and st.button("Sign out", icon=":material/logout:"):
                api.sign_out()
                if typed:
                    st.rerun()
                identity.logout()  # Streamlit forgets the identity cookie and starts a new session
    return True


def sign_in_page(refused: api.ApiError) -> None:
    """The sign-in page: "Sign in with <provider>" where one is configured, and the token field."""
    providers, problem = identity.providers()
    if api.TOKEN_KEY not in st.session_state and identity.logged_in() and identity.id_token():
        st.error(f"Signed in at your identity provider as {md(identity.who())}, but the API refused it: "
                 f"{md(refused.detail or refused.message)}", icon=":material/block:")
    elif api._api_token():
        st.error(md(refused.message))
    st.title("Sign in")
    if problem:
        st.warning(md(problem), icon=":material/warning:")
    if providers:
        st.caption("This Flight Recorder asks who you are: sign in with your identity provider (an admin gives "
                   "your name a role first), or paste a token you were given.")
        for name, label in providers.items():
            if st.button(f"Sign in with {label}", key=f"login-{name}", type="primary", icon=":material/login:"):
                identity.login(name)
        if identity.logged_in() and st.button("Sign out of the identity provider", icon=":material/logout:"):
            identity.logout()
    else:
        st.caption("This Flight Recorder asks who you are: paste the token you were given "
                   "(`flightrec tokens create --name NAME --role ROLE`). It is kept for this browser session only.")
    with st.form("sign_in"):
        token = st.text_input("Token", type="password")
        if st.form_submit_button("Sign in", type="primary") and token.strip():
            try:
                api.sign_in(token)
            except api.ApiError as refused_token:
                st.error(md(refused_token.message))
            else:
                st.rerun()


def you_are() -> str:
    """Who acts: the signed-in principal (the API records that name), else the sidebar's "You are" field
    (no sign-in on this API: loopback only), kept in session state across pages."""
    principal = signed_in()
    if principal is not None and principal.get("kind") != "local":
        return principal["name"]
    widget = f"_{ACTOR_KEY}"
    if widget not in st.session_state:
        st.session_state[widget] = st.session_state.get(ACTOR_KEY, "")
    name = st.sidebar.text_input("You are", key=widget, placeholder="your name",
                                 help="Who is acting: recorded with every pause, plan, approval and execution")
    st.session_state[ACTOR_KEY] = name.strip()
    return name.strip()


def object_label(ref: str) -> str:
    """``ticket:TCK-1042`` -> ``Ticket TCK-1042`` (Markdown, shown as text)."""
    kind, _, ident = ref.partition(":")
    return md(f"{kind.capitalize()} {ident}")


LINKS: dict[str, tuple[str, str, str, Callable[[str], str]]] = {
    "object": (STORY_PAGE, "object", ":material/menu_book:", object_label),
    "trace": (TRACE_PAGE, "trace", ":material/account_tree:", lambda trace_id: f"Trace {md(trace_id[:12])}…"),
    "agent": (OBJECTS_PAGE, "agent", ":material/smart_toy:", lambda agent: f"Agent {md(agent)}"),
}


def link(kind: str, key: str, label: str | None = None) -> None:
    """A link to an object's story, a trace, or the objects an agent touched (``kind`` as in search hits).

    ``label`` is Markdown: callers escape what came from spans (``md``); the default labels are escaped here.
    """
    page, param, icon, default_label = LINKS[kind]
    st.page_link(page, label=label or default_label(key), icon=icon, query_params={param: key})


def search_box() -> None:
    """The sidebar search: objects, agents and traces, each a link to its page."""
    query = st.text_input("Search", placeholder="ticket id, agent, trace id", key="search").strip()
    if not query:
        return
    try:
        results = api.search(query)
    except api.ApiError as error:
        st.error(md(error.message))
        return
    if not results["items"]:
        st.caption(f"Nothing matches “{md(query)}”.")
    for item in results["items"]:
        if item["kind"] in LINKS:
            link(item["kind"], item["key"], md(item["label"]) if item.get("label") else None)
        if item.get("detail"):
            st.caption(md(item["detail"]))


def sidebar_footer() -> None:
    st.caption(f"API: {md(api.api_url())}")
    if st.button("Refresh", icon=":material/refresh:", help="Read the latest recordings from the API"):
        api.clear_cache()
        st.rerun()


# --- ingest health: at the top of triage ---------------------------------------------------------

HEALTH_COLORS = {"ok": "green", "degraded": "orange", "failing": "red"}


def size(count: int) -> str:
    """``1536`` -> ``1.5 KiB``: byte counts as people read them."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{count} bytes"


def replay(segment: str, actor: str) -> None:
    """Replay a quarantined segment as ``actor`` (a callback: the message shows on the next run)."""
    try:
        api.replay_segment(segment, actor)
    except api.ApiError as error:
        st.session_state["ingest_flash"] = ("error", f"Replay of {md(segment)} refused: {md(error.message)}")
        return
    st.session_state["ingest_flash"] = ("success", f"Segment {md(segment)} is back in line for the writer "
                                                   f"(replayed by {md(actor)}): if the store refuses it again, "
                                                   "it comes back here.")


def show_ingest_flash() -> None:
    kind, text = st.session_state.pop("ingest_flash", ("", ""))
    if kind == "error":
        st.error(text, icon=":material/block:")
    elif kind:
        st.success(text, icon=":material/check_circle:")


def show_quarantine(actor: str) -> None:
    """The quarantined segments, each with why the store refused it and a Replay button."""
    try:
        items = api.quarantine()["items"]
    except api.ApiError as error:
        st.warning(f"The quarantined segments could not be listed: {md(error.message)}", icon=":material/help:")
        return
    if not items:
        st.caption("Nothing is quarantined.")
        return
    st.markdown(f"**Quarantined segments** ({len(items)}): set aside because the store refused what they "
                "carry; the writer moved on. Replay one once the cause is fixed.")
    for item in items:
        with st.container(border=True):
            head_col, button_col = st.columns([4, 1], vertical_alignment="center")
            head_col.markdown(f"{code(item['segment'])} · {item['spans']:,} span(s) · {size(item['bytes'])} · "
                              f"{item['attempts']} attempt(s) · quarantined {when(item['quarantined_at'])} UTC")
            button_col.button("Replay", key=f"replay-{item['segment']}", icon=":material/replay:",
                              disabled=not actor, on_click=replay, args=(item["segment"], actor), width="stretch",
                              help="Queue it for the writer again" if actor
                              else "Enter your name under “You are” in the sidebar first")
            st.caption("Why the store refused it:")
            st.code(item["reason"], language=None, wrap_lines=True)  # the store's words, as text


def ingest_health(actor: str) -> None:
    """Is everything acknowledged being stored? The server's health, backlog and quarantine.

    ``GET /api/health`` answers 503 when the server is not healthy: shown here as what it says,
    never as an unreachable server.
    """
    try:
        health = api.health()
    except api.ApiError as error:
        st.error(f"Ingest health unknown: {md(error.message)}", icon=":material/cloud_off:")
        return
    status = str(health.get("status") or "unknown")
    problems = [str(problem) for problem in health.get("problems") or []]
    backlog = int(health.get("backlog_spans") or 0)
    held = health.get("quarantine") or {}
    segments = int(held.get("segments") or 0)
    badge_md = badge(status, HEALTH_COLORS, f"ingest {status}")
    show_ingest_flash()
    if status == "ok" and not problems and not segments:
        st.caption(f"{badge_md} Backlog {backlog:,} span(s) waiting for the store · nothing quarantined.")
        return
    with st.container(border=True):
        unhealthy = health.get("http_status") == 503
        st.markdown(f"**Ingest health** {badge_md}" + (" · the server answers 503: orchestrators and load "
                                                      "balancers see it as unhealthy" if unhealthy else ""))
        for problem in problems:
            st.markdown(f"- {md(problem)}")
        backlog_metric, segments_metric, spans_metric, bytes_metric = st.columns(4)
        backlog_metric.metric("Backlog (spans)", f"{backlog:,}", help="Acknowledged, not stored yet")
        segments_metric.metric("Quarantined segments", f"{segments:,}")
        spans_metric.metric("Quarantined spans", f"{int(held.get('spans') or 0):,}")
        bytes_metric.metric("Quarantined", size(int(held.get("bytes") or 0)))
        if segments:
            show_quarantine(actor)


def redaction_summary() -> None:
    """One line on what intake redacted since the server started, per signal and rule (``GET /api/stats``)."""
    try:
        redaction = api.stats()["redaction"]
    except (api.ApiError, KeyError) as error:
        st.caption(f"Redaction at intake: unknown ({md(getattr(error, 'message', str(error)))})")
        return
    if not redaction["enabled"]:
        st.caption(":material/visibility: Redaction at intake is off: spans and logs are stored as sent "
                   "(FLIGHTREC_REDACTION_ENABLED).")
        return
    parts = []
    for signal, noun in (("traces", "spans"), ("logs", "log records")):
        counts = redaction[signal]
        if counts:
            parts.append(f"in {noun} " + " · ".join(f"{count:,} {md(rule)}" for rule, count in sorted(counts.items())))
    said = "; ".join(parts) if parts else "nothing yet"
    st.caption(f":material/visibility_off: Redacted at intake since the server started: {said} "
               f"(rules: {md(', '.join(redaction['rules']))}).")
