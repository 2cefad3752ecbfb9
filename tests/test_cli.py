"""The CLI as a newcomer meets it: config, clear errors, empty answers said in words, kill switches, rollback
plans step by step (by agent, flow, object or time window; after execution, each step's read-back), the
systems of record undo may call, the WAL commands and a quiet Ctrl-C. The demo has tests/test_demo.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, stacks_of
from tests.otlp_helpers import make_request, make_span
from tests.test_records import RecordsServer


def run_cli_process(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m flightrec ARGS`` in a process of its own, for what is about the process itself."""
    return subprocess.run(
        [sys.executable, "-m", "flightrec", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """The same command run in this process (typer's CliRunner): what it prints and its exit code, as a
    process would give them, without starting Python and importing the CLI for each call (seconds each).

    Every console the commands print to is a fresh one for the call, as wide as ``COLUMNS`` and without
    colour, as in a process whose output is a pipe; an exception the command did not handle is written
    to stderr as its traceback, as the interpreter would (the tests look for "Traceback")."""
    del timeout  # the API calls time out on their own (30 s)
    from rich.console import Console
    from typer.testing import CliRunner

    from flightrec.cli import app

    env = {"COLUMNS": "200", **(env or {})}
    consoles = {name: module for name, module in sys.modules.items()
                if name.startswith("flightrec.cli") and isinstance(getattr(module, "console", None), Console)}
    saved = {name: module.console for name, module in consoles.items()}
    try:
        for module in consoles.values():
            module.console = Console(width=int(env["COLUMNS"]), color_system=None, force_terminal=False)
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)
    finally:
        for name, module in consoles.items():
            module.console = saved[name]
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["flightrec", *args], result.exit_code, result.stdout, stderr)


def test_config_prints_json_and_masks_secrets() -> None:
    # Prices come from the genai-prices package; the setting holds overrides only (none by default).
    override = {"my-model": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}}
    result = run_cli_process("config", env={"FLIGHTREC_API_TOKEN": "s3cret-token-0123456", "FLIGHTREC_INGEST_TOKENS": "a,b",
                                    "FLIGHTREC_PRICES": json.dumps(override)})
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["http_port"] == {"env": "FLIGHTREC_HTTP_PORT", "value": 4318, "description": "OTLP/HTTP and API port"}
    assert settings["api_token"]["value"] == "********" and settings["ingest_tokens"]["value"] == "********"
    assert settings["store"]["value"] is None and settings["prices"]["value"]["my-model"]["input_per_mtok"] == 2.5
    assert "override" in settings["prices"]["description"]
    assert "s3cret-token" not in result.stdout
    table = run_cli("config", "--table")
    assert table.returncode == 0 and "FLIGHTREC_HTTP_PORT" in table.stdout and "None" not in table.stdout


