"""Shared pieces of the pages: page paths, colors, error handling, links and the search box."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

import streamlit as st

from dashboards import api

OBJECTS_PAGE = "pages/objects.py"
STORY_PAGE = "pages/story.py"
TRACE_PAGE = "pages/trace.py"
ROLLBACK_PAGE = "pages/rollback.py"
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
MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]{}<>#~$|])")


def stop_with(error: api.ApiError, not_found: str | None = None) -> NoReturn:
    """Explain a failed API call on the page (never a traceback) and end this run."""
    if error.status in (400, 404, 422):
        st.warning(not_found if error.status == 404 and not_found else error.message, icon=":material/search_off:")
    else:
        st.error(error.message, icon=":material/cloud_off:")
    st.stop()


def load(fetch: Callable[..., Any], *args: Any, not_found: str | None = None, **kwargs: Any) -> Any:
    """``fetch(*args, **kwargs)``, or stop the page with a readable message if the API fails."""
    try:
        with st.spinner("Asking Flight Recorder..."):
            return fetch(*args, **kwargs)
    except api.ApiError as error:
        stop_with(error, not_found)


def plain(text: str) -> str:
    """Text shown as is in Markdown: no accidental emphasis, links or ``$...$`` math."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", text)


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
    return f":{STATUS_COLORS.get(status, 'gray')}-badge[{status or 'unknown'}]"


def badge(text: str, colors: dict[str, str], label: str | None = None) -> str:
    """Markdown for a badge colored by ``colors[text]`` (gray when unknown), reading ``label`` if given."""
    return f":{colors.get(text, 'gray')}-badge[{plain(label or text or 'unknown')}]"


def you_are() -> str:
    """The sidebar's "You are" field: the acting person's name, kept in session state across pages."""
    widget = f"_{ACTOR_KEY}"
    if widget not in st.session_state:
        st.session_state[widget] = st.session_state.get(ACTOR_KEY, "")
    name = st.sidebar.text_input("You are", key=widget, placeholder="your name",
                                 help="Who is acting: recorded with every pause, plan, approval and execution")
    st.session_state[ACTOR_KEY] = name.strip()
    return name.strip()


def object_label(ref: str) -> str:
    kind, _, ident = ref.partition(":")
    return f"{kind.capitalize()} {ident}"


LINKS: dict[str, tuple[str, str, str, Callable[[str], str]]] = {
    "object": (STORY_PAGE, "object", ":material/menu_book:", object_label),
    "trace": (TRACE_PAGE, "trace", ":material/account_tree:", lambda trace_id: f"Trace {trace_id[:12]}…"),
    "agent": (OBJECTS_PAGE, "agent", ":material/smart_toy:", lambda agent: f"Agent {agent}"),
}


def link(kind: str, key: str, label: str | None = None) -> None:
    """A link to an object's story, a trace, or the objects an agent touched (``kind`` as in search hits)."""
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
        st.error(error.message)
        return
    if not results["items"]:
        st.caption(f"Nothing matches “{plain(query)}”.")
    for item in results["items"]:
        if item["kind"] in LINKS:
            link(item["kind"], item["key"], item.get("label") or None)
        if item.get("detail"):
            st.caption(plain(item["detail"]))


def sidebar_footer() -> None:
    st.caption(f"API: {api.api_url()}")
    if st.button("Refresh", icon=":material/refresh:", help="Read the latest recordings from the API"):
        api.clear_cache()
        st.rerun()
