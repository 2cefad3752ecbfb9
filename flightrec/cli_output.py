"""Printing API answers for people in a terminal (shared by the CLI and the demo)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

SEVERITY_COLORS = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "blue"}


def print_pass(console_: Console, result: dict) -> None:
    """What a detector pass fired and resolved."""
    console_.print(f"detector pass over {result['runs']} runs ({result['seconds']:.2f}s): "
                   f"{len(result['fired'])} fired, {len(result['resolved'])} resolved")
    for alert in result["fired"]:
        color = SEVERITY_COLORS.get(alert["severity"], "")
        severity = escape("[" + alert["severity"] + "]")
        console_.print(f"[{color}]FIRING[/{color}] {severity} {escape(alert['summary'])}", highlight=False)
    for alert in result["resolved"]:
        console_.print(f"[green]RESOLVED[/green] {escape(alert['summary'])}", highlight=False)
    for delivery in result["deliveries"]:
        if not delivery["ok"]:
            console_.print(f"[red]page not delivered[/red] via {delivery['router']}: {delivery['error']}")
