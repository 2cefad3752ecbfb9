"""Page scripts that st.navigation runs (see dashboards/app.py); not meant to be imported.

Not named ``pages``: next to the entrypoint that is Streamlit's legacy multipage folder, and a URL
opened directly in a new session (``/rollback``) would run its file standalone, without navigation.
"""
