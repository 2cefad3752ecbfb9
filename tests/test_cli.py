"""The CLI as a newcomer meets it: demo, config, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flightrec", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_demo_records_the_fleet_and_lists_a_ticket(tmp_path: Path) -> None:
    result = run_cli(
        "demo", "--exit", "--workflows", "40", "--data", str(tmp_path / "demo"), "--records-port", str(free_port()),
        "--http-port", str(free_port()), "--grpc-port", str(free_port()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Recorded" in out and "business objects" in out
    spans = int(out.split("Recorded", 1)[1].split()[0])
    assert spans > 40 * 5
    assert "spans of ticket:" in out and "/api/objects/ticket/" in out
    assert "invoke_agent" in out or "agent" in out


def test_config_shows_settings_and_masks_secrets() -> None:
    result = run_cli("config", env={"FLIGHTREC_API_TOKEN": "s3cret-token", "FLIGHTREC_INGEST_TOKENS": "a,b"})
    assert result.returncode == 0, result.stderr
    assert "FLIGHTREC_HTTP_PORT" in result.stdout and "4318" in result.stdout
    assert "s3cret-token" not in result.stdout and "********" in result.stdout


def test_bad_setting_is_a_clear_error() -> None:
    result = run_cli("config", env={"FLIGHTREC_HTTP_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "http_port" in result.stdout


def test_serve_refuses_a_bad_store_dsn(tmp_path: Path) -> None:
    result = run_cli("serve", "--store", "postgres://x/y", "--data", str(tmp_path), timeout=60)
    assert result.returncode != 0
    assert "unsupported store DSN" in result.stdout + result.stderr
