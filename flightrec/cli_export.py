"""`flightrec export`: an evidence bundle of a scope, built by the server (audited) and saved as a zip."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def export(
    object: str = typer.Option("", "--object", help="One business object, TYPE:ID (e.g. invoice:INV-1001)"),
    object_type: str = typer.Option("", "--object-type", help="Every object of this type (e.g. invoice)"),
    agent: str = typer.Option("", "--agent", help="The traces this agent has spans in"),
    since: str = typer.Option("", "--since", help="Spans that started at or after this time (ISO 8601, UTC: "
                                                  "2026-07-01 or 2026-07-01T00:00:00Z)"),
    until: str = typer.Option("", "--until", help="Spans that started before this time (ISO 8601, UTC)"),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the bundle (a .zip file)"),
    api: str = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]"),
) -> None:
    """Export an evidence bundle (filters combine: --object-type invoice --agent finance-agent --since --until)."""
    from pydantic import ValidationError

    from flightrec import cli
    from flightrec.evidence.bundle_models import MANIFEST, ExportScope

    try:
        scope = ExportScope(object=object, object_type=object_type, agent=agent, since=since or None,
                            until=until or None)
    except ValidationError as exc:
        cli._fail("; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
                  + " (see flightrec export --help)")
    if output.is_dir():
        cli._fail(f"{output} is a folder: name the bundle's file, e.g. -o {output / 'bundle.zip'}")
    if not output.parent.is_dir():
        cli._fail(f"the folder {output.parent} does not exist: create it or write the bundle elsewhere (-o FILE)")
    response = cli._api_response(api, "POST", "/api/evidence/exports", json=scope.model_dump(mode="json"),
                                 timeout=3600)
    bundle_id = response.headers.get("x-flightrec-bundle-id", "")
    try:
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            counts = json.loads(archive.read(MANIFEST))["counts"]
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        cli._fail(f"the server's answer is not an evidence bundle ({exc}); nothing was written")
    partial = output.with_name(output.name + ".part")
    partial.write_bytes(response.content)
    os.replace(partial, output)
    console.print(f"bundle {escape(bundle_id)}", highlight=False)
    console.print(", ".join(f"{count:,} {name.replace('_', ' ')}" for name, count in counts.items()), highlight=False)
    console.print(f"written to {escape(str(output))} ({len(response.content):,} bytes); check it with: "
                  f"flightrec verify {escape(str(output))}", highlight=False)
