"""Evidence, for compliance: pick a scope ("invoices touched by finance-agent in Q3"), preview what goes in,
export a signed bundle, and verify a bundle someone hands you.

The export is the API's (``POST /api/evidence/exports``: audited, proofs against one signed checkpoint);
verifying runs the offline verifier on the server (``POST /api/evidence/bundles/verify``), the same check
``flightrec verify bundle.zip`` makes with nothing but the file. What a verdict proves, and what it
does not, is said with it.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import streamlit as st

from flightrec.dashboards import api, safe_text, ui
from flightrec.dashboards.safe_text import md

ANY_TYPE, ANY_AGENT = "Any type", "Any agent"
ANY_TIME, LAST_30, CUSTOM = "Any time", "Last 30 days", "Custom range"
PREVIEW_KEY, BUNDLE_KEY = "evidence_preview", "evidence_bundle"
EXPORT_ROLES = {"compliance", "admin"}
COUNT_LABELS = (("spans", "Spans"), ("traces", "Traces"), ("objects", "Objects"), ("audit_entries", "Audit entries"),
                ("alerts", "Alerts"), ("plans", "Rollback plans"), ("executions", "Executions"),
                ("controls", "Kill switches"), ("erasures", "Erasures"))


def quarter_of(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3 + 1


def quarter_start(year: int, quarter: int) -> date:
    return date(year, 3 * (quarter - 1) + 1, 1)


def quarters(today: date, count: int = 6) -> dict[str, tuple[date, date]]:
    """The current quarter (to date) and the ``count - 1`` before it: label -> [start, end)."""
    year, quarter = quarter_of(today)
    found: dict[str, tuple[date, date]] = {}
    for back in range(count):
        index = year * 4 + quarter - 1 - back
        y, q = divmod(index, 4)
        start = quarter_start(y, q + 1)
        ny, nq = divmod(index + 1, 4)
        label = f"{y} Q{q + 1}" + (" (to date)" if back == 0 else "")
        found[label] = (start, quarter_start(ny, nq + 1))
    return found


def midnight(day: date) -> str:
    return datetime.combine(day, time(0), tzinfo=timezone.utc).isoformat()


def scope_body(object_type: str, object_id: str, agent: str, window: tuple[date, date] | None) -> dict[str, Any]:
    """The API's ExportScope from the form: a type and an id make one object; blanks are left out."""
    body: dict[str, Any] = {}
    kind, ident = object_type.strip(), object_id.strip()
    if kind and ident:
        body["object"] = f"{kind}:{ident}"
    elif kind:
        body["object_type"] = kind
    elif ident:
        body["object"] = ident  # the API says why an id needs its type (TYPE:ID)
    if agent.strip():
        body["agent"] = agent.strip()
    if window is not None:
        body["since"], body["until"] = midnight(window[0]), midnight(window[1])
    return body


def describe(body: dict[str, Any]) -> str:
    what = (f"object {body['object']}" if "object" in body else f"every {body['object_type']}"
            if "object_type" in body else "every object")
    who = f" touched by {body['agent']}" if "agent" in body else ""
    when = f", {body['since'][:10]} to {body['until'][:10]} (until excluded)" if "since" in body else ", any time"
    return what + who + when


def scope_form(today: date) -> dict[str, Any] | None:
    """The scope as the person picked it; None until they ask for a preview."""
    recent = recent_objects()
    seen_types = sorted({item["type"] for item in recent})
    seen_agents = sorted({agent for item in recent for agent in item.get("agents", [])})
    with st.form("evidence_scope"):
        type_col, id_col, agent_col = st.columns(3)
        object_type = type_col.selectbox("Object type", [ANY_TYPE, *seen_types], accept_new_options=True,
                                         help="Objects of this type (type a type not listed), or one object with an id")
        object_id = id_col.text_input("Object id", placeholder="e.g. INV-1001 (optional)")
        agent = agent_col.selectbox("Agent", [ANY_AGENT, *seen_agents], accept_new_options=True,
                                    help="Only traces this agent has spans in (type an agent not listed)")
        periods = quarters(today)
        period_col, since_col, until_col = st.columns(3)
        period = period_col.selectbox("Period", [ANY_TIME, LAST_30, *periods, CUSTOM], index=0)
        since = since_col.date_input("From (custom range)", value=today - timedelta(days=90))
        until = until_col.date_input("Until, excluded (custom range)", value=today + timedelta(days=1))
        asked = st.form_submit_button("Preview", type="primary", icon=":material/preview:")
    if not asked:
        return None
    window = (None if period == ANY_TIME else (today - timedelta(days=30), today + timedelta(days=1))
              if period == LAST_30 else (since, until) if period == CUSTOM else periods[period])
    return scope_body("" if object_type in (None, ANY_TYPE) else object_type, object_id,
                      "" if agent in (None, ANY_AGENT) else agent, window)


def recent_objects() -> list[dict[str, Any]]:
    """Recently touched objects, to offer their types and agents (typing others is allowed)."""
    try:
        return api.objects(limit=500).get("items", [])
    except api.ApiError:
        return []


