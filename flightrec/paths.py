"""API paths with names encoded whole: shared by the CLI, the SDK and the dashboards (stdlib only)."""

from __future__ import annotations

from urllib.parse import quote


def path_segment(text: str) -> str:
    """One URL path segment holding ``text`` whole: ``/``, spaces, quotes, line breaks, any script.

    Everything but unreserved characters is percent-encoded; a name made only of dots is too,
    so no client (httpx removes dot segments) can turn a name into a step up the path.
    """
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if encoded.strip(".") == "" else encoded


def api_path(*segments: str) -> str:
    """An ``/api`` path from its segments, each encoded whole: ``api_path("controls", "agents", name)``."""
    return "/api/" + "/".join(path_segment(segment) for segment in segments)
