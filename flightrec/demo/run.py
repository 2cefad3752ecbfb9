"""The demo: server, system of record and a live agent fleet on an embedded store, then what to open."""

from __future__ import annotations

import secrets
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flightrec.demo import fleet_catalog
from flightrec.cli_output import add_text_row, print_detection
from flightrec.demo.fleet import FleetConfig, FleetReport, run_fleet as run_fleet_quietly
from flightrec.sdk import api_path
from flightrec.server import BackgroundServer, make_records_server, make_server, wait_until_interrupted
from flightrec.settings import Settings

DEFAULT_SEED = 7
DEFAULT_HTTP_PORT = 4318


class DemoConfig(BaseModel):
    workflows: int = 300
    seed: int | None = Field(None, description=f"fleet seed; None: {DEFAULT_SEED} on a new store, a fresh one on a rerun")
    data: Path = Path(".flightrec/demo")
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = 4317
    records_port: int = 4400
    ui_port: int = 8501
    ui: bool = True
    serve_on: bool = True
    pace_s: float = Field(5.0, ge=0, description="while serving, a live fleet runs one workflow this often (0: none)")
    command: str = Field("flightrec", description="how the user runs flightrec, for the commands printed")


def wait_for_backlog(client: httpx.Client, timeout_s: float = 120) -> None:
    """Until everything acknowledged is queryable."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/api/health").json()["backlog_spans"] == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the store did not catch up with the fleet in time")


def print_object(console: Console, client: httpx.Client, ref: str) -> str:
    """An object's spans as a table, then the first lines of its story; returns the trace id of its first span."""
    kind, _, ident = ref.partition(":")
    spans = client.get(api_path("objects", kind, ident, "spans"))
    spans.raise_for_status()
    rows = spans.json()["spans"]
    table = Table("time (UTC)", "agent", "operation", "span", "detail", title=escape(f"spans of {ref}"))
    for span in rows[:40]:
        detail = span["model"] or span["tool"] or span["action_name"] or span["human_decision"] or span["guardrail_verdict"]
        add_text_row(table, span["start_time"][11:19], span["agent"], span["operation"], span["name"], detail)
    console.print(table)
    story = client.get(api_path("objects", kind, ident, "story")).json()
    console.print("\n[bold]Its story[/bold]", Text(f"({story['status']}): {story['summary']}"))
    for step in story["steps"][:6]:
        console.print(Text(f"  {step['time'][11:19]}  {step['sentence']}"), highlight=False)
    return rows[0]["trace_id"] if rows else ""


class LiveFleet:
    """A small fleet that keeps acting while the demo serves: one workflow every ``pace_s`` seconds.

    Each workflow is a one-workflow fleet run with its own seed, stamped just before now, acting on
    the system of record and asking the kill switches first (a paused agent's work is refused). The
    injected regression goes on, so its alert keeps firing until someone acts. ``stop()`` returns
    once the workflow in flight has been exported.
    """

    def __init__(self, endpoint: str, records_url: str, pace_s: float, regressed: bool,
                 run: Callable[[FleetConfig], FleetReport] = run_fleet_quietly,
                 report_error: Callable[[str], None] | None = None) -> None:
        self.endpoint, self.records_url, self.pace_s, self.regressed = endpoint, records_url, pace_s, regressed
        self.run = run
        self.report_error = report_error
        self.seed = secrets.randbelow(2**31)
        self.workflows = 0
        self.refused = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-live-fleet", daemon=True)

    def config(self, index: int) -> FleetConfig:
        spacing = float(fleet_catalog.WORKFLOW_SPACING_S)
        regression = {"regression_at": 0} if self.regressed else {"no_regression": True}
        return FleetConfig(endpoint=self.endpoint, workflows=1, seed=self.seed + index, records_url=self.records_url,
                           check_controls=True, spacing_s=spacing,
                           start=datetime.now(timezone.utc) - timedelta(seconds=spacing), **regression)

    def _loop(self) -> None:
        index = 0
        while not self._stop.wait(self.pace_s):
            try:
                report = self.run(self.config(index))
            except Exception as exc:  # the server may be stopping; a live demo must not die loudly
                if self._stop.is_set():
                    return
                if not self.errors and self.report_error is not None:
                    self.report_error(f"the live fleet could not send a workflow ({exc}); it keeps trying")
                self.errors.append(str(exc))
            else:
                self.workflows += report.workflows
                self.refused += report.refused
            index += 1

    def start(self) -> LiveFleet:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)


