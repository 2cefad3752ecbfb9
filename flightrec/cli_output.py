"""Printing API answers for people in a terminal (shared by the CLI and the demo)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

SEVERITY_COLORS = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "blue"}


def add_text_row(table: Table, *cells: object) -> None:
    """A row of plain text: what the API answers (agent names, reasons) is never read as rich markup."""
    table.add_row(*(Text(str(cell)) for cell in cells))


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


def print_quarantine(console_: Console, page: dict) -> None:
    """The quarantined WAL segments (``GET /api/quarantine``), or that there are none."""
    if not page["items"]:
        console_.print("nothing is quarantined")
        return
    table = Table("segment", "spans", "bytes", "attempts", "quarantined at (UTC)", "reason",
                  title=f"{page['count']} quarantined segment{'s' if page['count'] != 1 else ''}")
    for item in page["items"]:
        add_text_row(table, item["segment"], f"{item['spans']:,}", f"{item['bytes']:,}", item["attempts"],
                     item["quarantined_at"][:19].replace("T", " "), item["reason"])
    console_.print(table)
    console_.print("Fix the cause, then: flightrec wal replay SEGMENT --actor NAME (or --all)", highlight=False)


def print_replayed(console_: Console, items: list[dict]) -> None:
    """What a replay queued for the writer again."""
    if not items:
        console_.print("nothing is quarantined: nothing to replay")
    for item in items:
        spans = f"{item['spans']:,} span{'s' if item['spans'] != 1 else ''}"
        console_.print(Text(f"{item['segment']}: {item['status']} ({spans})"))
