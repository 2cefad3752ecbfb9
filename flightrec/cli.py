"""The ``flightrec`` command. ``serve``, ``demo``, ``fleet`` run things; the rest are API clients."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from flightrec.cli_output import (
    add_text_row,
    flightrec_command,
    print_detection,
    print_plan,
    print_quarantine,
    print_replayed,
    print_systems,
)
from flightrec.cli_audit import audit_app
from flightrec.cli_export import export as export_command
from flightrec.cli_erase import erase as erase_command
from flightrec.cli_hold import hold_app
from flightrec.cli_rules import rules_app
from flightrec.cli_tokens import tokens_app
from flightrec.cli_verify import verify as verify_command
from flightrec.paths import api_path

if TYPE_CHECKING:  # imported by the commands that use them: `--help` and `--version` stay fast
    from datetime import datetime

    import httpx

    from flightrec.settings import Settings

app = typer.Typer(help="Flight Recorder: a flight recorder for autonomous AI agents.", no_args_is_help=True)
console = Console()


def _print_version(value: bool) -> None:
    if value:
        from flightrec import __version__

        console.print(f"flightrec {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit"),
) -> None:
    """Flight Recorder: a flight recorder for autonomous AI agents."""


def _settings(**given: Any) -> Settings:
    """Settings from options, env vars and the settings file; a bad one exits with the reason."""
    from pydantic import ValidationError

    from flightrec.settings import Settings, SettingsFileError

    try:
        return Settings(**{key: value for key, value in given.items() if value is not None})
    except (ValidationError, SettingsFileError) as exc:
        console.print(f"[red]invalid setting:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


HostOpt = typer.Option(None, "--host", help="Interface to bind [FLIGHTREC_HOST, default 127.0.0.1]")
HttpPortOpt = typer.Option(None, "--http-port", help="OTLP/HTTP + API port [FLIGHTREC_HTTP_PORT, default 4318]")
GrpcPortOpt = typer.Option(None, "--grpc-port", help="OTLP/gRPC port [FLIGHTREC_GRPC_PORT, default 4317]")
DataOpt = typer.Option(None, "--data", help="Data directory for the embedded store and WAL [FLIGHTREC_DATA]")
StoreOpt = typer.Option(
    None, "--store", help="Store DSN: chdb:///dir or http(s)://user:pass@host:8123/db [FLIGHTREC_STORE]"
)
TokensOpt = typer.Option(None, "--ingest-tokens", help="Comma-separated ingest tokens [FLIGHTREC_INGEST_TOKENS]")
RulesOpt = typer.Option(None, "--rules", help="TOML rules file, ahead of the built-in conventions [FLIGHTREC_RULES]")


@app.command()
def serve(
    host: str = HostOpt,
    http_port: int = HttpPortOpt,
    grpc_port: int = GrpcPortOpt,
    data: Path = DataOpt,
    store: str = StoreOpt,
    ingest_tokens: str = TokensOpt,
    rules: Path = RulesOpt,
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Run the collector (OTLP gRPC + HTTP) and the API in one process."""
    from flightrec.server import serve_forever

    settings = _settings(
        host=host, http_port=http_port, grpc_port=grpc_port, data=data, store=store, ingest_tokens=ingest_tokens,
        rules=rules,
    )
    try:
        settings.check_exposure()
        settings.store_config().target()
        from flightrec.evidence.keys import load_or_create

        load_or_create(settings.audit_key_path())  # the audit signing key: a key others may read stops the start
    except ValueError as exc:  # a bad rules file or key file too: the error says how to fix it
        _fail(str(exc))
    console.print(
        f"Flight Recorder: OTLP/HTTP + API on http://{settings.host}:{settings.http_port}, "
        f"OTLP/gRPC on {settings.host}:{settings.grpc_port}, store {settings.store_config().target().describe()}"
    )
    serve_forever(settings, log_level)


@app.command()
def config(
    table: bool = typer.Option(False, "--table", help="A table for people instead of JSON"),
) -> None:
    """Print the settings in effect as JSON (secrets masked): {name: {env, value, description}}."""
    described = _settings().described()
    if table:
        grid = Table("env var", "value", "what it is")
        for env, value, description in described:
            grid.add_row(env, "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value,
                         description)
        console.print(grid)
        return
    document = {env.removeprefix("FLIGHTREC_").lower(): {"env": env, "value": value, "description": description}
                for env, value, description in described}
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


