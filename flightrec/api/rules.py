"""The derivation rules: the ones in force, checking a file against the stored data, re-deriving history."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from flightrec.api.deps import get_runtime, get_store
from flightrec.rederive import RederiveStatus
from flightrec.auth import principal_of
from flightrec.runtime import Runtime
from flightrec.settings import SettingsFileError
from flightrec.store import Store
from flightrec.store.conventions import builtin_rules
from flightrec.store.meaning import RulePreview
from flightrec.store.rules import FieldRule, LinkRule, RulesError, parse_rules

router = APIRouter(tags=["rules"])


class RulesInForce(BaseModel):
    """Every rule the engine derives with, the user's first (they win), and where history stands."""

    links: list[LinkRule]
    fields: list[FieldRule]
    user_rules: int = Field(description="rules from the rules file and link_aliases")
    rules_file: str | None = Field(description="the rules file in force (FLIGHTREC_RULES)")
    rederive: RederiveStatus


class RuleProblem(BaseModel):
    line: int | None
    reason: str


class RulesCheck(BaseModel):
    """A rules file checked: its problems (none: it is valid) and what each rule would do on stored spans."""

    valid: bool
    problems: list[RuleProblem] = Field(default_factory=list)
    previews: list[RulePreview] = Field(default_factory=list)


def _job(runtime: Runtime):  # noqa: ANN202 - the job's own type
    if runtime.rederive is None:
        raise HTTPException(503, "the rules job is not running")
    return runtime.rederive


@router.get("/rules", summary="The rules in force, built-in and the user's", response_model=RulesInForce)
def rules_in_force(runtime: Runtime = Depends(get_runtime), store: Store = Depends(get_store)) -> RulesInForce:
    rules = builtin_rules().merged(store.config.rules)
    return RulesInForce(links=rules.links, fields=rules.fields, user_rules=store.config.rules.user_count(),
                        rules_file=str(runtime.settings.rules) if runtime.settings.rules else None,
                        rederive=_job(runtime).status())


@router.post("/rules/check", summary="Check a rules file (TOML in the body) and preview it on the stored spans",
             response_model=RulesCheck)
def check_rules(request: Request, text: str = Body(..., media_type="text/plain", max_length=1_000_000),
                store: Store = Depends(get_store)) -> RulesCheck:
    try:
        rules = parse_rules(text, name=request.headers.get("x-rules-file", "rules"))
    except RulesError as exc:
        return RulesCheck(valid=False, problems=[RuleProblem(line=line, reason=reason) for line, reason in exc.problems])
    problems = store.meaning.check_patterns(rules)
    if problems:
        return RulesCheck(valid=False, problems=[RuleProblem(line=line, reason=reason) for line, reason in problems])
    return RulesCheck(valid=True, previews=store.meaning.preview(rules))


@router.post("/rules/apply", summary="Re-read the rules file and re-derive the stored history with it",
             response_model=RederiveStatus, status_code=202,
             responses={409: {"description": "a re-derivation is already running"},
                        422: {"description": "the rules file is not valid (lines and reasons)"}})
def apply_rules(request: Request, runtime: Runtime = Depends(get_runtime)) -> RederiveStatus:
    job = _job(runtime)
    try:
        rules = runtime.settings.user_rules()
        store = runtime.store
        if store is not None:  # what the engine would refuse, refused here, before anything changes
            store.meaning.validate(rules, store.meaning.columns(rules, runtime.settings.default_tenant))
    except (RulesError, SettingsFileError) as exc:
        raise HTTPException(422, str(exc)) from None
    if not job.start(rules):
        raise HTTPException(409, "a re-derivation is already running: GET /api/rules/status follows it")
    if runtime.store is not None:
        runtime.store.audit.append(actor=principal_of(request).name, act="rules.apply", subject="rules",
                                   details={"user_rules": str(rules.user_count()), "file": str(runtime.settings.rules or "")})
    return job.status()


@router.get("/rules/status", summary="Where the re-derivation of stored history stands", response_model=RederiveStatus)
def rederive_status(runtime: Runtime = Depends(get_runtime)) -> RederiveStatus:
    return _job(runtime).status()
