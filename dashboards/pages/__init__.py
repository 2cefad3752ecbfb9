"""Page scripts that st.navigation runs (see dashboards/app.py); not meant to be imported."""
