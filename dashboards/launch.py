"""Starting the dashboards: in place of this process (``flightrec ui``) or as a subprocess (``flightrec demo``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

APP = Path(__file__).resolve().with_name("app.py")
DEFAULT_API_URL = "http://127.0.0.1:4318"
DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"


def ui_command(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, secrets: Path | None = None) -> list[str]:
    """The command line that serves the dashboards on ``host:port`` (the API URL travels in the env).

    ``secrets``: a Streamlit secrets file with an ``[auth]`` table (OIDC sign-in), used instead of
    Streamlit's default secrets locations.
    """
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        *(("--secrets.files", str(secrets.resolve())) if secrets is not None else ()),
    ]


def ui_env(api_url: str = DEFAULT_API_URL, api_token: str | None = None) -> dict[str, str]:
    """This process's environment with the API URL (and token, when given) for the dashboards."""
    env = {**os.environ, "FLIGHTREC_API_URL": api_url}
    if api_token:
        env["FLIGHTREC_API_TOKEN"] = api_token
    return env


def exec_ui(api_url: str = DEFAULT_API_URL, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST,
            secrets: Path | None = None) -> NoReturn:
    """Become the dashboards process (``flightrec ui``): signals and the exit code are Streamlit's own."""
    command = ui_command(port, host, secrets)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, ui_env(api_url))


def start_ui(
    api_url: str = DEFAULT_API_URL,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    api_token: str | None = None,
    secrets: Path | None = None,
    **popen: Any,
) -> subprocess.Popen:
    """Start the dashboards; ``popen`` goes to ``subprocess.Popen`` (e.g. ``stdout=``)."""
    return subprocess.Popen(ui_command(port, host, secrets), env=ui_env(api_url, api_token), **popen)