@app.command()
def schema(
    cluster: str = typer.Option(None, "--cluster", metavar="NAME",
                                help="Data cluster: sharded *_local + Distributed tables [FLIGHTREC_CLUSTER]"),
    state_cluster: str = typer.Option(None, "--state-cluster", metavar="NAME",
                                      help="State cluster, one shard on every node [FLIGHTREC_STATE_CLUSTER]"),
    database: str = typer.Option(None, "--database", metavar="DB", help="Database [FLIGHTREC_DATABASE, default flightrec]"),
) -> None:
    """Print the DDL the migrations would run (single node, or with --cluster and --state-cluster), without a store.

    Each table is created with the TTL the retention settings give it (FLIGHTREC_RETENTION_DAYS and the others)."""
    from pydantic import ValidationError

    from flightrec.store.migrations import schema_sql

    settings = _settings(cluster=cluster, state_cluster=state_cluster, database=database)
    try:
        script = schema_sql(settings.database, settings.cluster, settings.state_cluster,
                            settings.store_config().retention_policy())
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        console.print(f"[red]invalid setting:[/red] {escape(f'{where}: ' if where else '')}{escape(problem['msg'])}",
                      highlight=False)
        raise typer.Exit(2) from exc
    typer.echo(script, nl=False)


def api_client(settings: Settings) -> httpx.Client:
    """An HTTP client for the running server's API, with the API token when one is set."""
    import httpx

    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"} if settings.api_token else {}
    return httpx.Client(base_url=settings.api_url, headers=headers, timeout=30)


SEVERITY_STYLES = {"info": "", "notice": "blue", "warning": "yellow", "critical": "bold red"}


@app.command()
def story(
    ref: str = typer.Argument(..., help="The business object as TYPE:ID, e.g. ticket:TCK-1042"),
    api: str = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]"),
) -> None:
    """Print an object's story: what the agents did, why, and based on what."""
    import httpx

    kind, sep, ident = ref.partition(":")
    if not sep or not kind or not ident:
        _fail(f"{ref!r} is not TYPE:ID; for example: flightrec story ticket:TCK-1042")
    settings = _settings(api_url=api)
    try:
        with api_client(settings) as client:
            response = client.get(api_path("objects", kind, ident, "story"))
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the API at {settings.api_url} ({exc}); is `flightrec serve` running? (--api URL)")
    if response.status_code != 200:
        _fail(response.json().get("detail", response.text) if response.headers.get("content-type", "").startswith(
            "application/json") else response.text)
    body = response.json()
    console.print(f"[bold]{escape(kind.capitalize())} {escape(ident)}[/bold]  ({escape(body['status'])})\n", highlight=False)
    console.print(Text(body["summary"] + "\n"))
    for step in body["steps"]:
        line = f"{step['time'][:19].replace('T', ' ')}  {step['sentence']}"
        console.print(Text(line, style=SEVERITY_STYLES.get(step["severity"], "")), highlight=False)
    console.print("\n[bold]Outcome.[/bold]", Text(body["outcome"]))


ApiOpt = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]")
ActorOpt = typer.Option(..., "--actor", envvar="FLIGHTREC_ACTOR", help="Who is acting (recorded in the audit log)")


