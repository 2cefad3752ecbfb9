"""The demo: server, system of record and a live agent fleet on an embedded store, then what to open."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flightrec.cli_output import add_text_row, print_pass
from flightrec.fleet import FleetConfig, FleetReport
from flightrec.sdk import api_path
from flightrec.server import BackgroundServer, make_records_server, make_server
from flightrec.settings import Settings


class DemoConfig(BaseModel):
    workflows: int = 300
    seed: int = 7
    data: Path = Path(".flightrec/demo")
    http_port: int = 4318
    grpc_port: int = 4317
    records_port: int = 4400
    ui_port: int = 8501
    ui: bool = True
    serve_on: bool = True


def wait_for_backlog(client: httpx.Client, timeout_s: float = 120) -> None:
    """Until everything acknowledged is queryable."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/api/health").json()["backlog_spans"] == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the store did not catch up with the fleet in time")


def print_object(console: Console, client: httpx.Client, ref: str) -> None:
    """An object's spans as a table, then the first lines of its story."""
    kind, _, ident = ref.partition(":")
    spans = client.get(api_path("objects", kind, ident, "spans"))
    spans.raise_for_status()
    table = Table("time (UTC)", "agent", "operation", "span", "detail", title=escape(f"spans of {ref}"))
    for span in spans.json()["spans"][:40]:
        detail = span["model"] or span["tool"] or span["action_name"] or span["human_decision"] or span["guardrail_verdict"]
        add_text_row(table, span["start_time"][11:19], span["agent"], span["operation"], span["name"], detail)
    console.print(table)
    story = client.get(api_path("objects", kind, ident, "story")).json()
    console.print("\n[bold]Its story[/bold]", Text(f"({story['status']}): {story['summary']}"))
    for step in story["steps"][:6]:
        console.print(Text(f"  {step['time'][11:19]}  {step['sentence']}"), highlight=False)


def run_demo(config: DemoConfig, console: Console, run_fleet: Callable[[FleetConfig], FleetReport]) -> None:
    """Start everything, run the fleet, print what was recorded and what to open; serve on until Ctrl-C.

    Ctrl-C (KeyboardInterrupt) stops the dashboards and both servers in order, the WAL flushed
    into the store, and is then raised on for the caller to report.
    """
    records_url = f"http://127.0.0.1:{config.records_port}"
    base = f"http://127.0.0.1:{config.http_port}"
    settings = Settings(data=config.data, http_port=config.http_port, grpc_port=config.grpc_port, host="127.0.0.1",
                        records_url=records_url)
    config.data.mkdir(parents=True, exist_ok=True)
    records = BackgroundServer(make_records_server(config.records_port, config.data / "records.db"), "records")
    server = BackgroundServer(make_server(settings))
    ui: subprocess.Popen | None = None
    try:
        records.start()
        server.start()
        report = run_fleet(FleetConfig(endpoint=base, workflows=config.workflows, seed=config.seed,
                                       records_url=records_url, check_controls=True))
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_for_backlog(client)
            stats = client.get("/api/stats").json()
            console.print(
                f"\n[bold]Recorded[/bold] {stats['spans']} spans in {stats['traces']} traces, "
                f"linked to {stats['objects']} business objects ({stats['rejected_spans']} rejected)."
            )
            example = next((ref for ref in report.example_objects if ref.startswith("ticket:")), report.example_objects[0])
            print_object(console, client, example)
            if report.regression_agent:
                console.print(f"\n[bold]The fleet's injected regression[/bold]: {report.regression_agent} changed model "
                              f"at workflow {report.regression_at}. A detector pass:")
                print_pass(console, client.post("/api/detectors/run", timeout=120).json())
        if config.ui and config.serve_on:
            from flightrec.dashboards.launch import start_ui

            ui = start_ui(base, config.ui_port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kind, _, ident = example.partition(":")
        console.print(
            f"\n[bold]Open[/bold] http://127.0.0.1:{config.ui_port}/?object={quote(example, safe=':')} for that story"
            + ("" if ui else " (after `flightrec ui`)")
            + f",\n     {base}{api_path('objects', kind, ident, 'spans')} for its spans, {base}/docs for the API.\n"
            f"Agents send OTLP to {base} (gRPC 127.0.0.1:{config.grpc_port}); the system of record is {records_url}/state.\n"
            f"Try: FLIGHTREC_API_URL={base} flightrec rollback --agent ops-agent --last 5 --actor you"
        )
        if config.serve_on:
            console.print("Serving; press Ctrl-C to stop.")
            while True:
                time.sleep(3600)
    finally:
        if ui is not None:
            ui.terminate()
            ui.wait(timeout=30)
        server.stop()
        records.stop()
