"""The Streamlit dashboards: stories, objects and traces, read from the API over HTTP only."""
