"""Flight Recorder dashboards: the entrypoint only routes (``flightrec ui`` runs it).

``/?object=ticket:TCK-1042`` opens that object's story and ``/?trace=<id>`` that trace,
so links to a story or a trace can be shared as they are; ``/?plan=<id>`` opens that undo plan
in the rollback console (the link a plan's author sends to the person who approves it).
Alerts link to ``/triage?agent=<agent>``. Page scripts live in ``views/``: a ``pages/`` folder
would be Streamlit's legacy multipage convention, which runs a directly opened URL's file alone.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from flightrec.dashboards import ui

FAVICON = Path(__file__).with_name("favicon.png")

# A local file: a :material: or emoji page icon makes the browser fetch the favicon from an outside host.
st.set_page_config(page_title="Flight Recorder", page_icon=str(FAVICON), layout="wide")

# The root URL is a hidden page that forwards: Streamlit ignores a default page's url_path, so a default
# Objects page would answer /objects with "Page not found". Objects lives at /objects like every other page.
start = st.Page(ui.START_PAGE, title="Flight Recorder", url_path="start", default=True, visibility="hidden")
home = st.Page(ui.OBJECTS_PAGE, title="Objects", icon=":material/list_alt:", url_path="objects")
story = st.Page(ui.STORY_PAGE, title="Story", icon=":material/menu_book:", url_path="story")
trace = st.Page(ui.TRACE_PAGE, title="Trace", icon=":material/account_tree:", url_path="trace")
rollback = st.Page(ui.ROLLBACK_PAGE, title="Rollback", icon=":material/undo:", url_path="rollback")
triage = st.Page(ui.TRIAGE_PAGE, title="Triage", icon=":material/monitor_heart:", url_path="triage")
alerts = st.Page(ui.ALERTS_PAGE, title="Alerts", icon=":material/notifications:", url_path="alerts")
governance = st.Page(ui.GOVERNANCE_PAGE, title="Governance", icon=":material/policy:", url_path="governance")
audit = st.Page(ui.AUDIT_PAGE, title="Audit log", icon=":material/fact_check:", url_path="audit")
evidence = st.Page(ui.EVIDENCE_PAGE, title="Evidence", icon=":material/verified_user:", url_path="evidence")
signed_in = ui.sign_in_gate()
# Navigation is declared on the sign-in page too (hidden there): without it the run knows no page, and after
# signing in a link opened before (/rollback?agent=...) would land on the default page instead.
page = st.navigation({
    "Investigate": [start, home, story, trace],
    "Operate": [triage, alerts, rollback],
    "Oversee": [governance, audit, evidence],
}, position="sidebar" if signed_in else "hidden")
if not signed_in:
    st.stop()
if page.url_path == start.url_path:
    target = (story if "object" in st.query_params else trace if "trace" in st.query_params
              else rollback if "plan" in st.query_params else home)
    st.switch_page(target, query_params=st.query_params.to_dict())
with st.sidebar:
    ui.search_box()
    ui.sidebar_footer()
page.run()
