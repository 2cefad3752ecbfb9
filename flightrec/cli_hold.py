"""`flightrec hold ...`: legal holds, through the running server's API (placing and releasing are audited)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flightrec.paths import api_path

hold_app = typer.Typer(help="Legal holds: what is held outlives its retention until released; every act is audited.",
                       no_args_is_help=True)
console = Console()
ApiOpt = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]")
ActorOpt = typer.Option("", "--actor", envvar="FLIGHTREC_ACTOR", help="Who acts, without sign-in only (signed in: you)")


def _call(api: str | None, method: str, path: str, **kwargs):  # noqa: ANN202 - the API's JSON
    from flightrec import cli

    return cli._api_call(api, method, path, **kwargs)


def _fail(message: str) -> None:
    from flightrec import cli

    cli._fail(message)


@hold_app.command("add")
def hold_add(
    object: str = typer.Option("", "--object", help="Hold every trace linked to this object, TYPE:ID"),
    agent: str = typer.Option("", "--agent", help="Hold every span of this agent"),
    trace: str = typer.Option("", "--trace", help="Hold one trace (32 hex digits)"),
    reason: str = typer.Option(..., "--reason", help="Why it is held: the matter or request (required, not empty)"),
    actor: str = ActorOpt,
    api: str = ApiOpt,
) -> None:
    """Place a legal hold on an object's traces, an agent's spans or a trace; print its id."""
    given = [name for name, value in (("--object", object), ("--agent", agent), ("--trace", trace)) if value.strip()]
    if len(given) != 1:
        _fail(f"name exactly one of --object TYPE:ID, --agent NAME, --trace ID (given: {', '.join(given) or 'none'})")
    if not reason.strip():
        _fail("--reason is empty: say why it is held (e.g. --reason 'litigation hold, matter 2026-17')")
    hold = _call(api, "POST", api_path("holds"),
                 json={"object": object, "agent": agent, "trace": trace, "reason": reason, "actor": actor})
    console.print(f"held {escape(_target(hold))}: {escape(hold['reason'])}")
    typer.echo(hold["id"])


@hold_app.command("list")
def hold_list(
    active: bool = typer.Option(False, "--active", help="Only holds in force"),
    api: str = ApiOpt,
) -> None:
    """Every legal hold, newest first, with who placed or released it and why."""
    grid = Table("id", "holds", "reason", "placed (UTC)", "by", "state")
    for item in _call(api, "GET", api_path("holds"), params={"active": active})["items"]:
        state = (f"released {item['released_at'][:19]} by {item['released_by']}: {item['release_reason']}"
                 if item["released"] else "in force")
        grid.add_row(item["id"], escape(_target(item)), escape(item["reason"]), item["created_at"][:19],
                     escape(item["created_by"]), escape(state))
    console.print(grid)


@hold_app.command("release")
def hold_release(
    hold_id: str = typer.Argument(..., help="The hold's id (flightrec hold list)"),
    reason: str = typer.Option(..., "--reason", help="Why the hold ends (required, not empty)"),
    actor: str = ActorOpt,
    api: str = ApiOpt,
) -> None:
    """Release a legal hold: what it alone kept expires with its retention."""
    if not reason.strip():
        _fail("--reason is empty: say why the hold ends (e.g. --reason 'matter 2026-17 closed')")
    hold = _call(api, "POST", api_path("holds", hold_id, "release"), json={"reason": reason, "actor": actor})
    console.print(f"released {escape(hold['id'])} ({escape(_target(hold))})")


def _target(hold: dict) -> str:
    return f"object {hold['object_type']}:{hold['key']}" if hold["kind"] == "object" else f"{hold['kind']} {hold['key']}"