def choose_seed(config: DemoConfig, earlier_spans: int) -> int:
    """The given seed; else the default one on a new store, a fresh one when the store holds an earlier run
    (the same seed would send the same traces again, which the store refuses as differing copies)."""
    if config.seed is not None:
        return config.seed
    return DEFAULT_SEED if not earlier_spans else secrets.randbelow(2**31)


def print_pages(console: Console, config: DemoConfig, *, base: str, ui_started: bool, example: str, trace_id: str,
                agent: str) -> None:
    """Every page worth opening, with its URL."""
    ui = f"http://127.0.0.1:{config.ui_port}"
    kind, _, ident = example.partition(":")
    dashboards = [
        ("objects", f"{ui}/objects", "every business object the agents touched"),
        ("story", f"{ui}/story?object={quote(example, safe=':')}", f"the story of {example}"),
        ("trace", f"{ui}/trace?trace={trace_id}", "one of its runs, span by span") if trace_id else None,
        ("triage", f"{ui}/triage?agent={quote(agent)}", f"golden signals, with {agent} selected"),
        ("alerts", f"{ui}/alerts", "what the detectors raised"),
        ("governance", f"{ui}/governance", "corrections by people and guardrail blocks, per flow"),
        ("rollback", f"{ui}/rollback?agent={quote(agent)}", f"pause {agent}, plan and run the undo of its last actions"),
    ]
    api = [
        ("spans", f"{base}{api_path('objects', kind, ident, 'spans')}", f"the spans of {example} as JSON"),
        ("API docs", f"{base}/docs", "every route, to try in the browser"),
        ("metrics", f"{base}/metrics", "the server's own Prometheus metrics"),
    ]
    if ui_started:
        console.print("\n[bold]Open[/bold] the dashboards:")
    else:
        console.print(f"\n[bold]Dashboards[/bold] (not started; start them with "
                      f"`{config.command} ui --api {base} --port {config.ui_port}`), then open:", soft_wrap=True)
    table = Table.grid(padding=(0, 2))
    for row in [row for row in dashboards if row]:
        table.add_row("  " + row[0], Text(row[1], style="link " + row[1]), Text(row[2], style="dim"))
    console.print(table, soft_wrap=True)
    console.print("[bold]The API[/bold]:")
    table = Table.grid(padding=(0, 2))
    for name, url, what in api:
        table.add_row("  " + name, Text(url, style="link " + url), Text(what, style="dim"))
    console.print(table, soft_wrap=True)


def _api_option(config: DemoConfig, base: str) -> str:
    return "" if config.http_port == DEFAULT_HTTP_PORT else f" --api {base}"


