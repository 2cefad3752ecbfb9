"""`flightrec rules ...`: check a rules file, re-derive history, show the rules in force."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

rules_app = typer.Typer(help="Derivation rules: how attributes become agents, actions and links to business objects.",
                        no_args_is_help=True)
console = Console()
ApiOpt = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]")


def _cli():  # noqa: ANN202 - the cli module, imported late (it imports this one)
    from flightrec import cli

    return cli


def _server(api: str | None) -> tuple[Any, Any]:
    """(settings, an API client) when the server answers, else (settings, None): commands then open the store."""
    import httpx

    settings = _cli()._settings(api_url=api)
    client = _cli().api_client(settings)
    try:
        client.get("/api/health/live").raise_for_status()
    except httpx.HTTPError:
        client.close()
        return settings, None
    return settings, client


def _print_problems(name: str, problems: list[tuple[int | None, str]]) -> None:
    for line, reason in problems:
        console.print(f"[red]{escape(name)}:{line or '?'}:[/red] {escape(reason)}", highlight=False)


def _print_previews(previews: list[dict]) -> None:
    grid = Table("line", "rule", "spans", "objects", "e.g.")
    for item in previews:
        rule = ", ".join(f"{key}={value}" for key, value in item["rule"].items())
        grid.add_row(str(item["line"] or ""), f"{item['kind']}: {rule}", str(item["spans"]),
                     str(item["objects"]) if item["kind"] == "link" else "", ", ".join(item["examples"][:3]))
    console.print(grid)


@rules_app.command("check")
def rules_check(
    file: Path = typer.Argument(..., help="The TOML rules file ([[links]], [[fields]])"),
    api: str = ApiOpt,
) -> None:
    """Validate a rules file (exit 1 naming each bad line) and preview what each rule does on the stored spans."""
    from flightrec.store.rules import RulesError, parse_rules

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        _cli()._fail(f"cannot read {file}: {exc.strerror or exc}")
    try:
        rules = parse_rules(text, name=str(file))
    except RulesError as exc:
        _print_problems(str(file), exc.problems)
        raise typer.Exit(1) from None
    settings, client = _server(api)
    if client is not None:
        try:
            response = client.post("/api/rules/check", content=text.encode(),
                                   headers={"content-type": "text/plain", "x-rules-file": str(file)})
        finally:
            client.close()
        if response.status_code >= 400:
            _cli()._fail(f"{response.text} (HTTP {response.status_code})")
        result = response.json()
        problems, previews = [(p["line"], p["reason"]) for p in result["problems"]], result["previews"]
    else:
        from flightrec.store import open_store

        store = open_store(settings.store_config())
        try:
            problems = store.meaning.check_patterns(rules)
            previews = [] if problems else [p.model_dump() for p in store.meaning.preview(rules)]
        finally:
            store.close()
    if problems:
        _print_problems(str(file), problems)
        raise typer.Exit(1)
    console.print(f"{escape(str(file))}: {len(rules.links)} link rule(s), {len(rules.fields)} field rule(s): valid")
    _print_previews(previews)


def _progress() -> Progress:
    return Progress(TextColumn("re-deriving stored spans"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("partitions"), TimeElapsedColumn(), console=console)


@rules_app.command("apply")
def rules_apply(api: str = ApiOpt) -> None:
    """Re-derive the stored history with the rules in force (the server re-reads FLIGHTREC_RULES); no re-ingest."""
    from flightrec.store.rules import RulesError

    settings, client = _server(api)
    if client is None:
        from flightrec.store import open_store

        try:
            config = settings.store_config()
        except RulesError as exc:
            _print_problems(str(settings.rules), exc.problems)
            raise typer.Exit(1) from None
        store = open_store(config)
        try:
            with _progress() as bar:
                task = bar.add_task("rederive", total=None)
                spans = store.meaning.rederive(config.rules, config.default_tenant,
                                               lambda done, total: bar.update(task, completed=done, total=total))
        finally:
            store.close()
        console.print(f"re-derived {spans} stored spans with {config.rules.user_count()} user rule(s)")
        return
    try:
        started = client.post("/api/rules/apply")
        if started.status_code >= 400:
            _cli()._fail(f"{started.json().get('detail', started.text)} (HTTP {started.status_code})")
        with _progress() as bar:
            task = bar.add_task("rederive", total=None)
            while True:
                status = client.get("/api/rules/status").json()
                bar.update(task, completed=status["partitions_done"], total=status["partitions"] or None)
                if status["state"] != "running":
                    break
                time.sleep(0.2)
    finally:
        client.close()
    if status["state"] == "failed":
        _cli()._fail(f"re-deriving failed: {status['error']}")
    console.print(f"re-derived {status['spans']} stored spans")


@rules_app.command("show")
def rules_show(api: str = ApiOpt) -> None:
    """The rules in force (the user's first, then the built-in conventions), from the running server."""
    rules = _cli()._api_call(api, "GET", "/api/rules")
    grid = Table("origin", "kind", "rule")
    for kind in ("links", "fields"):
        for rule in rules[kind]:
            body = {k: v for k, v in rule.items() if k not in ("origin", "line") and v not in (None, {}, False, "any")}
            grid.add_row(rule["origin"], kind[:-1], ", ".join(f"{k}={v}" for k, v in body.items()))
    console.print(grid)
    state = rules["rederive"]
    console.print(f"history: {'stale, re-deriving' if state['stale'] else 'derived with these rules'} "
                  f"(last run: {state['state']})")
