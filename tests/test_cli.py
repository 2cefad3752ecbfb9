"""The CLI as a newcomer meets it: config, clear errors, empty answers said in words, kill switches, rollback
plans step by step, the WAL commands and a quiet Ctrl-C. The demo has tests/test_demo.py."""

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
import pytest

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


# --- alerts, empty answers, kill switches, approvals, dry runs -------------------------------------

@pytest.fixture
def planning_server(make_server) -> ServerProcess:
    """A server with a system of record registered (nothing listens there: dry runs never call it)."""
    return make_server(env={"FLIGHTREC_RECORDS_URL": f"http://127.0.0.1:{free_port()}"})


def send_action(server: ServerProcess, agent: str, name: str, ref: str, *, risk: str = "low", amount: float = 0,
                undo: dict[str, str] | None = None, minutes_ago: float = 5) -> None:
    """One action span, as an agent reports it (auto mode: it took effect)."""
    kind, _, ident = ref.partition(":")
    attrs = {"flightrec.operation": "action", "flightrec.action.name": name, "flightrec.action.risk": risk,
             "flightrec.mode": "auto", "flightrec.object.type": kind, "flightrec.object.id": ident,
             "flightrec.action.system": "billing" if amount else "helpdesk"}
    if amount:
        attrs |= {"flightrec.action.amount": amount, "flightrec.action.currency": "EUR"}
    if undo:
        attrs |= {f"flightrec.undo.{key}": value for key, value in undo.items()}
    span = make_span(name, attrs, start_ns=time.time_ns() - int(minutes_ago * 60e9))
    with server.client() as client:
        client.post("/v1/traces", content=make_request([span], {"service.name": agent}).SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"}).raise_for_status()


def test_alerts_with_a_bad_status_names_the_allowed_values(server: ServerProcess) -> None:
    bad = run_cli("alerts", "--status", "bogus", "--api", server.url, timeout=60)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    said = bad.stdout + bad.stderr
    assert "bogus" in said and all(value in said for value in ("pending", "firing", "resolved", "all"))
    assert "Traceback" not in said and "literal_error" not in said and "HTTP 422" not in said


def test_empty_answers_say_so(planning_server: ServerProcess) -> None:
    server = planning_server
    api = ("--api", server.url)
    firing = run_cli("alerts", *api, timeout=60)
    assert firing.returncode == 0 and firing.stdout.strip() == "no firing alerts", firing.stdout + firing.stderr
    every = run_cli("alerts", "--status", "all", *api, timeout=60)
    assert every.returncode == 0 and every.stdout.strip() == "no alerts", every.stdout
    actions = run_cli("actions", "--agent", "nobody-acted", *api, timeout=60)
    assert actions.returncode == 0 and actions.stdout.strip() == "no actions for agent nobody-acted", actions.stdout
    on_object = run_cli("actions", "--object", "ticket:T-0", *api, timeout=60)
    assert on_object.stdout.strip() == "no actions on ticket:T-0", on_object.stdout
    plan = run_cli("rollback", "--agent", "nobody-acted", "--actor", "me", *api, timeout=60)
    assert plan.returncode == 0 and "nothing to undo" in plan.stdout and "agent nobody-acted" in plan.stdout, plan.stdout
    assert "┏" not in firing.stdout + actions.stdout + plan.stdout, "no empty tables"


def test_pausing_again_without_a_reason_keeps_the_reason(server: ServerProcess) -> None:
    api = ("--api", server.url)
    first = run_cli("pause", "ops-agent", "--actor", "ana", "--reason", "refunds look wrong", *api, timeout=60)
    assert first.returncode == 0 and "ops-agent: paused: refunds look wrong" in first.stdout, first.stdout
    again = run_cli("pause", "ops-agent", "--actor", "ben", *api, timeout=60)
    assert again.returncode == 0 and "ops-agent: paused: refunds look wrong" in again.stdout, again.stdout
    with server.client() as client:
        control = client.get("/api/controls/agents/ops-agent").json()
        assert (control["state"], control["reason"], control["actor"]) == ("paused", "refunds look wrong", "ben")
        resumed = run_cli("resume", "ops-agent", "--actor", "ben", *api, timeout=60)
        assert resumed.stdout.strip() == "ops-agent: running", resumed.stdout
        assert client.get("/api/controls/agents/ops-agent").json()["reason"] == "", "a new state starts without one"


def test_approving_a_plan_that_needs_no_approval_is_refused_with_the_reason(planning_server: ServerProcess) -> None:
    server = planning_server
    send_action(server, "mailer", "email.send", "customer:CUS-1")  # no undo descriptor: nothing needs approval
    server.wait_drained()
    with server.client() as client:
        plan = client.post("/api/rollback/plans", json={"agent": "mailer", "actor": "ana"}).json()
        assert not plan["requires_approval"] and plan["steps"], plan
        done = run_cli("approve", plan["id"], "--actor", "ben", "--api", server.url, timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "needs no approval" in done.stdout and "HTTP 409" in done.stdout, done.stdout
        after = client.get(f"/api/rollback/plans/{plan['id']}").json()
        assert after["approvals"] == [] and after["status"] == plan["status"]
        acts = [entry["act"] for entry in client.get("/api/audit").json()["items"]]
        assert "rollback.approve" not in acts


def test_the_dry_run_shows_object_amount_system_and_why_per_step(planning_server: ServerProcess) -> None:
    server = planning_server
    agent = "refund-bot"
    send_action(server, agent, "refund.issue", "order:ORD-7731", risk="high", amount=420.5, minutes_ago=9,
                undo={"kind": "http", "target": "http://127.0.0.1:9/refunds/RF-1/undo", "args": '{"refund_id": "RF-1"}'})
    send_action(server, agent, "ticket.status", "ticket:TCK-5150", minutes_ago=8,
                undo={"kind": "handler", "target": "helpdesk.set_status",
                      "args": '{"ticket_id": "TCK-5150", "previous_status": "open"}'})
    send_action(server, "support-agent", "ticket.status", "ticket:TCK-5150", minutes_ago=7,
                undo={"kind": "handler", "target": "helpdesk.set_status",
                      "args": '{"ticket_id": "TCK-5150", "previous_status": "pending"}'})
    send_action(server, agent, "email.send", "customer:CUS-88", minutes_ago=6)
    server.wait_drained()
    shown = run_cli("rollback", "--agent", agent, "--last", "5", "--dry-run", "--actor", "ana", "--api", server.url,
                    env={"COLUMNS": "400"}, timeout=60)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    out = shown.stdout
    plan_id = out.split("plan ", 1)[1].split(":", 1)[0]
    with server.client() as client:
        plan = client.get(f"/api/rollback/plans/{plan_id}").json()
    assert len(plan["steps"]) == 3 and plan["status"] in ("ready", "awaiting_approval")
    header = next(line for line in out.splitlines() if "object(s)" in line)
    assert all(column in header for column in ("action", "amount", "system", "status", "why"))
    rows = [line for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip().isdigit()]
    assert len(rows) == 3, out
    for step, row in zip(plan["steps"], rows):  # newest first, as the plan orders them
        assert step["action"] in row and step["status"].replace("_", " ") in row, (step, row)
        assert all(ref in row for ref in step["objects"]), (step, row)
        if step["amount"]:
            assert step["amount"] in row, (step, row)
        if step["reason"]:
            assert step["reason"] in row, (step, row)
        system = step.get("system") or (step.get("call") or {}).get("system")
        if system:
            assert system in row, (step, row)
    by_action = dict(zip((step["action"] for step in plan["steps"]), rows))
    assert "420.50 EUR" in by_action["refund.issue"] and "order:ORD-7731" in by_action["refund.issue"]
    assert "irreversible" in by_action["email.send"] and "customer:CUS-88" in by_action["email.send"]
    assert "ticket:TCK-5150" in by_action["ticket.status"]
    if plan["steps"][1]["status"] == "conflicted":
        assert "support-agent" in by_action["ticket.status"], "conflicted: by whom"
    assert "Nothing was executed" in out or "must approve" in out
