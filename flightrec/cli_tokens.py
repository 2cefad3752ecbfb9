"""`flightrec tokens ...`: principals and their tokens, through the running server's API."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flightrec.paths import api_path

tokens_app = typer.Typer(help="Principals (people and agents) and their API tokens; every act is audited.",
                         no_args_is_help=True)
console = Console()
ApiOpt = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]")
ROLES = "viewer, auditor, sre, approver, compliance, admin, agent"


def _call(api: str | None, method: str, path: str, **kwargs):  # noqa: ANN202 - the API's JSON
    from flightrec import cli

    return cli._api_call(api, method, path, **kwargs)


def _split(values: list[str]) -> list[str]:
    """``--agents a,b --agents c`` -> [a, b, c]."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Option(..., "--name", help="A person's login or an agent's name"),
    role: list[str] = typer.Option(..., "--role", help=f"A role (repeat for more): {ROLES}"),
    agents: list[str] = typer.Option([], "--agents", help="Agent principals: the agent names it speaks for, A,B"),
    services: list[str] = typer.Option([], "--services", help="Agent principals: the service names its spans may "
                                       "carry, S,T (default: any)"),
    tenant: str = typer.Option("", "--tenant", help="Agent principals: the tenant its spans belong to (default: any)"),
    kind: str = typer.Option("", "--kind", help="person or agent [default: agent with --role agent, else person]"),
    actor: str = typer.Option("", "--actor", envvar="FLIGHTREC_ACTOR",
                              help="Who creates it, without sign-in only (signed in: you)"),
    api: str = ApiOpt,
) -> None:
    """Create a principal and print its token once, on the last line (only its hash is kept)."""
    kind = kind or ("agent" if role == ["agent"] else "person")
    created = _call(api, "POST", api_path("principals"),
                    json={"name": name, "kind": kind, "roles": role, "agents": _split(agents), "services": _split(services),
                          "tenant": tenant, "actor": actor})
    principal = created["principal"]
    console.print(f"{escape(principal['name'])} ({principal['kind']}; {', '.join(principal['roles'])}"
                  + (f"; agents {', '.join(principal['agents'])}" if principal["agents"] else "")
                  + (f"; services {', '.join(principal['services'])}" if principal["services"] else "")
                  + (f"; tenant {principal['tenant']}" if principal["tenant"] else "") + ")")
    console.print("token (shown once, keep it now):")
    typer.echo(created["token"])


@tokens_app.command("list")
def tokens_list(api: str = ApiOpt) -> None:
    """Every principal, revoked ones too; never a token."""
    grid = Table("name", "kind", "roles", "speaks for", "token starts", "created", "by", "state")
    for item in _call(api, "GET", api_path("principals"))["items"]:
        scope = ", ".join(item["agents"]) + (f" (services {', '.join(item['services'])})" if item["services"] else "") + (
            f" (tenant {item['tenant']})" if item["tenant"] else "")
        grid.add_row(item["name"], item["kind"], ", ".join(item["roles"]), scope,
                     item["token_hint"], (item["created_at"] or "")[:19], item["created_by"],
                     "revoked" if item["revoked"] else "active")
    console.print(grid)


@tokens_app.command("revoke")
def tokens_revoke(
    name: str = typer.Argument(..., help="The principal whose token stops working"),
    actor: str = typer.Option("", "--actor", envvar="FLIGHTREC_ACTOR",
                              help="Who revokes it, without sign-in only (signed in: you)"),
    api: str = ApiOpt,
) -> None:
    """Revoke a principal's token at once (audited); `create` again issues a new one."""
    revoked = _call(api, "DELETE", api_path("principals", name), params={"actor": actor})
    console.print(f"{escape(revoked['name'])}: revoked")
