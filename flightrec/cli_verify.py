"""`flightrec verify`: an evidence bundle checked offline, or (``--store``) the stored record through the API.

``flightrec verify BUNDLE`` reads nothing but the file (and the trusted key, if given): no server,
no store, no network (evidence/bundle_verify.py). Exit 0 intact, 1 when anything fails, 2 when the
file is not a readable bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

console = Console()


def verify(
    bundle: Path = typer.Argument(None, help="An evidence bundle (zip) to check offline, with nothing but the file"),
    store: bool = typer.Option(False, "--store", help="Re-hash every stored span and audit entry against the "
                                                      "evidence log and its newest signed checkpoint"),
    key: Path = typer.Option(None, "--key", help="With a bundle: the trusted public key (PEM, from GET "
                                                 "/api/evidence/key) it must be signed by"),
    fingerprint: str = typer.Option(None, "--fingerprint", help="With a bundle: the trusted key's fingerprint "
                                                               "(SHA-256 hex, from GET /api/evidence/key)"),
    as_json: bool = typer.Option(False, "--json", help="The verdict as JSON"),
    api: str = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]"),
) -> None:
    """Check a bundle offline (exit 1 naming what fails, 2 if no bundle), or with --store the server's record."""
    if bundle is not None and not store:
        _verify_bundle(bundle, key, fingerprint, as_json)
        return
    from flightrec import cli  # the API client: checking a bundle never imports the whole command group

    if bundle is not None:
        cli._fail("give a bundle or --store, not both")
    if not store:
        cli._fail("name a bundle to check (flightrec verify bundle.zip) or check the server's store (--store)")
    verdict = cli._api_call(api, "POST", "/api/evidence/verify", timeout=3600)
    if as_json:
        typer.echo(json.dumps(verdict, indent=2, ensure_ascii=False))
    else:
        _print(verdict)
    if not verdict["ok"]:
        raise typer.Exit(1)


def run_alone(args: list[str]) -> None:
    """``flightrec verify ARGS`` as the whole CLI runs it, without importing or building the other commands.

    The entry point comes here for ``verify``, so a colleague's check of a bundle starts in a fraction of
    the time the whole command group takes to import (issue 11: verifying a bundle <= 1 s, start included)."""
    alone = typer.Typer(add_completion=False)  # the group offers completion, never its commands
    alone.command()(verify)
    alone(args=args, prog_name="flightrec verify")


def _verify_bundle(path: Path, key: Path | None, fingerprint: str | None, as_json: bool) -> None:
    from flightrec.evidence.bundle_verify import verify_bundle

    def unreadable(message: str) -> None:
        console.print(Text(f"error: {message}", style="red"))
        raise typer.Exit(2)

    try:
        data = path.read_bytes()
    except OSError as exc:
        unreadable(f"cannot read {path}: {exc.strerror or exc}")
    trusted = None
    if key is not None:
        try:
            trusted = key.read_bytes()
        except OSError as exc:
            unreadable(f"cannot read the trusted key {key}: {exc.strerror or exc}")
    try:
        verdict = verify_bundle(data, trusted_pem=trusted, trusted_fingerprint=fingerprint)
    except ValueError as exc:  # the trusted key is no Ed25519 PEM
        unreadable(f"the trusted key {key} is not an Ed25519 public key in PEM ({exc})")
    if as_json:
        typer.echo(verdict.model_dump_json(indent=2))
    else:
        _print_bundle(path, verdict)
    if not verdict.readable:
        raise typer.Exit(2)
    if not verdict.ok:
        raise typer.Exit(1)


def _print_bundle(path: Path, verdict) -> None:  # noqa: ANN001 - a BundleVerdict
    if not verdict.readable:
        console.print(Text(f"NOT A BUNDLE: {path}: {verdict.problems[0].problem}", style="bold red"))
        return
    what = (f"bundle {verdict.bundle_id} by {verdict.exported_by} ({verdict.generated_at:%Y-%m-%d %H:%M:%S} UTC): "
            f"{verdict.spans_checked:,} spans, {verdict.audit_checked:,} audit entries, {verdict.files_checked} files, "
            f"checkpoint of {verdict.checkpoint_size:,} leaves, key {verdict.key_fingerprint[:16]}… "
            f"({verdict.key_source})") if verdict.generated_at else f"bundle {path}"
    if verdict.ok:
        console.print(Text(f"intact: {what}", style="green"))
    else:
        from flightrec.cli_output import plural

        console.print(Text(f"BROKEN: {plural(len(verdict.problems), 'problem')} in {what}", style="bold red"))
        for problem in verdict.problems:
            ref = f" {problem.ref}" if problem.ref else ""
            console.print(Text(f"  - {problem.file or '(bundle)'}{ref}: {problem.problem}"))
    for erased in verdict.erased:
        console.print(Text(f"erased: {erased}", style="yellow"))
    for note in verdict.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    for line in verdict.proves:
        console.print(Text(f"proves: {line}"))
    for line in verdict.does_not_prove:
        console.print(Text(f"does not prove: {line}"))


def _print(verdict: dict) -> None:
    from flightrec.cli_output import plural

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
    for line in verdict.get("erased", []):
        console.print(Text(f"  erased: {line}"))
    if verdict.get("erased_total", 0) > len(verdict.get("erased", [])):
        console.print(Text(f"  ... and {verdict['erased_total'] - len(verdict['erased'])} more erased (--json)"))
    for note in verdict["notes"]:
        console.print(Text(f"note: {note}", style="yellow"))
