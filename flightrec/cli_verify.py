"""`flightrec verify --store`: the stored record checked against the evidence log, through the server's API.

``flightrec verify BUNDLE`` (an evidence bundle, offline) is to come; the argument is kept for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from flightrec.cli_output import plural

console = Console()


def verify(
    bundle: Path = typer.Argument(None, help="An evidence bundle to check offline (not available yet: use --store)"),
    store: bool = typer.Option(False, "--store", help="Re-hash every stored span and audit entry against the "
                                                      "evidence log and its newest signed checkpoint"),
    as_json: bool = typer.Option(False, "--json", help="The API's verdict as JSON"),
    api: str = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]"),
) -> None:
    """Check the record: with --store, name every span or audit entry that no longer matches its checkpoint (exit 1)."""
    from flightrec import cli

    if bundle is not None or not store:
        cli._fail("verifying an evidence bundle is not available yet; check the server's store with "
                  "`flightrec verify --store`")
    verdict = cli._api_call(api, "POST", "/api/evidence/verify", timeout=3600)
    if as_json:
        typer.echo(json.dumps(verdict, indent=2, ensure_ascii=False))
    else:
        _print(verdict)
    if not verdict["ok"]:
        raise typer.Exit(1)


def _print(verdict: dict) -> None:
    what = (f"{verdict['leaves']:,} leaves ({verdict['spans_checked']:,} stored span copies, "
            f"{verdict['audit_checked']:,} audit entries) against the checkpoint of {verdict['checkpoint_size']:,}")
    if verdict["ok"]:
        console.print(Text(f"intact: {what}", style="green"))
    else:
        console.print(Text(f"BROKEN: {plural(verdict['problems_total'], 'problem')} in {what}", style="bold red"))
        for problem in verdict["problems"]:
            leaf = f" (leaf {problem['leaf_index']})" if problem.get("leaf_index") is not None else ""
            console.print(Text(f"  - {problem['kind']} {problem['ref']}{leaf}: {problem['problem']}"))
        if verdict["problems_total"] > len(verdict["problems"]):
            console.print(Text(f"  ... and {verdict['problems_total'] - len(verdict['problems'])} more (--json)"))
    for note in verdict["notes"]:
        console.print(Text(f"note: {note}", style="yellow"))