def show_preview(preview: dict[str, Any]) -> None:
    counts = preview["counts"]
    cells = st.columns(len(COUNT_LABELS))
    for cell, (key, label) in zip(cells, COUNT_LABELS):
        cell.metric(label, f"{counts.get(key, 0):,}")
    for warning in preview.get("warnings", []):
        st.warning(md(warning), icon=":material/warning:")
    if preview["objects"]:
        more = counts["objects"] - len(preview["objects"])
        st.caption("Objects in scope: " + md(", ".join(preview["objects"])) + (f" and {more:,} more" if more > 0 else ""))
    with st.expander("The queries the server runs", icon=":material/database:"):
        st.table(safe_text.table({
            "Query": [query["name"] for query in preview["queries"]],
            "Selects": [query["selects"] for query in preview["queries"]],
            "Parameters": [", ".join(f"{k}={v}" for k, v in sorted(query["parameters"].items()))
                           for query in preview["queries"]],
        }))


def show_verdict(verdict: dict[str, Any]) -> None:
    if verdict["ok"]:
        st.success(f"Intact: bundle {md(verdict['bundle_id'])}, {verdict['files_checked']:,} files, "
                   f"{verdict['spans_checked']:,} spans and {verdict['audit_checked']:,} audit entries proven "
                   f"against the checkpoint of {verdict['checkpoint_size']:,} leaves "
                   f"(key {md(verdict['key_fingerprint'][:16])}, from the {md(verdict['key_source'])}).",
                   icon=":material/verified:")
    elif not verdict.get("readable", True):
        st.error("Not a readable evidence bundle.", icon=":material/gpp_bad:")
    else:
        st.error(f"BROKEN: {len(verdict['problems']):,} problem{'' if len(verdict['problems']) == 1 else 's'} "
                 f"in bundle {md(verdict['bundle_id'] or '?')}.", icon=":material/gpp_bad:")
    if verdict["problems"]:
        st.table(safe_text.table({
            "File": [problem["file"] for problem in verdict["problems"]],
            "Record": [problem["ref"] for problem in verdict["problems"]],
            "Problem": [problem["problem"] for problem in verdict["problems"]],
        }))
    for erased in verdict.get("erased", []):
        st.info(md(erased), icon=":material/ink_eraser:")
    proves, short = st.columns(2)
    with proves:
        st.markdown("**What it proves**\n\n" + "\n".join(f"- {md(item)}" for item in verdict["proves"]))
    with short:
        st.markdown("**What it does not prove**\n\n" + "\n".join(f"- {md(item)}" for item in verdict["does_not_prove"]))
    for note in verdict.get("notes", []):
        st.caption(md(note))


def export_section(principal: dict[str, Any] | None) -> None:
    st.subheader("Export a bundle")
    roles = set((principal or {}).get("roles", []))
    if principal and principal.get("kind") != "local" and not roles & EXPORT_ROLES:
        st.info(f"Exporting needs the compliance role; you are {md(principal['name'])} "
                f"({md(', '.join(sorted(roles)) or 'no role')}). You can still verify a bundle below.",
                icon=":material/lock:")
        return
    asked = scope_form(datetime.now(tz=timezone.utc).date())
    if asked is not None:
        st.session_state.pop(BUNDLE_KEY, None)
        try:
            st.session_state[PREVIEW_KEY] = (asked, api.export_preview(asked))
        except api.ApiError as exc:
            st.session_state.pop(PREVIEW_KEY, None)
            st.error(md(exc.message), icon=":material/error:")
    if PREVIEW_KEY not in st.session_state:
        return
    body, preview = st.session_state[PREVIEW_KEY]
    st.markdown(f"**In scope:** {md(describe(body))}")
    show_preview(preview)
    if not preview["counts"]["spans"] and not preview["counts"]["audit_entries"]:
        st.info("Nothing is in this scope: widen it to export.", icon=":material/info:")
        return
    if st.button("Export bundle", type="primary", icon=":material/inventory_2:"):
        try:
            with st.spinner("Sequencing, signing a checkpoint, proving every record..."):
                st.session_state[BUNDLE_KEY] = api.export_bundle(body)
        except api.ApiError as exc:
            st.error(md(exc.message), icon=":material/error:")
    if BUNDLE_KEY in st.session_state:
        bundle_id, name, data = st.session_state[BUNDLE_KEY]
        st.success(f"Bundle {md(bundle_id)} is ready ({ui.size(len(data))}B); the export is in the audit log.",
                   icon=":material/task_alt:")
        st.download_button("Download bundle", data, file_name=name, mime="application/zip",
                           icon=":material/download:")
        st.caption("Anyone can check it offline, with nothing but the file:")
        st.code(f"flightrec verify {name}", language="bash")


def verify_section() -> None:
    st.subheader("Verify a bundle")
    st.caption("Checks every file hash, every span's and audit entry's inclusion proof, the checkpoint and "
               "manifest signatures: the same check as `flightrec verify bundle.zip`, nothing read from the store.")
    uploaded = st.file_uploader("Evidence bundle (.zip)", type=["zip"], key="evidence_upload")
    if uploaded is None:
        return
    try:
        verdict = api.verify_bundle(uploaded.getvalue())
    except api.ApiError as exc:
        st.error(md(exc.message), icon=":material/gpp_bad:")
        return
    show_verdict(verdict)


st.title("Evidence")
st.caption("Bundles of the record anyone can verify offline: the spans as received with an inclusion proof "
           "each, the stories, alerts, rollback plans, kill-switch history and audit entries in scope, "
           "all signed.")
export_section(ui.signed_in())
verify_section()
