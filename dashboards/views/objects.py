"""Home: the business objects the agents touched most recently, each linked to its story."""

from __future__ import annotations

import streamlit as st

from flightrec.dashboards import api, ui
from flightrec.dashboards.safe_text import md

KNOWN_TYPES = ("ticket", "order", "invoice", "customer", "account", "asset")
ALL = "all types"

st.title("Business objects")
st.caption("What the agents touched most recently. Open one to read its story.")

agent = st.query_params.get("agent", "")
type_col, query_col, limit_col = st.columns([1, 2, 1])
kind = type_col.selectbox("Type", [ALL, *KNOWN_TYPES])
query = query_col.text_input("Id contains", placeholder="TCK-1042")
limit = limit_col.selectbox("Show", [50, 100, 200], help="How many of the most recent objects to list")

data = ui.load(api.objects, type=None if kind == ALL else kind, q=query.strip() or None, agent=agent or None,
               limit=limit)
items = data["items"]  # filtered by the API: the agent's most recent objects, not a filter of everyone's
if agent:
    st.info(f"Objects touched by agent **{md(agent)}**.", icon=":material/smart_toy:")
    st.page_link(ui.OBJECTS_PAGE, label="Show every agent", icon=":material/close:")
if not items:
    st.info("No business objects recorded yet for this filter. Agents link spans to objects with "
            "`flightrec.object.type` / `flightrec.object.id`.")
    st.stop()

header = st.columns([3, 2, 3, 1, 2])
for column, title in zip(header, ("Object", "Last seen (UTC)", "Agents", "Runs", "Status"), strict=True):
    column.markdown(f"**{title}**")
for item in items:
    ref = f"{item['type']}:{item['id']}"
    name, seen, agents, runs, status = st.columns([3, 2, 3, 1, 2], vertical_alignment="center")
    with name:
        ui.link("object", ref)
    seen.markdown(ui.when(item["last_seen"]))
    agents.markdown(md(", ".join(item["agents"])))
    runs.markdown(md(item["traces"]))
    status.markdown(ui.status_badge(item["last_status"]))