def _api_call(api: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One API request; any failure is printed as a fix-it message and exits."""
    return _api_response(api, method, path, **kwargs).json()


def _api_response(api: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API request's successful response; any failure is printed as a fix-it message and exits."""
    import httpx

    settings = _settings(api_url=api)
    try:
        with api_client(settings) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the API at {settings.api_url} ({exc}); is `flightrec serve` running? (--api URL)")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        _fail(f"{detail} (HTTP {response.status_code})")
    return response


@app.command()
def actions(
    agent: str = typer.Option("", "--agent", help="Only this agent's actions"),
    object: str = typer.Option("", "--object", help="Only actions on this object, TYPE:ID"),
    last: int = typer.Option(20, "--last", min=1, help="How many, newest first"),
    api: str = ApiOpt,
) -> None:
    """List the actions agents took or proposed, newest first."""
    page = _api_call(api, "GET", "/api/actions", params={"agent": agent, "object": object, "last": last})
    if not page["items"]:
        scope = " ".join(part for part in (f"for agent {agent}" if agent else "", f"on {object}" if object else "") if part)
        console.print(Text(f"no actions {scope}" if scope else "no actions recorded yet"))
        return
    table = Table("time (UTC)", "agent", "action", "status", "risk", "amount", "objects", "undo")
    for item in page["items"]:
        amount = f"{item['amount']:,.2f} {item['currency']}" if item["amount"] else ""
        add_text_row(table, item["time"][:19].replace("T", " "), item["agent"], item["name"], item["status"], item["risk"],
                     amount, ", ".join(item["objects"]), item["undo_kind"] or "none")
    console.print(table)


def _print_plan(plan: dict) -> None:
    print_plan(console, plan, flightrec_command())


def _moment(option: str, value: str) -> datetime:
    """An ISO 8601 time from an option (no zone: UTC); a bad one exits with an example."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        _fail(f"{option} {value!r} is not an ISO 8601 time; for example {option} 2026-03-01T14:30 "
              "(UTC unless it names a zone, e.g. 2026-03-01T14:30+01:00)")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@app.command()
def rollback(
    agent: str = typer.Option("", "--agent", help="Undo this agent's last actions"),
    flow: str = typer.Option("", "--flow", help="Undo the last actions of this flow (its root span name), across agents"),
    object: str = typer.Option("", "--object", help="Undo the last actions on this object, TYPE:ID"),
    since: str = typer.Option("", "--since", metavar="ISO",
                              help="Only actions at or after this time, e.g. 2026-03-01T14:30 (UTC unless a zone is given)"),
    until: str = typer.Option("", "--until", metavar="ISO", help="Only actions at or before this time (ISO 8601, as --since)"),
    last: int = typer.Option(10, "--last", min=1, max=10_000, help="How many actions, newest first"),
    plan_id: str = typer.Option("", "--plan", help="Execute (or resume) an existing plan instead of making one"),
    execute: bool = typer.Option(False, "--execute/--dry-run", help="Execute the plan, or only show it (default)"),
    actor: str = ActorOpt,
    api: str = ApiOpt,
) -> None:
    """Plan the undo of the last N actions of an agent, a flow, an object or a time window; --execute carries it out."""
    scoped = agent or flow or object or since or until
    if plan_id and scoped:
        _fail(f"--plan {plan_id} runs the plan as it was made; drop --agent/--flow/--object/--since/--until "
              "(or drop --plan to make a new plan)")
    if not plan_id and not scoped:
        _fail("say what to undo: --agent NAME, --flow NAME, --object TYPE:ID, or a time window --since ISO "
              "[--until ISO] (or --plan ID to run a plan)")
    kind, sep, ident = object.partition(":")
    if object and not (sep and kind and ident):
        _fail(f"--object {object!r} is not TYPE:ID; for example --object order:ORD-7731")
    window = {"since": _moment("--since", since) if since else None, "until": _moment("--until", until) if until else None}
    if window["since"] and window["until"] and window["until"] < window["since"]:
        _fail(f"--until {until} is before --since {since}: the time window is empty; swap them")
    if plan_id:
        plan = _api_call(api, "GET", api_path("rollback", "plans", plan_id))
    else:
        selector = {"agent": agent, "flow": flow, "object": object, "last": last, "actor": actor,
                    **{key: value.isoformat() for key, value in window.items() if value}}
        plan = _api_call(api, "POST", "/api/rollback/plans", json=selector)
    if execute:
        plan = _api_call(api, "POST", api_path("rollback", "plans", plan["id"], "execute"), json={"actor": actor, "wait": True})
    _print_plan(plan)
    if execute and (plan["status"] != "done" or any(step.get("restored") is False for step in plan["steps"])):
        raise typer.Exit(1)


@app.command()
def approve(plan_id: str = typer.Argument(..., help="The plan to approve"), actor: str = ActorOpt, api: str = ApiOpt) -> None:
    """Approve a rollback plan (anyone but its author)."""
    _print_plan(_api_call(api, "POST", api_path("rollback", "plans", plan_id, "approve"), json={"actor": actor}))


def _switch(command: str, agent: str, actor: str, reason: str, api: str | None, force: bool,
            max_per_minute: int = 0) -> None:
    control = _api_call(api, "POST", api_path("controls", "agents", agent, command),
                        json={"actor": actor, "reason": reason, "max_per_minute": max_per_minute, "force": force})
    limit = f" ({control['max_per_minute']}/min)" if control["max_per_minute"] else ""
    why = f": {control['reason']}" if control.get("reason") else ""
    console.print(Text(f"{control['agent']}: {control['state']}{limit}{why}"))
    if control.get("note"):
        console.print(Text(f"warning: {control['note']}", style="yellow"))


@app.command()
def detect(api: str = ApiOpt) -> None:
    """Run one detector pass on the server and print the alerts it fired or resolved, and those still firing."""
    result = _api_call(api, "POST", "/api/detectors/run")
    active = [alert for status in ("firing", "pending")
              for alert in _api_call(api, "GET", "/api/alerts", params={"status": status})["alerts"]]
    print_detection(console, result, active)
    for delivery in result.get("deliveries", []):
        if not delivery.get("ok", True):
            console.print(Text(f"page not delivered via {delivery.get('router')}: {delivery.get('error')}", style="red"))


class AlertStatus(str, Enum):
    pending = "pending"
    firing = "firing"
    resolved = "resolved"
    all = "all"


@app.command()
def alerts(
    status: AlertStatus = typer.Option(AlertStatus.firing, "--status", case_sensitive=False,
                                       help="Only alerts in this state (all: every state)"),
    api: str = ApiOpt,
) -> None:
    """List alerts, newest first."""
    wanted = "" if status is AlertStatus.all else status.value
    body = _api_call(api, "GET", "/api/alerts", params={"status": wanted})
    if not body["alerts"]:
        console.print(f"no {wanted} alerts" if wanted else "no alerts")
        return
    table = Table("since (UTC)", "status", "severity", "detector", "agent", "summary")
    for alert in body["alerts"]:
        add_text_row(table, alert["started_at"][:19].replace("T", " "), alert["status"], alert["severity"],
                     alert["detector"], alert["agent"], alert["summary"])
    console.print(table)


ReasonOpt = typer.Option("", "--reason", help="Why (recorded in the audit log)")
AgentArg = typer.Argument(..., help="The agent's name")
ForceOpt = typer.Option(False, "--force", help="Set the switch of an agent that has never sent spans (else refused as a typo)")


@app.command()
def pause(agent: str = AgentArg, actor: str = ActorOpt, reason: str = ReasonOpt, force: bool = ForceOpt,
          api: str = ApiOpt) -> None:
    """Pause an agent: its next actions are refused (within the SDK's cache time)."""
    _switch("pause", agent, actor, reason, api, force)


@app.command()
def resume(agent: str = AgentArg, actor: str = ActorOpt, reason: str = ReasonOpt, force: bool = ForceOpt,
          api: str = ApiOpt) -> None:
    """Let a paused, throttled or draining agent run normally again."""
    _switch("resume", agent, actor, reason, api, force)


@app.command()
def drain(agent: str = AgentArg, actor: str = ActorOpt, reason: str = ReasonOpt, force: bool = ForceOpt,
          api: str = ApiOpt) -> None:
    """Stop an agent taking new work while in-flight work finishes."""
    _switch("drain", agent, actor, reason, api, force)


@app.command()
def throttle(
    agent: str = AgentArg,
    per_minute: int = typer.Option(..., "--per-minute", min=1, help="Actions allowed per minute"),
    actor: str = ActorOpt,
    reason: str = ReasonOpt,
    force: bool = ForceOpt,
    api: str = ApiOpt,
) -> None:
    """Limit an agent to N actions a minute."""
    _switch("throttle", agent, actor, reason, api, force, per_minute)


wal = typer.Typer(help="The write-ahead log: segments the store refused (quarantined), and replaying them.",
                  no_args_is_help=True)
app.add_typer(wal, name="wal")


@wal.command("quarantine")
def wal_quarantine(api: str = ApiOpt) -> None:
    """List the WAL segments set aside because the store refused their data."""
    print_quarantine(console, _api_call(api, "GET", api_path("quarantine")))


@wal.command("replay")
def wal_replay(
    segment: str | None = typer.Argument(None, help="The quarantined segment to replay, as `flightrec wal quarantine` names it"),
    all_: bool = typer.Option(False, "--all", help="Replay every quarantined segment"),
    actor: str = ActorOpt,
    api: str = ApiOpt,
) -> None:
    """Queue quarantined segments for the writer again (once the cause is fixed)."""
    if bool(segment) == all_:
        _fail("name one segment or pass --all: flightrec wal replay SEGMENT --actor NAME (segments: flightrec wal quarantine)")
    if all_:
        print_replayed(console, _api_call(api, "POST", api_path("quarantine", "replay"), json={"actor": actor})["items"])
    else:
        print_replayed(console, [_api_call(api, "POST", api_path("quarantine", segment, "replay"), json={"actor": actor})])


app.add_typer(rules_app, name="rules")
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")
app.add_typer(hold_app, name="hold")
app.command("verify")(verify_command)
app.command("erase")(erase_command)
app.command("export")(export_command)

systems = typer.Typer(help="The systems of record undo may call: `flightrec systems` lists them; `register` adds one.")
app.add_typer(systems, name="systems")


class Auth(str, Enum):
    none = "none"
    bearer = "bearer"
    basic = "basic"


# What each field of a system's registration is called on the command line, for fix-it messages.
SYSTEM_OPTIONS = {"name": "NAME", "base_url": "--base-url", "paths": "--path", "read_paths": "--read-path",
                  "handlers": "--handler", "auth": "--auth", "credentials_env": "--credentials-env", "timeout_s": "--timeout"}


@systems.callback(invoke_without_command=True)
def systems_list(ctx: typer.Context, api: str = ApiOpt) -> None:
    """List the registered systems of record: base URL, auth, allowed paths and handlers, credentials variable."""
    ctx.obj = api
    if ctx.invoked_subcommand is None:
        print_systems(console, _api_call(api, "GET", "/api/systems"), flightrec_command())


@systems.command("register")
def systems_register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The name undo descriptors use (flightrec.undo.system), e.g. billing"),
    base_url: str = typer.Option(..., "--base-url", metavar="URL",
                                 help="The system's http(s) URL, with a port and a path prefix if it needs them; no user:password, query or fragment"),
    path: list[str] = typer.Option(None, "--path", metavar="TEMPLATE",
                                   help="A POST path undo may call, e.g. /refunds/{id}/undo; repeatable"),
    read_path: list[str] = typer.Option(None, "--read-path", metavar="TEMPLATE",
                                        help="A GET path a read-back check may read, e.g. /refunds/{id}; repeatable"),
    handler: list[str] = typer.Option(None, "--handler", metavar="NAME",
                                      help="An undo handler allowed to act on this system, e.g. helpdesk.set_status; repeatable"),
    auth: Auth = typer.Option(Auth.none, "--auth", case_sensitive=False,
                              help="How the credentials are sent: none, bearer (a token) or basic (user:password)"),
    credentials_env: str = typer.Option("", "--credentials-env", metavar="VAR",
                                        help="The server's environment variable holding the credentials (never the value)"),
    timeout: float = typer.Option(None, "--timeout", metavar="SECONDS", help="Timeout of each call, in seconds (default 10)"),
    actor: str = ActorOpt,
    api: str = ApiOpt,
) -> None:
    """Register (or replace) a system of record undo may call; audited as system.register."""
    import re

    from pydantic import ValidationError

    from flightrec.rollback.systems import NAME_PATTERN, SystemSpec

    if not re.match(NAME_PATTERN, name):
        _fail(f"{name!r} is not a system name: lowercase letters, digits and '_.-', starting with a letter (e.g. billing)")
    if not (path or handler):
        _fail("give undo something to call: --path /refunds/{id}/undo (repeatable) or --handler NAME")
    if auth is not Auth.none and not credentials_env:
        _fail(f"--auth {auth.value} needs --credentials-env VAR: the environment variable on the server that holds "
              f"the {'token' if auth is Auth.bearer else 'user:password'}")
    body: dict[str, Any] = {"base_url": base_url, "paths": path or [], "read_paths": read_path or [],
                            "handlers": handler or [], "auth": auth.value, "credentials_env": credentials_env}
    if timeout is not None:
        body["timeout_s"] = timeout
    try:
        SystemSpec(**body)
    except ValidationError as exc:
        problems = "; ".join(f"{SYSTEM_OPTIONS.get(str(error['loc'][0]), error['loc'][0]) if error['loc'] else 'input'}: "
                             f"{error['msg'].removeprefix('Value error, ')}" for error in exc.errors())
        _fail(problems)
    system = _api_call(api or ctx.obj, "POST", "/api/systems", json={"name": name, "actor": actor, **body})
    print_systems(console, {"items": [system], "count": 1}, flightrec_command(), title=f"registered {system['name']}")


def _run_fleet_with_progress(fleet_config: Any) -> Any:
    from flightrec.demo.fleet import run_fleet

    with Progress(
        TextColumn("[bold]agent fleet"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("workflows", total=fleet_config.workflows)
        return run_fleet(fleet_config, progress=lambda n: progress.advance(task, n))


@app.command()
def fleet(
    endpoint: str = typer.Option("http://127.0.0.1:4318", help="OTLP endpoint (HTTP base URL or gRPC host:port URL)"),
    protocol: str = typer.Option("http", help="OTLP protocol: http or grpc"),
    workflows: int = typer.Option(200, min=1, help="How many agent workflows to run"),
    seed: int = typer.Option(7, help="Random seed; the same seed gives the same fleet"),
    regression_at: int = typer.Option(
        None, "--regression-at", help="Workflow index where the injections start (default: workflows // 2)"
    ),
    no_regression: bool = typer.Option(False, "--no-regression", help="A clean control run: no injection at all"),
    inject: list[str] = typer.Option(
        None,
        "--inject",
        metavar="KIND",
        help="Inject a labeled regression, repeatable: version, loop, cost, drift, outlier (default: version)",
    ),
    spacing: float = typer.Option(None, "--spacing", metavar="SECONDS", help="Simulated seconds between workflows"),
    ingest_token: str = typer.Option(None, envvar="FLIGHTREC_INGEST_TOKEN", help="Bearer token to send"),
    records: str = typer.Option(None, "--records", help="Base URL of the demo system of record"),
    check_controls: bool = typer.Option(
        False, "--check-controls", help="Ask the kill switches before each action (paused agents' actions are blocked)"
    ),
    api: str = typer.Option(None, "--api", help="API base URL for the kill switches (default: the HTTP endpoint)"),
    pace: float = typer.Option(0.0, "--pace", min=0, help="Seconds to wait between workflows (a live fleet)"),
) -> None:
    """Run a simulated agent fleet that exports real OTLP spans."""
    from pydantic import ValidationError

    from flightrec.demo.fleet import FleetConfig

    try:
        fleet_config = FleetConfig(
            endpoint=endpoint,
            protocol=protocol,
            workflows=workflows,
            seed=seed,
            regression_at=regression_at,
            no_regression=no_regression,
            inject=inject or [],
            spacing_s=spacing,
            ingest_token=ingest_token,
            records_url=records,
            check_controls=check_controls,
            api_url=api,
            pace_s=pace,
        )
    except ValidationError as exc:
        _fail(f"invalid fleet option: {exc}")
    try:
        report = _run_fleet_with_progress(fleet_config)
    except RuntimeError as exc:
        _fail(str(exc))
    console.print(f"sent {report.spans} spans in {report.traces} traces from {', '.join(report.agents)}")


@app.command()
def demo(
    workflows: int = typer.Option(300, min=1, help="How many agent workflows the fleet runs first"),
    seed: int = typer.Option(None, help="Fleet random seed (default: 7 on a new data directory, a fresh one on a rerun)"),
    pace: float = typer.Option(5.0, "--pace", min=0, metavar="SECONDS",
                               help="While serving, a small live fleet runs a workflow this often (0: no live fleet)"),
    data: Path = typer.Option(Path(".flightrec/demo"), help="Data directory of the demo store"),
    http_port: int = typer.Option(4318, help="OTLP/HTTP + API port"),
    grpc_port: int = typer.Option(4317, help="OTLP/gRPC port"),
    records_port: int = typer.Option(4400, help="Port of the demo system of record"),
    ui_port: int = typer.Option(8501, help="Port of the dashboards"),
    no_ui: bool = typer.Option(False, "--no-ui", help="Do not start the dashboards"),
    exit_after: bool = typer.Option(False, "--exit", help="Stop once the demo is printed instead of serving on"),
) -> None:
    """Serve on an embedded store with a demo system of record, run the agent fleet, show what was recorded."""
    import httpx

    from flightrec.demo.run import DemoConfig, run_demo

    config = DemoConfig(workflows=workflows, seed=seed, data=data, http_port=http_port, grpc_port=grpc_port,
                        records_port=records_port, ui_port=ui_port, ui=not no_ui, serve_on=not exit_after, pace_s=pace,
                        command=flightrec_command())
    try:
        run_demo(config, console, _run_fleet_with_progress)
    except KeyboardInterrupt:
        console.print(f"stopped; the recorded data stays in {escape(str(data))}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        _fail(f"the demo stopped: {exc}")


def _require_sign_in(api: str, host: str) -> None:
    """Dashboards beyond loopback only on an API that asks who acts (else anyone on the network could)."""
    import httpx

    try:
        answer = httpx.get(f"{api.rstrip('/')}/api/whoami", timeout=5)
    except httpx.HTTPError as exc:
        _fail(f"cannot check that the API at {api} asks for sign-in ({exc}); start `flightrec serve` first, "
              f"or bind the dashboards to 127.0.0.1 instead of {host}")
    if answer.status_code != 401:
        _fail(f"the API at {api} has no sign-in (FLIGHTREC_API_TOKEN is unset there): dashboards on {host} would "
              "let anyone on the network pause agents and run rollbacks. Set an API token on the server "
              "(people then sign in with their own tokens), or bind --host 127.0.0.1")


@app.command()
def ui(
    api: str = typer.Option(
        "http://127.0.0.1:4318", "--api", envvar="FLIGHTREC_API_URL", help="Base URL of the API the dashboards read"
    ),
    port: int = typer.Option(8501, min=1, max=65535, help="Port the dashboards listen on"),
    host: str = typer.Option("127.0.0.1", help="Interface the dashboards bind (0.0.0.0 exposes them to the network)"),
    oidc_secrets: Path | None = typer.Option(
        None, "--oidc-secrets", envvar="FLIGHTREC_UI_OIDC_SECRETS",
        help="Streamlit secrets file with an \\[auth] table: people sign in with that OpenID provider (the API "
             "needs FLIGHTREC_OIDC_ISSUER and FLIGHTREC_OIDC_AUDIENCE to match)"),
) -> None:
    """Serve the dashboards (Streamlit) on the API at --api; FLIGHTREC_API_TOKEN is passed along."""
    from flightrec.dashboards.auth_config import AuthConfigError, load_auth
    from flightrec.dashboards.launch import exec_ui

    if not api.startswith(("http://", "https://")):
        _fail(f"--api {api!r} is not an http(s) URL; pass the server's base URL, e.g. http://127.0.0.1:4318")
    if host not in ("127.0.0.1", "localhost", "::1"):
        _require_sign_in(api, host)
    if oidc_secrets is not None:
        try:
            providers = load_auth(oidc_secrets, port).providers()
        except AuthConfigError as exc:
            _fail(f"--oidc-secrets: {exc}")
        console.print(f"Sign-in with {', '.join(sorted(providers))} (OpenID Connect, from {oidc_secrets})")
    console.print(f"Flight Recorder dashboards on http://{host}:{port}, reading the API at {api}")
    exec_ui(api, port, host, oidc_secrets)


@app.command()
def records(
    port: int = typer.Option(4400, min=1, max=65535, help="Port the records service listens on"),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (the service has no auth: keep it on loopback)"),
    db: Path = typer.Option(Path(".flightrec/records.db"), "--db", help="SQLite file holding the state (created)"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
) -> None:
    """Serve the demo system of record the fleet acts on (refunds, credits, plans, orders, tickets; undo)."""
    from flightrec.demo.records import serve_records

    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] the records service has no auth and binds {host}")
    console.print(f"Flight Recorder demo records on http://{host}:{port} (state in {db}); the fleet: --records URL")
    serve_records(port, host, db, log_level)
