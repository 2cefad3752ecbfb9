"""The Holds section of the Audit log page: legal holds listed, placed and released through the API.

Only the API decides who may place or release (compliance or admin); a refusal is shown as it says.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from flightrec.dashboards import api, safe_text, ui
from flightrec.dashboards.safe_text import md
from flightrec.paths import api_path

KINDS = {"Object (TYPE:ID)": "object", "Agent": "agent", "Trace id": "trace"}


def hold_rows(holds: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The holds table, every cell as text."""
    return safe_text.table({
        "Id": [hold["id"] for hold in holds],
        "Holds": [f"object {hold['object_type']}:{hold['key']}" if hold["kind"] == "object"
                  else f"{hold['kind']} {hold['key']}" for hold in holds],
        "Reason": [hold["reason"] for hold in holds],
        "Placed (UTC)": [ui.when(hold["created_at"]) for hold in holds],
        "By": [hold["created_by"] for hold in holds],
        "State": [f"released by {hold['released_by']}: {hold['release_reason']}" if hold["released"] else "in force"
                  for hold in holds],
    })


def _act(what: str, path: str, body: dict[str, Any]) -> None:
    """POST to the API and say what came of it (the API's own words when it refuses)."""
    try:
        answer = api.post_json(path, body)
    except api.ApiError as refused:
        st.error(md(f"{what} refused: {refused.message}"))
    else:
        st.success(md(f"{what}: {answer['id']}"))


def show(actor: str) -> None:
    """Forms to place and to release a hold (audited by the API), then every hold."""
    st.subheader("Legal holds")
    st.caption("What a hold covers outlives its retention until it is released (compliance or admin).")
    with st.form("hold_add"):
        kind = st.selectbox("Hold", list(KINDS), key="hold_kind")
        target = st.text_input("Object, agent or trace", key="hold_target")
        reason = st.text_input("Reason", key="hold_reason")
        if st.form_submit_button("Place hold"):
            _act("Hold", "/api/holds", {KINDS[kind]: target, "reason": reason, "actor": actor})
    with st.form("hold_release"):
        hold_id = st.text_input("Release hold (its id)", key="hold_release_id")
        why = st.text_input("Why it ends", key="hold_release_reason")
        if st.form_submit_button("Release") and hold_id.strip():
            _act("Released", api_path("holds", hold_id.strip(), "release"), {"reason": why, "actor": actor})
    holds = api.get_fresh("/api/holds")["items"]
    if holds:
        st.table(hold_rows(holds))
    else:
        st.info("No legal holds.", icon=":material/info:")
