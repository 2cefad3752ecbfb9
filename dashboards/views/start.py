"""The root URL: the entrypoint forwards it to Objects, or to the page a shared link names
(``/?object=``, ``/?trace=``, ``/?plan=``), before this page would run."""

from __future__ import annotations

import streamlit as st

from flightrec.dashboards import ui

st.switch_page(ui.OBJECTS_PAGE, query_params=st.query_params.to_dict())
