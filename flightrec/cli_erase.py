"""`flightrec erase`: erase a data subject's content through the running server's API (audited; proofs stay valid)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from flightrec.paths import api_path

console = Console()


def erase(
    subject: str = typer.Option("", "--subject", help="Erase in the spans linked to this object, TYPE:ID "
                                                       "(e.g. customer:C-1001)"),
    value: list[str] = typer.Option([], "--value", help="Erase this value wherever an attribute holds it "
                                                        "(repeatable; at least 4 characters)"),
    reason: str = typer.Option(..., "--reason", help="Why: the data subject's request and its reference (required)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be erased; change nothing"),
    override_hold: str = typer.Option("", "--override-hold", metavar="REASON",
                                      help="Erase spans under legal hold too, for this reason (otherwise refused)"),
    actor: str = typer.Option("", "--actor", envvar="FLIGHTREC_ACTOR", help="Who acts, without sign-in only "
                                                                            "(signed in: you)"),
    api: str = typer.Option(None, "--api", help="API base URL [FLIGHTREC_API_URL, default http://127.0.0.1:4318]"),
) -> None:
    """Erase a subject's input/output text and matching attribute values; span records and proofs stay intact."""
    from pydantic import ValidationError

    from flightrec import cli
    from flightrec.evidence.erasure import ErasureOrder
    from flightrec.store.models import ObjectRef

    try:
        if subject.strip():
            ObjectRef.parse(subject)
        order = ErasureOrder(subject=subject, values=value, reason=reason, dry_run=dry_run,
                             override_hold=bool(override_hold.strip()), override_reason=override_hold, actor=actor)
    except ValidationError as exc:
        cli._fail("; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors()))
    except ValueError as exc:
        cli._fail(f"--subject: {exc}")
    done = cli._api_call(api, "POST", api_path("erasures"), json=order.model_dump(), timeout=3600)
    what = (f"{done['spans']:,} spans and {done['logs']:,} log records of {escape(done['subject'])}"
            f" ({done['values']} values)")
    if done["dry_run"]:
        console.print(f"would erase {what}; nothing was changed")
    elif not done["request_id"]:
        console.print(f"nothing left to erase in {what}")
    else:
        console.print(f"erased {what}: request {done['request_id']}, audit entry {done['audit_seq']}")
    if done["keys"]:
        console.print(f"keys: {escape(', '.join(done['keys']))}")
    for example in done["examples"]:
        console.print(f"  {example['trace_id']}:{example['span_id']} {escape(example['name'])}: "
                      f"{escape(', '.join(example['keys']))}")
    if done["holds"]:
        state = "overridden" if done["request_id"] else "in force (erasing needs --override-hold REASON)"
        console.print(f"legal holds on spans in scope, {state}: {', '.join(done['holds'])}")
    if done["request_id"]:
        typer.echo(done["request_id"])