def test_bad_setting_is_a_clear_error() -> None:
    result = run_cli("config", env={"FLIGHTREC_HTTP_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "http_port" in result.stdout


def test_serve_refuses_a_bad_store_dsn(tmp_path: Path) -> None:
    result = run_cli_process("serve", "--store", "postgres://x/y", "--data", str(tmp_path), timeout=60)
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
    done = run_cli_process("wal", "quarantine", "--api", f"http://127.0.0.1:{free_port()}", timeout=60)
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
        try:
            return proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 120 s after Ctrl-C; its stacks:\n{stacks_of(proc.pid)}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_process_that_does_not_stop_is_reported_with_its_stacks() -> None:
    """What the Ctrl-C tests print when a process hangs: every thread's frames, down to the function."""
    proc = subprocess.Popen([sys.executable, "-c", "import time\ndef stuck_here():\n    time.sleep(120)\nstuck_here()"])
    try:
        deadline = time.monotonic() + 60
        while "stuck_here" not in (stacks := stacks_of(proc.pid)):
            if "ermission" in stacks or "ptrace" in stacks.lower():
                pytest.skip(f"this machine does not let py-spy read another process: {stacks[:300]}")
            assert time.monotonic() < deadline, stacks
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    assert "time_sleep" in stacks or "sleep" in stacks, stacks


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


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that act on their own agent and register no system of record."""
    server = ServerProcess(tmp_path_factory.mktemp("cli") / "srv").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_planning_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One planning server for the tests whose agents, plans and systems are their own (none reads a time
    window across agents or asks that nothing at all is stored)."""
    server = ServerProcess(tmp_path_factory.mktemp("cli-planning") / "srv",
                           {"FLIGHTREC_RECORDS_URL": f"http://127.0.0.1:{free_port()}"}).start()
    yield server
    server.stop()


def send_action(server: ServerProcess, agent: str, name: str, ref: str, *, risk: str = "low", amount: float = 0,
                undo: dict[str, str] | None = None, system: str = "records", flow: str = "",
                minutes_ago: float = 5) -> str:
    """One action span, as an agent reports it (auto mode: it took effect); answers its action id.

    ``undo`` holds the ``flightrec.undo.*`` descriptor (kind, a path or handler as target, args, check), naming
    ``system`` as the system of record; with ``flow`` the action is a child of a root span of that name.
    """
    kind, _, ident = ref.partition(":")
    attrs = {"flightrec.operation": "action", "flightrec.action.name": name, "flightrec.action.risk": risk,
             "flightrec.mode": "auto", "flightrec.object.type": kind, "flightrec.object.id": ident,
             "flightrec.action.system": "billing" if amount else "helpdesk"}
    if amount:
        attrs |= {"flightrec.action.amount": amount, "flightrec.action.currency": "EUR"}
    if undo:
        attrs |= {"flightrec.undo.system": system} | {f"flightrec.undo.{key}": value for key, value in undo.items()}
    start_ns = time.time_ns() - int(minutes_ago * 60e9)
    spans = []
    if flow:
        root = make_span(flow, {"gen_ai.operation.name": "invoke_agent"}, start_ns=start_ns - 1_000_000,
                         duration_ns=10_000_000)
        spans.append(root)
        span = make_span(name, attrs, trace_id=root.trace_id, parent=root.span_id, start_ns=start_ns)
    else:
        span = make_span(name, attrs, start_ns=start_ns)
    spans.append(span)
    with server.client() as client:
        client.post("/v1/traces", content=make_request(spans, {"service.name": agent}).SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"}).raise_for_status()
    return f"{span.trace_id.hex()}:{span.span_id.hex()}"


def http_undo(path: str, args: dict, check: dict | None = None) -> dict[str, str]:
    """An http undo descriptor: a path on the named system, its JSON args, and optionally a read-back check."""
    return {"kind": "http", "target": path, "args": json.dumps(args)} | ({"check": json.dumps(check)} if check else {})


def plan_of(server: ServerProcess, out: str) -> dict:
    """The plan a CLI run printed (its id is in the table's title), as the API answers it."""
    plan_id = out.split("plan ", 1)[1].split(":", 1)[0]
    with server.client() as client:
        response = client.get(f"/api/rollback/plans/{plan_id}")
    assert response.status_code == 200, (out, response.text)
    return response.json()


def cell(header: str, row: str, column: str) -> str:
    """One cell of a table row, found by its column's name in the header line."""
    names = [name.strip() for name in header.split("┃")]
    return row.split("│")[names.index(column)].strip()


def row_blocks(out: str) -> list[str]:
    """Each step's table row with its continuation lines (the "why" column wraps), in the order printed."""
    blocks: list[list[str]] = []
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        if line.split("│")[1].strip().isdigit():
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    return ["\n".join(block) for block in blocks]


def test_alerts_with_a_bad_status_names_the_allowed_values(shared_server: ServerProcess) -> None:
    server = shared_server
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


def test_pausing_again_without_a_reason_keeps_the_reason(shared_server: ServerProcess) -> None:
    server = shared_server
    api = ("--api", server.url)
    first = run_cli("pause", "ops-agent", "--force", "--actor", "ana", "--reason", "refunds look wrong", *api,
                    timeout=60)
    assert first.returncode == 0 and "ops-agent: paused: refunds look wrong" in first.stdout, first.stdout
    again = run_cli("pause", "ops-agent", "--actor", "ben", *api, timeout=60)
    assert again.returncode == 0 and "ops-agent: paused: refunds look wrong" in again.stdout, again.stdout
    with server.client() as client:
        control = client.get("/api/controls/agents/ops-agent").json()
        assert (control["state"], control["reason"], control["actor"]) == ("paused", "refunds look wrong", "ben")
        resumed = run_cli("resume", "ops-agent", "--actor", "ben", *api, timeout=60)
        assert resumed.stdout.splitlines()[0] == "ops-agent: running", resumed.stdout
        assert "warning: no agent named 'ops-agent' has sent spans" in " ".join(resumed.stdout.split())
        assert client.get("/api/controls/agents/ops-agent").json()["reason"] == "", "a new state starts without one"


def test_approving_a_plan_that_needs_no_approval_is_refused_with_the_reason(shared_planning_server: ServerProcess) -> None:
    server = shared_planning_server
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


def test_the_dry_run_shows_object_amount_system_and_why_per_step(shared_planning_server: ServerProcess) -> None:
    server = shared_planning_server
    agent = "refund-bot"
    send_action(server, agent, "refund.issue", "order:ORD-7731", risk="high", amount=420.5, minutes_ago=9,
                undo=http_undo("/refunds/RF-1/undo", {"refund_id": "RF-1"}))
    # The agent calls its ticket change high risk; the operator's policy says ticket.* is low: the policy decides.
    send_action(server, agent, "ticket.status", "ticket:TCK-5150", risk="high", minutes_ago=8,
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
    plan = plan_of(server, out)
    assert len(plan["steps"]) == 3 and plan["status"] in ("ready", "awaiting_approval")
    header = next(line for line in out.splitlines() if "object(s)" in line)
    assert all(column in header for column in ("action", "amount", "system", "risk", "status", "why"))
    assert "check" not in header, "no read-back column before anything is executed"
    rows = [line for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip().isdigit()]
    blocks = row_blocks(out)
    assert len(rows) == 3 == len(blocks), out
    for step, row, block in zip(plan["steps"], rows, blocks):  # newest first, as the plan orders them
        assert step["action"] in row and step["status"].replace("_", " ") in row, (step, row)
        assert step["system"] and step["system"] in row, (step, row)
        assert step["risk_reason"].startswith("operator policy") and step["risk_reason"] in block, (step, block)
        risk_cell = cell(header, row, "risk")
        shown = step["risk"] if step["reported_risk"] == step["risk"] else f"{step['risk']} (agent: {step['reported_risk']})"
        assert risk_cell == shown, (step, row)
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
    assert "reversible" in by_action["refund.issue"] and "records" in by_action["refund.issue"]
    assert "low (agent: high)" in by_action["ticket.status"], "the agent's own risk, beside the policy's"
    assert cell(header, by_action["refund.issue"], "risk") == "high", "the agent said high too: nothing more to show"
    assert "irreversible" in by_action["email.send"] and "customer:CUS-88" in by_action["email.send"]
    assert "ticket:TCK-5150" in by_action["ticket.status"]
    if plan["steps"][1]["status"] == "conflicted":
        assert "support-agent" in by_action["ticket.status"], "conflicted: by whom"
    assert "Nothing was executed" in out or "must approve" in out


# --- rollback scopes: flow, object, a time window across agents ------------------------------------

def test_rollback_scope_errors_say_how_to_fix_them_before_calling_the_api() -> None:
    down = ("--api", f"http://127.0.0.1:{free_port()}", "--actor", "ana")  # nothing listens: no error may come from it
    cases = {
        (): "say what to undo: --agent NAME, --flow NAME, --object TYPE:ID, or a time window --since ISO",
        ("--since", "yesterday"): "--since 'yesterday' is not an ISO 8601 time; for example --since 2026-03-01T14:30",
        ("--agent", "a", "--until", "13:00 today"): "--until '13:00 today' is not an ISO 8601 time",
        ("--since", "2026-03-02", "--until", "2026-03-01T23:59"): "is before --since 2026-03-02: the time window is empty",
        ("--object", "ORD-7731"): "--object 'ORD-7731' is not TYPE:ID; for example --object order:ORD-7731",
        ("--plan", "abc", "--flow", "issue_refund"): "--plan abc runs the plan as it was made; drop --agent/--flow",
    }
    for args, said in cases.items():
        result = run_cli("rollback", *args, *down, timeout=60)
        assert result.returncode == 1, (args, result.stdout + result.stderr)
        assert said in result.stdout, (args, result.stdout)
        assert "cannot reach the API" not in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_rollback_by_flow_object_or_time_window_plans_exactly_those_actions(planning_server: ServerProcess) -> None:
    server = planning_server
    ticket = {"kind": "handler", "target": "helpdesk.set_status"}

    def ticket_undo(ident: str) -> dict[str, str]:
        return ticket | {"args": json.dumps({"ticket_id": ident, "previous_status": "open"})}

    # Two agents in the refund flow, one in triage; minutes ago: 50, 40, 30, 20, 10.
    old_refund = send_action(server, "refund-bot", "refund.issue", "order:ORD-1", amount=20, flow="issue_refund",
                             undo=http_undo("/refunds/RF-1/undo", {"refund_id": "RF-1"}), minutes_ago=50)
    triage = send_action(server, "triage-bot", "ticket.status", "ticket:TCK-1", flow="triage_ticket",
                         undo=ticket_undo("TCK-1"), minutes_ago=40)
    other_refund = send_action(server, "billing-bot", "refund.issue", "order:ORD-2", amount=30, flow="issue_refund",
                               undo=http_undo("/refunds/RF-2/undo", {"refund_id": "RF-2"}), minutes_ago=30)
    on_ticket = send_action(server, "support-bot", "ticket.status", "ticket:TCK-2", flow="triage_ticket",
                            undo=ticket_undo("TCK-2"), minutes_ago=20)
    newest = send_action(server, "refund-bot", "refund.issue", "order:ORD-3", amount=40, flow="issue_refund",
                         undo=http_undo("/refunds/RF-3/undo", {"refund_id": "RF-3"}), minutes_ago=10)
    server.wait_drained()
    now = datetime.now(timezone.utc)

    def planned(*args: str) -> tuple[dict, str]:
        result = run_cli("rollback", *args, "--actor", "ana", "--api", server.url, env={"COLUMNS": "400"}, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return plan_of(server, result.stdout), result.stdout

    def ids(plan: dict) -> list[str]:
        return [step["action_id"] for step in plan["steps"]]

    by_flow, out = planned("--flow", "issue_refund")
    assert ids(by_flow) == [newest, other_refund, old_refund], "the flow's actions across agents, newest first"
    assert by_flow["selector"]["flow"] == "issue_refund" and "flow issue_refund" in out
    assert len(row_blocks(out)) == 3 and all(agent in out for agent in ("refund-bot", "billing-bot"))
    assert ids(planned("--flow", "issue_refund", "--last", "2")[0]) == [newest, other_refund]

    by_object, _ = planned("--object", "ticket:TCK-2")
    assert ids(by_object) == [on_ticket]

    # A window across agents: from 45 to 15 minutes ago holds the middle three, whatever their agent or flow.
    since, until = (now - timedelta(minutes=45)).isoformat(), (now - timedelta(minutes=15)).isoformat()
    window, out = planned("--since", since, "--until", until)
    assert ids(window) == [on_ticket, other_refund, triage], out
    assert window["selector"]["agent"] == "" and window["selector"]["since"] and window["selector"]["until"]
    # Only --since: up to now. A time without a zone is UTC.
    naive = (now - timedelta(minutes=25)).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")
    assert ids(planned("--since", naive)[0]) == [newest, on_ticket]
    # A scope and a window narrow each other.
    assert ids(planned("--flow", "issue_refund", "--until", until)[0]) == [other_refund, old_refund]
    empty = run_cli("rollback", "--object", "ticket:TCK-404", "--actor", "ana", "--api", server.url, timeout=60)
    assert empty.returncode == 0 and "nothing to undo" in empty.stdout and "object ticket:TCK-404" in empty.stdout


# --- execution: per step, whether the undo reads back as restored ----------------------------------

@pytest.fixture
def records_server(tmp_path: Path, make_server) -> Iterator[tuple[ServerProcess, RecordsServer]]:
    """A Flight Recorder server with a live demo system of record registered as 'records'."""
    records = RecordsServer(tmp_path / "records.db").start()
    try:
        yield make_server(env={"FLIGHTREC_RECORDS_URL": records.url}), records
    finally:
        records.stop()


def test_execute_shows_per_step_whether_the_undo_was_restored(records_server) -> None:
    server, records = records_server
    with records.client() as rec:
        refund = rec.post("/refunds", json={"order_id": "ORD-9", "amount": 25.0, "currency": "EUR"})
        assert refund.status_code == 201, refund.text
        refund_id = refund.json()["refund_id"]
        before = rec.post("/tickets/TCK-9/status", json={"status": "solved"}).json()["previous_status"]
        rec.post("/tickets/TCK-7/status", json={"status": "pending"}).raise_for_status()
    agent = "undo-me"
    refunded = send_action(server, agent, "refund.issue", "order:ORD-9", amount=25.0, minutes_ago=9, undo=http_undo(
        f"/refunds/{refund_id}/undo", {"refund_id": refund_id, "amount": 25.0, "currency": "EUR"},
        check={"path": f"/refunds/{refund_id}", "expect": {"status": "reversed"}}))
    # The agent got its read-back wrong: the undo takes, but the check expects a status it never sets.
    wrong_check = send_action(server, agent, "ticket.status", "ticket:TCK-9", minutes_ago=8, undo={
        "kind": "handler", "target": "helpdesk.set_status",
        "args": json.dumps({"ticket_id": "TCK-9", "status": "solved", "previous_status": before}),
        "check": json.dumps({"path": "/tickets/TCK-9", "expect": {"status": "escalated"}})})
    unchecked = send_action(server, agent, "ticket.status", "ticket:TCK-7", minutes_ago=7, undo={
        "kind": "handler", "target": "helpdesk.set_status",
        "args": json.dumps({"ticket_id": "TCK-7", "status": "pending", "previous_status": "open"})})
    server.wait_drained()
    done = run_cli("rollback", "--agent", agent, "--execute", "--actor", "ana", "--api", server.url,
                   env={"COLUMNS": "400"}, timeout=120)
    assert done.returncode == 1, "an undo that does not read back as restored fails the command\n" + done.stdout
    out = done.stdout
    plan = plan_of(server, out)
    assert plan["status"] == "done", plan
    by_id = {step["action_id"]: step for step in plan["steps"]}
    assert (by_id[refunded]["restored"], by_id[wrong_check]["restored"], by_id[unchecked]["restored"]) == (True, False, None)
    header = next(line for line in out.splitlines() if "object(s)" in line)
    blocks = dict(zip((step["action_id"] for step in plan["steps"]), row_blocks(out)))
    assert len(blocks) == 3, out
    assert cell(header, blocks[refunded].splitlines()[0], "check") == "restored: yes"
    assert cell(header, blocks[wrong_check].splitlines()[0], "check") == "restored: no"
    assert cell(header, blocks[unchecked].splitlines()[0], "check") == "not checked"
    for action_id, block in blocks.items():
        assert cell(header, block.splitlines()[0], "status") == "done"
        check_result = by_id[action_id]["check_result"]
        assert check_result and " ".join(check_result.split()[:4]) in block, (check_result, block)
    assert f"/refunds/{refund_id} reads back as expected" in blocks[refunded]
    assert "read back: " in out and "1 restored" in out and "1 not restored" in out and "1 not checked" in out
    assert "1 step undone but not reading back" in out
    with records.client() as rec:  # the undos themselves took
        assert rec.get(f"/refunds/{refund_id}").json()["status"] == "reversed"
        assert rec.get("/tickets/TCK-9").json()["status"] == before
        assert rec.get("/tickets/TCK-7").json()["status"] == "open"
    again = run_cli("rollback", "--plan", plan["id"], "--actor", "ana", "--api", server.url, env={"COLUMNS": "400"},
                    timeout=60)
    assert again.returncode == 0 and "read back: " in again.stdout, "showing a done plan shows its read-backs too"


# --- flightrec systems ---------------------------------------------------------------------------

def test_systems_with_none_registered_says_how_to_register_one(shared_server: ServerProcess) -> None:
    server = shared_server
    listed = run_cli("systems", "--api", server.url, timeout=60)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout.startswith("no systems of record are registered: undo calls nothing")
    assert "systems register NAME --base-url URL" in listed.stdout and "┏" not in listed.stdout


def test_systems_lists_and_registers_and_undo_then_calls_only_what_was_registered(shared_planning_server: ServerProcess) -> None:
    server = shared_planning_server
    api = ("--api", server.url)
    listed = run_cli("systems", *api, timeout=60)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    header = next(line for line in listed.stdout.splitlines() if "base URL" in line)
    [records_row] = [line for line in listed.stdout.splitlines() if line.startswith("│ records ")]
    assert cell(header, records_row, "source") == "demo" and cell(header, records_row, "auth") == "none"
    assert "/refunds/{id}/undo" in listed.stdout and "/refunds/{id}" in listed.stdout
    assert "helpdesk.set_status" in listed.stdout

    billing = f"http://127.0.0.1:{free_port()}/ledger"  # nothing listens: dry runs never call it
    registered = run_cli(
        "systems", "register", "billing", "--base-url", f"http://127.0.0.1:{free_port()}/v2",
        "--path", "/refunds/{id}/undo", "--path", "/credits/{id}/undo", "--read-path", "/refunds/{id}",
        "--handler", "billing.reverse", "--auth", "bearer", "--credentials-env", "BILLING_UNDO_TOKEN",
        "--timeout", "5", "--actor", "ana", *api, timeout=60)
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert "registered billing" in registered.stdout
    assert "BILLING_UNDO_TOKEN (not set on the server)" in registered.stdout
    assert "Undo cannot call billing until the server has its credentials variable set" in registered.stdout
    with server.client() as client:
        systems = {item["name"]: item for item in client.get("/api/systems").json()["items"]}
        shown = systems["billing"]
        assert (shown["paths"], shown["read_paths"], shown["handlers"]) == (
            ["/refunds/{id}/undo", "/credits/{id}/undo"], ["/refunds/{id}"], ["billing.reverse"])
        assert (shown["auth"], shown["credentials_env"], shown["timeout_s"], shown["source"], shown["registered_by"]) == (
            "bearer", "BILLING_UNDO_TOKEN", 5.0, "api", "ana")
        audit = [(e["actor"], e["act"], e["subject"]) for e in client.get("/api/audit", params={"since": 0}).json()["items"]]
        assert audit.count(("ana", "system.register", "system:billing")) == 1

    # The group's --api reaches the subcommand too; a replacement is a new audited registration.
    again = run_cli("systems", *api, "register", "billing", "--base-url", billing, "--path", "/refunds/{id}/undo",
                    "--actor", "ben", timeout=60)
    assert again.returncode == 0 and "by ben" in again.stdout, again.stdout + again.stderr
    both = run_cli("systems", *api, timeout=60)
    assert "2 systems of record undo may call" in both.stdout and billing in both.stdout

    refused = {
        ("records", "--base-url", "http://127.0.0.1:9", "--path", "/x"): ("defined in the demo settings", "HTTP 409"),
        ("selfie", "--base-url", server.url, "--path", "/api/x"): ("own address", "HTTP 400"),
        ("Bad Name", "--base-url", billing, "--path", "/x"): ("is not a system name",),
        ("bad", "--base-url", billing, "--path", "/refunds/../undo"): ("--path: path template '/refunds/../undo'",),
        ("bad", "--base-url", "http://cfo:secret@billing.example", "--path", "/x"): ("--base-url: base_url must not",),
        ("bad", "--base-url", billing): ("give undo something to call: --path",),
        ("bad", "--base-url", billing, "--path", "/x", "--auth", "basic"): ("--auth basic needs --credentials-env VAR",),
    }
    for args, said in refused.items():
        result = run_cli("systems", "register", *args, "--actor", "ana", *api, timeout=60)
        assert result.returncode == 1, (args, result.stdout + result.stderr)
        assert all(words in result.stdout for words in said), (args, result.stdout)
        assert "Traceback" not in result.stdout + result.stderr
    no_actor = run_cli("systems", "register", "x", "--base-url", billing, "--path", "/x", *api, timeout=60,
                       env={"FLIGHTREC_ACTOR": ""})
    assert no_actor.returncode == 2 and "--actor" in no_actor.stdout + no_actor.stderr
    with server.client() as client:
        names = {item["name"] for item in client.get("/api/systems").json()["items"]}
        assert names == {"records", "billing"}, "nothing refused was registered"
        registrations = [e for e in client.get("/api/audit", params={"since": 0}).json()["items"]
                         if e["act"] == "system.register"]
        assert sorted((e["actor"], e["subject"]) for e in registrations) == [("ana", "system:billing"),
                                                                             ("ben", "system:billing")]

    # The rollback planner uses the same registry: the new system's paths are callable, others are not.
    allowed = send_action(server, "ledger-bot", "refund.issue", "order:ORD-5", amount=40, system="billing",
                          undo=http_undo("/refunds/RF-5/undo", {"refund_id": "RF-5"}), minutes_ago=3)
    credit = send_action(server, "ledger-bot", "credit.apply", "account:ACC-5", amount=10, system="billing",
                         undo=http_undo("/credits/CR-5/undo", {"credit_id": "CR-5"}), minutes_ago=2)
    server.wait_drained()
    shown = run_cli("rollback", "--agent", "ledger-bot", "--actor", "ana", *api, env={"COLUMNS": "400"}, timeout=60)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    steps = {step["action_id"]: step for step in plan_of(server, shown.stdout)["steps"]}
    assert (steps[allowed]["status"], steps[allowed]["system"]) == ("reversible", "billing"), steps[allowed]
    assert steps[credit]["status"] == "irreversible", "ben's registration replaced ana's: /credits is no longer allowed"
    assert "/credits/CR-5/undo is not among the undo paths allowed on system billing" in shown.stdout


def test_schema_prints_the_migrations_ddl_without_a_store(tmp_path: Path) -> None:
    """``flightrec schema`` (issue 13's interface): the DDL the migrations would run, single node or cluster."""
    from flightrec.store.migrations import schema_sql
    from flightrec.store.retention import RetentionPolicy

    env = {"FLIGHTREC_DATA": str(tmp_path / "never")}
    policy = RetentionPolicy()
    single = run_cli("schema", env=env)
    assert single.returncode == 0 and single.stdout == schema_sql("flightrec", retention=policy)
    assert "ON CLUSTER" not in single.stdout and "CREATE TABLE IF NOT EXISTS flightrec.otel_traces \n" in single.stdout
    assert "ORDER BY (TraceId, SpanId)\nTTL toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT (dictHas(" in single.stdout
    clustered = run_cli("schema", "--cluster", "flightrec", "--state-cluster", "flightrec_state", "--database", "obs",
                        env=env)
    assert clustered.returncode == 0 and clustered.stdout == schema_sql("obs", "flightrec", "flightrec_state", policy)
    assert "CREATE TABLE IF NOT EXISTS obs.otel_traces ON CLUSTER flightrec AS obs.otel_traces_local" in clustered.stdout
    from_env = run_cli("schema", env={**env, "FLIGHTREC_CLUSTER": "flightrec", "FLIGHTREC_STATE_CLUSTER": "flightrec_state",
                                      "FLIGHTREC_RETENTION_DAYS": "400"})
    assert from_env.stdout == schema_sql("flightrec", "flightrec", "flightrec_state",
                                         policy.model_copy(update={"spans_days": 400}))
    # spans, links, logs, recency, the trace lookup, and the spans and logs as 0029 rebuilds them
    assert from_env.stdout.count("+ toIntervalDay(400)") == 7
    assert not (tmp_path / "never").exists()  # no store was opened


@pytest.mark.parametrize(("args", "said"), [
    (["--cluster", "flightrec"], "FLIGHTREC_STATE_CLUSTER go"),
    (["--state-cluster", "flightrec_state"], "FLIGHTREC_STATE_CLUSTER go"),
    (["--database", "bad;DROP"], "database"),
    (["--cluster", "a b", "--state-cluster", "s"], "cluster"),
])
def test_schema_refuses_a_bad_setting_and_prints_no_ddl(args: list[str], said: str) -> None:
    result = run_cli("schema", *args)
    assert result.returncode == 2 and "invalid setting" in result.stdout and said in result.stdout
    assert "CREATE" not in result.stdout and "Traceback" not in result.stderr