def run_demo(config: DemoConfig, console: Console, run_fleet: Callable[[FleetConfig], FleetReport]) -> None:
    """Start everything, run the fleet, print what was recorded and what to open; serve on (a live fleet
    acting at ``pace_s``) until Ctrl-C.

    Ctrl-C (KeyboardInterrupt) stops the live fleet, the dashboards and both servers in order, the
    WAL flushed into the store, and is then raised on for the caller to report.
    """
    records_url = f"http://127.0.0.1:{config.records_port}"
    base = f"http://127.0.0.1:{config.http_port}"
    settings = Settings(data=config.data, http_port=config.http_port, grpc_port=config.grpc_port, host="127.0.0.1",
                        records_url=records_url, prices=fleet_catalog.DEMO_PRICES)
    config.data.mkdir(parents=True, exist_ok=True)
    records = BackgroundServer(make_records_server(config.records_port, config.data / "records.db"), "records")
    server = BackgroundServer(make_server(settings))
    ui: subprocess.Popen | None = None
    live: LiveFleet | None = None
    command = config.command
    printed = False
    try:
        records.start()
        server.start()
        with httpx.Client(base_url=base, timeout=30) as client:
            earlier = client.get("/api/stats").json()["spans"]
            seed = choose_seed(config, earlier)
            if earlier:
                console.print(Text(f"{config.data} already holds {earlier:,} spans from an earlier run; "
                                   f"this run adds {config.workflows:,} new workflows (seed {seed})."))
        report = run_fleet(FleetConfig(endpoint=base, workflows=config.workflows, seed=seed,
                                       records_url=records_url, check_controls=True))
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_for_backlog(client)
            stats = client.get("/api/stats").json()
            console.print(
                f"\n[bold]Recorded[/bold] {stats['spans']} spans in {stats['traces']} traces, "
                f"linked to {stats['objects']} business objects ({stats['rejected_spans']} rejected)."
            )
            example = next((ref for ref in report.example_objects if ref.startswith("ticket:")), report.example_objects[0])
            trace_id = print_object(console, client, example)
            if report.regression_agent:
                console.print(f"\n[bold]The fleet's injected regression[/bold]: {report.regression_agent} changed model "
                              f"at workflow {report.regression_at}.")
                result = client.post("/api/detectors/run", timeout=120).json()
                active = [alert for status in ("firing", "pending")
                          for alert in client.get("/api/alerts", params={"status": status}).json()["alerts"]]
                print_detection(console, result, active, report.regression_agent)
        agent = report.regression_agent or "ops-agent"
        if not config.serve_on:
            printed = True
            return
        if config.ui:
            from flightrec.dashboards.launch import start_ui

            ui = start_ui(base, config.ui_port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print_pages(console, config, base=base, ui_started=ui is not None, example=example, trace_id=trace_id,
                    agent=agent)
        console.print(Text(f"Agents send OTLP to {base} (gRPC 127.0.0.1:{config.grpc_port}); "
                           f"the system of record is {records_url}/state."), soft_wrap=True)
        if config.pace_s > 0:
            live = LiveFleet(base, records_url, config.pace_s, regressed=bool(report.regression_agent),
                             report_error=lambda message: console.print(Text(message, style="yellow"))).start()
            console.print(Text(f"A live fleet keeps acting: a workflow every {config.pace_s:g} s"
                               + (f", {agent} still on its regressed model" if report.regression_agent else "")
                               + "; a paused agent's new work is refused."), soft_wrap=True)
        api_option = _api_option(config, base)
        console.print(Text(f"Try: {command} rollback --agent {agent} --last 5 --actor you{api_option}"), soft_wrap=True)
        console.print(Text(f" or: {command} pause {agent} --actor you --reason 'regressed model'{api_option}"),
                      soft_wrap=True)
        console.print("Serving; press Ctrl-C to stop.")
        wait_until_interrupted()
    finally:
        if live is not None:
            live.stop()
        if ui is not None:
            ui.terminate()
            ui.wait(timeout=30)
        server.stop()
        records.stop()
        if printed:
            print_stopped(console, config)


def print_stopped(console: Console, config: DemoConfig) -> None:
    """With --exit: the servers are gone, so no URLs; how to serve the same data again."""
    data = shlex.quote(str(config.data))
    port = "" if config.http_port == DEFAULT_HTTP_PORT else f" --http-port {config.http_port}"
    console.print(Text(
        f"\nStopped (--exit): the server and the system of record are no longer running; the data stays in "
        f"{config.data}.\nTo serve it again with a live fleet and the dashboards: {config.command} demo --data {data}{port}"
        f"\n  or the recorded data alone: {config.command} serve --data {data}{port}, then {config.command} ui"
        + (f" --api http://127.0.0.1:{config.http_port}" if port else "")), soft_wrap=True)
