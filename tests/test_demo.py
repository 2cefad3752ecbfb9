"""`flightrec demo` as a newcomer meets it: a live fleet while it serves, every page to open with a URL
that answers, a "Try:" line that runs as printed without the venv on PATH, a rerun that says what is
already firing, and `--exit` that points at no stopped server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from flightrec import cli_output
from flightrec.cli_output import flightrec_command, print_detection, print_plan
from tests.conftest import ROOT, free_port, stacks_of

VENV_BIN = str(Path(sys.executable).parent)


def path_without_the_venv() -> str:
    return os.pathsep.join(entry for entry in os.environ.get("PATH", "").split(os.pathsep)
                           if entry and os.path.realpath(entry) != os.path.realpath(VENV_BIN))


def demo_env() -> dict[str, str]:
    """A fresh shell: the venv is not activated, so `flightrec` is not on PATH."""
    return {**os.environ, "COLUMNS": "200", "PATH": path_without_the_venv()}


def demo_args(tmp_path: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "flightrec", "demo", "--no-ui", "--data", str(tmp_path / "demo"),
            "--records-port", str(free_port()), "--http-port", str(free_port()), "--grpc-port", str(free_port()), *more]


def wait_until(condition, what: str, timeout_s: float = 120, step_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out waiting for {what}")


def test_demo_serves_a_live_fleet_every_page_and_a_try_line_that_works(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(demo_args(tmp_path, "--workflows", "20", "--pace", "0.2"), stdout=out,
                                stderr=subprocess.STDOUT, process_group=0, env=demo_env(), cwd=ROOT)
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"exited early ({proc.returncode}): {log.read_text()[-3000:]}"
            return "press Ctrl-C to stop." in log.read_text(errors="replace")

        wait_until(ready, "the demo to serve", 240)
        printed = log.read_text(errors="replace")
        urls = re.findall(r"https?://\S+", printed)
        for page in ("/objects", "/story?object=ticket:", "/trace?trace=", "/triage?agent=", "/alerts", "/governance",
                     "/rollback?agent=", "/docs", "/metrics", "/spans"):
            assert any(page in url for url in urls), (page, printed)
        base = next(url for url in urls if url.endswith("/docs")).removesuffix("/docs")
        for url in urls:
            if url.startswith(base) and "/api/" in url or url.endswith(("/docs", "/metrics")):
                assert httpx.get(url, timeout=30).status_code == 200, url
        trace = next(url for url in urls if "/trace?trace=" in url).split("=", 1)[1]
        assert httpx.get(f"{base}/api/traces/{trace}", timeout=30).status_code == 200

        # The live fleet acts while the demo serves: spans keep arriving, no fixed sleep.
        with httpx.Client(base_url=base, timeout=30) as client:
            before = client.get("/api/stats").json()["spans"]
            wait_until(lambda: client.get("/api/stats").json()["spans"] > before, "the live fleet's spans", 60)

        # The Try line runs as printed in a shell where the venv is not activated.
        [try_line] = [line for line in printed.splitlines() if line.startswith("Try: ")]
        command = try_line.removeprefix("Try: ")
        assert not command.startswith("flightrec "), "flightrec is not on PATH here: the line must say where it is"
        tried = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT,
                               env=demo_env())
        assert tried.returncode == 0, tried.stdout + tried.stderr
        assert "object(s)" in tried.stdout and "why" in tried.stdout, tried.stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            returncode = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            stacks = stacks_of(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"still running 120 s after Ctrl-C; its stacks:\n{stacks}") from None
    output = log.read_text(errors="replace").split("press Ctrl-C to stop.", 1)[1]
    assert returncode == 130, output
    assert output.strip() == f"stopped; the recorded data stays in {tmp_path / 'demo'}", output


def run_demo_exit(tmp_path: Path, *more: str) -> str:
    result = subprocess.run(demo_args(tmp_path, "--exit", *more), capture_output=True, text=True, timeout=240,
                            env=demo_env(), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_demo_exit_then_a_rerun_say_what_fired_and_point_at_no_stopped_server(tmp_path: Path) -> None:
    first = run_demo_exit(tmp_path, "--workflows", "200")
    assert "Recorded" in first and "business objects" in first and "spans of ticket:" in first
    assert int(first.split("Recorded", 1)[1].split()[0]) > 200 * 5
    assert "fired 1 alert" in first and "support-agent got worse" in first, first
    assert_points_at_no_stopped_server(first)

    again = run_demo_exit(tmp_path, "--workflows", "200")
    assert "already holds" in again and "from an earlier run" in again
    assert "0 fired" not in again, again
    assert "the regression is already firing since an earlier pass" in again and "FIRING" in again, again
    assert "differing copies" not in again, "a rerun sends new traces, not the same ones again"
    assert_points_at_no_stopped_server(again)


def assert_points_at_no_stopped_server(output: str) -> None:
    """--exit stops every server: no page to open, only commands that start them again."""
    assert "Stopped (--exit)" in output and "demo --data" in output and "serve --data" in output, output
    assert "Open the dashboards" not in output and "Try:" not in output
    for line in output.splitlines():
        for url in re.findall(r"https?://\S+", line):
            assert f"--api {url}" in line, f"a URL of a stopped server: {line}"


def test_the_printed_command_is_the_one_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "venv" / "bin" / "flightrec"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert flightrec_command() == "venv/bin/flightrec"
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert flightrec_command() == "flightrec"
    other = tmp_path / "elsewhere" / "flightrec"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", f"{other.parent}:/usr/bin:/bin")
    assert flightrec_command() == "venv/bin/flightrec", "another flightrec on PATH is not this one"


def recorded(print_to) -> str:
    console = Console(record=True, width=400, color_system=None)
    print_to(console)
    return console.export_text()


def test_a_plan_table_shows_every_field_a_step_carries_even_new_ones() -> None:
    plan = {
        "id": "p1", "status": "awaiting_approval", "requires_approval": True, "approvals": [], "error": "",
        "selector": {"agent": "refund-bot", "last": 3},
        "steps": [
            {"action_id": "a3", "status": "conflicted", "action": "ticket.status", "agent": "refund-bot",
             "time": "2026-01-02T03:04:05Z", "risk": "low", "objects": ["ticket:T-9"], "amount": "",
             "reason": "ticket T-9 was changed after this action by support-agent", "system": "helpdesk",
             "call": {"kind": "handler", "system": "helpdesk", "target": "helpdesk.set_status", "args": {}}},
            {"action_id": "a2", "status": "reversible", "action": "refund.issue", "agent": "refund-bot",
             "time": "2026-01-02T03:04:04Z", "risk": "high", "risk_reason": "refunds over 100 EUR", "objects":
             ["order:O-1"], "amount": "420.00 EUR", "reason": "", "restored": False, "a_new_field": {"x": 1},
             "call": {"kind": "http", "system": "billing", "target": "/refunds/R-1/undo", "args": {}}},
            {"action_id": "a1", "status": "irreversible", "action": "email.send", "agent": "refund-bot",
             "time": "2026-01-02T03:04:03Z", "risk": "low", "objects": ["customer:C-1"], "amount": 12.5,
             "currency": "USD", "reason": "email.send recorded no undo descriptor", "call": None},
        ],
    }
    text = recorded(lambda console: print_plan(console, plan, "venv/bin/flightrec"))
    rows: dict[str, str] = {}
    action = ""
    for line in text.splitlines():
        cells = line.split("│")
        if line.startswith("│") and cells[1].strip().isdigit():
            action = cells[3].strip()  # #, time, action (one agent: no agent column)
            rows[action] = line
        elif line.startswith("│") and action:
            rows[action] += "\n" + line
    assert "helpdesk" in rows["ticket.status"] and "by support-agent" in rows["ticket.status"]
    assert "conflicted" in rows["ticket.status"] and "ticket:T-9" in rows["ticket.status"]
    refund = rows["refund.issue"]
    assert all(part in refund for part in ("order:O-1", "420.00 EUR", "billing", "high", "risk: refunds over 100 EUR",
                                           "/refunds/R-1/undo", "restored: no", 'a new field: {"x": 1}'))
    assert "12.50 USD" in rows["email.send"] and "irreversible" in rows["email.send"]
    assert "no undo descriptor" in rows["email.send"]
    assert "venv/bin/flightrec approve p1 --actor NAME" in text
    assert "1 conflicted, 1 reversible, 1 irreversible" in text
    narrow = Console(record=True, width=80, color_system=None)
    print_plan(narrow, plan)
    stacked = narrow.export_text()
    assert "┏" not in stacked, "too narrow for a table: one block per step, nothing cut off"
    assert all(part in stacked for part in ("refund.issue on order:O-1 · reversible", "420.00 EUR", "billing",
                                            "by support-agent", "12.50 USD", "restored: no"))


def test_a_detector_pass_never_reads_as_a_miss() -> None:
    alert = {"id": "x", "agent": "support-agent", "status": "firing", "severity": "warning",
             "summary": "support-agent got worse", "started_at": "2026-01-02T03:04:05Z"}
    quiet = {"runs": 300, "fired": [], "resolved": []}
    text = recorded(lambda console: print_detection(console, quiet, [alert], "support-agent"))
    assert "0 fired" not in text and "already firing since an earlier pass" in text and "support-agent got worse" in text
    text = recorded(lambda console: print_detection(console, {**quiet, "fired": [alert]}, [alert], "support-agent"))
    assert "fired 1 alert" in text and text.count("support-agent got worse") == 1
    text = recorded(lambda console: print_detection(console, quiet, [], None))
    assert "0 fired" not in text and "found nothing out of the usual" in text
    assert cli_output.plural(1, "alert") == "1 alert" and cli_output.plural(2, "alert") == "2 alerts"


CTRL_C_ON_ANOTHER_THREAD = """
import signal, threading, time
from flightrec.server import wait_until_interrupted

woke = threading.Event()
def interrupt_from_a_thread():
    time.sleep(0.2)  # not a timing assertion: the main thread is either waiting already or enters at once
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    if not woke.wait(60):  # hang guard: a wait that missed the signal, woken so the test can say so
        print("missed", flush=True)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
threading.Thread(target=interrupt_from_a_thread, daemon=True).start()
try:
    wait_until_interrupted()
except KeyboardInterrupt:
    woke.set()
    print("interrupted", flush=True)
"""


def test_the_demo_wait_stops_on_a_ctrl_c_that_landed_on_another_thread() -> None:
    """The kernel may give a process's SIGINT to any thread; Python's handler then waits for the main
    thread to run, which the demo's old `time.sleep(3600)` never let it do (CI's demo hang)."""
    done = subprocess.run([sys.executable, "-c", CTRL_C_ON_ANOTHER_THREAD], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.stdout.split() == ["interrupted"], done.stdout + done.stderr
