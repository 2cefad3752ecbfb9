"""The CLI as a newcomer meets it: demo, config, clear errors, the WAL commands and a quiet Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import ServerProcess, free_port
from tests.otlp_helpers import make_request, make_span


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


def test_config_prints_json_and_masks_secrets() -> None:
    result = run_cli("config", env={"FLIGHTREC_API_TOKEN": "s3cret-token", "FLIGHTREC_INGEST_TOKENS": "a,b"})
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["http_port"] == {"env": "FLIGHTREC_HTTP_PORT", "value": 4318, "description": "OTLP/HTTP and API port"}
    assert settings["api_token"]["value"] == "********" and settings["ingest_tokens"]["value"] == "********"
    assert settings["store"]["value"] is None and settings["prices"]["value"]["gpt-4o"]["input_per_mtok"] == 2.5
    assert "s3cret-token" not in result.stdout
    table = run_cli("config", "--table")
    assert table.returncode == 0 and "FLIGHTREC_HTTP_PORT" in table.stdout and "None" not in table.stdout


def test_bad_setting_is_a_clear_error() -> None:
    result = run_cli("config", env={"FLIGHTREC_HTTP_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "http_port" in result.stdout


def test_serve_refuses_a_bad_store_dsn(tmp_path: Path) -> None:
    result = run_cli("serve", "--store", "postgres://x/y", "--data", str(tmp_path), timeout=60)
    assert result.returncode != 0
    assert "unsupported store DSN" in result.stdout + result.stderr


# --- flightrec wal: the quarantine, listed and replayed through the API --------------------------

QUARANTINED = ("00000000000000000001-c11a00000001", "00000000000000000002-c11a00000002")


def quarantine_by_hand(data: Path) -> dict[str, str]:
    """Put one valid single-span batch per segment into the server's quarantine (before it starts).

    Returns segment name -> the trace id its span carries.
    """
    from flightrec.collector.quarantine import Quarantine
    from flightrec.collector.wal import WalRecord

    quarantine = Quarantine(data / "wal" / "quarantine")
    traces: dict[str, str] = {}
    for name in QUARANTINED:
        span = make_span("invoke_agent", {"gen_ai.operation.name": "invoke_agent"})
        quarantine.add(name, [WalRecord(spans=1, payload=make_request([span]).SerializeToString())],
                       "set aside by hand for the CLI test", attempts=3)
        traces[name] = span.trace_id.hex()
    return traces


def stored(server: ServerProcess, trace_id: str) -> bool:
    with server.client() as client:
        return client.get(f"/api/traces/{trace_id}").status_code == 200


def test_wal_quarantine_lists_and_replay_stores_the_segments(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "srv")
    traces = quarantine_by_hand(server.data)
    server.start()
    try:
        api = ("--api", server.url)
        listed = run_cli("wal", "quarantine", *api, timeout=60)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "2 quarantined segments" in listed.stdout
        assert all(name in listed.stdout for name in QUARANTINED) and "set aside by hand" in listed.stdout

        unknown = run_cli("wal", "replay", "00000000000000000009-000000000000", "--actor", "me", *api, timeout=60)
        assert unknown.returncode == 1 and "HTTP 404" in unknown.stdout
        neither = run_cli("wal", "replay", "--actor", "me", *api, timeout=60)
        assert neither.returncode == 1 and "--all" in neither.stdout

        first, second = QUARANTINED
        one = run_cli("wal", "replay", first, "--actor", "me", *api, timeout=60)
        assert one.returncode == 0, one.stdout + one.stderr
        assert f"{first}: queued (1 span)" in one.stdout
        server.wait_drained()
        assert stored(server, traces[first]) and not stored(server, traces[second])

        rest = run_cli("wal", "replay", "--all", "--actor", "me", *api, timeout=60)
        assert rest.returncode == 0, rest.stdout + rest.stderr
        assert f"{second}: queued" in rest.stdout and first not in rest.stdout
        server.wait_drained()
        assert stored(server, traces[second])

        empty = run_cli("wal", "quarantine", *api, timeout=60)
        assert empty.returncode == 0 and "nothing is quarantined" in empty.stdout
        with server.client() as client:
            acts = [(e["actor"], e["act"], e["subject"]) for e in client.get("/api/audit").json()["items"]]
        assert ("me", "wal.replay", f"segment:{first}") in acts and ("me", "wal.replay", f"segment:{second}") in acts
    finally:
        server.stop()


def test_wal_commands_say_how_to_reach_a_server_that_is_down() -> None:
    done = run_cli("wal", "quarantine", "--api", f"http://127.0.0.1:{free_port()}", timeout=60)
    assert done.returncode == 1
    assert "cannot reach the API" in done.stdout and "Traceback" not in done.stdout + done.stderr


# --- Ctrl-C: a quiet, clean stop ------------------------------------------------------------------

def interrupt_when_ready(command: list[str], log: Path, ready: Callable[[str], bool], timeout_s: float = 240) -> int:
    """Run ``command`` in its own process group until ``ready(output)``, then Ctrl-C the group as a
    terminal does (the server and its writer workers all get SIGINT); returns the exit code."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, process_group=0,
                                env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + timeout_s
        while not ready(log.read_text(errors="replace")):
            assert proc.poll() is None, f"exited early ({proc.returncode}): {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never got ready: {log.read_text()[-3000:]}"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ctrl_c_stops_the_demo_quietly(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    command = [
        sys.executable, "-m", "flightrec", "demo", "--no-ui", "--workflows", "20", "--data", str(tmp_path / "demo"),
        "--records-port", str(free_port()), "--http-port", str(free_port()), "--grpc-port", str(free_port()),
    ]
    returncode = interrupt_when_ready(command, log, lambda output: "press Ctrl-C to stop." in output)
    output = log.read_text(errors="replace").split("press Ctrl-C to stop.", 1)[1]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert returncode in (0, 130), output
    assert output.strip() == f"stopped; the recorded data stays in {tmp_path / 'demo'}"


def test_ctrl_c_stops_serve_quietly_once_its_workers_have_worked(tmp_path: Path) -> None:
    http_port = free_port()
    command = [sys.executable, "-m", "flightrec", "serve", "--data", str(tmp_path / "srv"), "--http-port", str(http_port),
               "--grpc-port", str(free_port()), "--log-level", "warning"]

    def inserted_through_the_workers(_: str) -> bool:
        """A span sent and inserted: the writer's workers prepared it, so they are up."""
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
                if client.get("/api/stats").json()["spans"] > 0:
                    return True
                body = make_request([make_span("invoke_agent")]).SerializeToString()
                client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        return False

    returncode = interrupt_when_ready(command, tmp_path / "serve.log", inserted_through_the_workers)
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert returncode in (0, 130), output


def test_ctrl_c_right_after_serve_answers_is_quiet_too(tmp_path: Path) -> None:
    """The writer's workers may still be importing: they start with SIGINT blocked, so no traceback either."""
    http_port = free_port()
    command = [sys.executable, "-m", "flightrec", "serve", "--data", str(tmp_path / "srv"), "--http-port", str(http_port),
               "--grpc-port", str(free_port()), "--log-level", "warning"]

    def answering(_: str) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{http_port}/api/health/live", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    returncode = interrupt_when_ready(command, tmp_path / "serve.log", answering)
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert returncode in (0, 130), output
