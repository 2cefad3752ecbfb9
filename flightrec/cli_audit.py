"""`flightrec audit ...`: the audit log of people's acts and its check, through the running server's API."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flightrec.cli_output import add_text_row, plural

audit_app = typer.Typer(help="The audit log of people's acts: `flightrec audit` lists it; `verify` checks it.",
                        no_args_is_help=False)
console = Console()
ApiOpt = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]")


def _call(api: str | None, method: str, path: str, **kwargs):  # noqa: ANN202 - the API's JSON
    from flightrec import cli

    return cli._api_call(api, method, path, **kwargs)


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _since_params(since: str) -> dict[str, str | int]:
    """``--since``: a sequence number (entries after it) or an ISO 8601 time (entries after it)."""
    from datetime import datetime, timezone

    text = since.strip()
    if not text:
        return {}
    if text.isdigit():
        return {"since": int(text)}
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--since {since!r} is neither a sequence number nor an ISO 8601 time; for example --since 120 "
              "or --since 2026-03-01T14:30 (UTC unless it names a zone)")
    return {"after": (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()}


HEAD_FIELDS = ("seq", "hash", "time", "key_id", "signature")


def _read_head(path: Path) -> dict:
    """The head in a file: a saved ``GET /api/audit/head`` answer or a bare head; a bad file exits saying why."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(f"--head {path}: no such file; save a head with: curl -H 'Authorization: Bearer TOKEN' "
              "API/api/audit/head > head.json")
    except OSError as exc:
        _fail(f"--head {path}: cannot read it ({exc.strerror or exc})")
    except ValueError as exc:
        _fail(f"--head {path} is not JSON ({exc})")
    if isinstance(document, dict) and "head" in document:
        document = document["head"]
    if not isinstance(document, dict):
        _fail(f"--head {path} holds no signed head (saved before the first audit entry?)")
    missing = [name for name in HEAD_FIELDS if name not in document]
    if missing:
        _fail(f"--head {path} is not a signed audit head: it lacks {', '.join(missing)} (expected "
              f"{{{', '.join(HEAD_FIELDS)}}}, as GET /api/audit/head answers)")
    wrong = [name for name in HEAD_FIELDS if not isinstance(document[name], int if name == "seq" else str)
             or isinstance(document[name], bool)]
    if wrong:
        _fail(f"--head {path}: {', '.join(wrong)} {'has' if len(wrong) == 1 else 'have'} the wrong type "
              "(seq is a whole number; hash, time, key_id and signature are strings)")
    return {name: document[name] for name in HEAD_FIELDS}


def _entries(count: int) -> str:
    return f"{count:,} {'entry' if count == 1 else 'entries'}"


@audit_app.callback(invoke_without_command=True)
def audit_list(
    ctx: typer.Context,
    since: str = typer.Option("", "--since", help="Entries after this sequence number, or after this ISO 8601 time"),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="At most this many entries"),
    as_json: bool = typer.Option(False, "--json", help="The API's JSON page instead of a table"),
    api: str = ApiOpt,
) -> None:
    """List audit entries, oldest first: who did what to which subject, and the chain hashes."""
    ctx.obj = api
    if ctx.invoked_subcommand is not None:
        return
    page = _call(api, "GET", "/api/audit", params={**_since_params(since), "limit": limit})
    if as_json:
        typer.echo(json.dumps(page, indent=2, ensure_ascii=False))
        return
    grid = Table("seq", "time (UTC)", "actor", "act", "subject", "details", "hash",
                 title=_entries(page["count"]))
    for item in page["items"]:
        details = ", ".join(f"{key}={value}" for key, value in sorted(item["details"].items()))
        add_text_row(grid, item["seq"], item["time"][:19].replace("T", " "), item["actor"], item["act"],
                     item["subject"], details, item["hash"][:12])
    console.print(grid)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    head: Path = typer.Option(None, "--head", dir_okay=False,
                              help="A head kept outside the store (a saved GET /api/audit/head answer) to check against"),
    as_json: bool = typer.Option(False, "--json", help="The API's verdict as JSON"),
    api: str = ApiOpt,
) -> None:
    """Check the audit log against its signed heads; exit 1 naming every problem when it is broken."""
    api = api or ctx.obj
    if head is not None:
        verdict = _call(api, "POST", "/api/audit/verify", json={"head": _read_head(head)})
    else:
        verdict = _call(api, "GET", "/api/audit/verify")
    if as_json:
        typer.echo(json.dumps(verdict, indent=2, ensure_ascii=False))
    else:
        _print_verdict(verdict)
    if not verdict["ok"]:
        raise typer.Exit(1)


def _print_verdict(verdict: dict) -> None:
    from rich.text import Text

    entries = _entries(verdict["entries"])
    if verdict["ok"]:
        console.print(Text(f"intact: {entries}, signed through entry {verdict['signed_through']} "
                           f"(key {verdict['key_fingerprint'][:16]})", style="green"))
    else:
        console.print(Text(f"BROKEN: {plural(len(verdict['problems']), 'problem')} in {entries}", style="bold red"))
        for problem in verdict["problems"]:
            console.print(Text(f"  - {problem}"))
    for note in verdict["notes"]:
        console.print(Text(f"note: {note}", style="yellow"))
