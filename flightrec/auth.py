"""Who a request acts as, and what each role may do: one table, checked by one router dependency.

Principals hold tokens (``flightrec tokens create``); ``FLIGHTREC_API_TOKEN`` is the bootstrap
``admin``. With no API token configured the server binds loopback only and a request without a
token acts as the ``local`` principal (admin, named by the request's ``actor``, the single-user
setup); a token, when sent, is always checked.

Every ``/api`` route is in :data:`ROUTE_ROLES`; a route missing from it is refused to everyone
but admin (fail closed), and a test walks the OpenAPI route table against every role.
"""

from __future__ import annotations

import hmac
from enum import Enum
from typing import Any, NoReturn

from fastapi import HTTPException, Request, status

from flightrec.oidc import IssuerUnreachable, OidcConfig, TokenRefused, looks_like_jwt, verifier
from flightrec.store.principals import Principal


class Role(str, Enum):
    viewer = "viewer"          # stories, traces, objects, alerts, rollups: read
    auditor = "auditor"        # read, the audit log, attaching runs to objects by hand
    sre = "sre"                # triage: kill switches, rollback plans and their execution, replays, detectors
    approver = "approver"      # approving high-risk rollback plans (never one's own)
    compliance = "compliance"  # read and the audit log (evidence exports)
    admin = "admin"            # everything: principals, systems of record, rules
    agent = "agent"            # the controls check, for its own agent names only (ingest has its own tokens)


READ = frozenset({Role.viewer, Role.auditor, Role.sre, Role.approver, Role.compliance})
R = Role
# (method, OpenAPI path) -> roles allowed besides admin.
ROUTE_ROLES: dict[tuple[str, str], frozenset[Role]] = {
    **{("GET", path): READ for path in (
        "/api/stats", "/api/traces/{trace_id}", "/api/objects", "/api/objects/{type}/{id}/spans",
        "/api/objects/{type}/{id}/story", "/api/objects/{type}/{id}/story.html", "/api/search", "/api/actions",
        "/api/rollback/plans", "/api/rollback/plans/{plan_id}", "/api/controls", "/api/controls/{scope}/{name}",
        "/api/alerts", "/api/rollups", "/api/governance", "/api/runs/unlinked", "/api/runs", "/api/rules",
        "/api/rules/status",
    )},
    ("GET", "/api/controls/check"): READ | {R.agent},
    ("GET", "/api/whoami"): READ | {R.agent},
    ("GET", "/api/audit"): frozenset({R.auditor, R.compliance}),
    ("GET", "/api/audit/verify"): frozenset({R.auditor, R.compliance}),
    ("POST", "/api/links"): frozenset({R.auditor, R.sre}),
    ("POST", "/api/rollback/plans"): frozenset({R.sre}),
    ("POST", "/api/rollback/plans/{plan_id}/execute"): frozenset({R.sre}),
    ("POST", "/api/rollback/plans/{plan_id}/approve"): frozenset({R.approver, R.sre}),
    ("POST", "/api/controls/{scope}/{name}/{command}"): frozenset({R.sre}),
    ("POST", "/api/detectors/run"): frozenset({R.sre}),
    ("GET", "/api/quarantine"): frozenset({R.sre}),
    ("POST", "/api/quarantine/replay"): frozenset({R.sre}),
    ("POST", "/api/quarantine/{segment}/replay"): frozenset({R.sre}),
    ("GET", "/api/systems"): frozenset({R.sre}),
    ("POST", "/api/systems"): frozenset(),
    ("POST", "/api/rules/check"): frozenset({R.sre}),
    ("POST", "/api/rules/apply"): frozenset(),
    ("GET", "/api/principals"): frozenset(),
    ("POST", "/api/principals"): frozenset(),
    ("DELETE", "/api/principals/{name}"): frozenset(),
    # The audit log's signed head and checks, and the key that signs (issue 10).
    ("GET", "/api/audit/head"): frozenset({R.auditor, R.compliance}),
    ("POST", "/api/audit/verify"): frozenset({R.auditor, R.compliance}),
    ("GET", "/api/evidence/key"): frozenset({R.auditor, R.compliance}),
    # Legal holds (issue 11): readers see them; compliance places and releases them.
    ("GET", "/api/holds"): READ,
    ("POST", "/api/holds"): frozenset({R.compliance}),
    ("POST", "/api/holds/{hold_id}/release"): frozenset({R.compliance}),
    # The evidence log (issue 11): checkpoints, proofs, and the check of the store against it.
    ("GET", "/api/evidence/checkpoint"): frozenset({R.auditor, R.compliance}),
    ("POST", "/api/evidence/checkpoints"): frozenset({R.compliance}),
    ("GET", "/api/evidence/proofs/inclusion"): frozenset({R.auditor, R.compliance}),
    ("GET", "/api/evidence/proofs/consistency"): frozenset({R.auditor, R.compliance}),
    ("POST", "/api/evidence/verify"): frozenset({R.auditor, R.compliance}),
    # Erasure on request (issue 11): compliance erases; auditors and compliance see what was erased.
    ("GET", "/api/erasures"): frozenset({R.auditor, R.compliance}),
    ("POST", "/api/erasures"): frozenset({R.compliance}),
    # Evidence bundles (issue 11): compliance exports (audited); auditors and compliance verify uploads.
    ("POST", "/api/evidence/exports/preview"): frozenset({R.compliance}),
    ("POST", "/api/evidence/exports"): frozenset({R.compliance}),
    ("POST", "/api/evidence/bundles/verify"): frozenset({R.auditor, R.compliance}),
}

# What a tenant-scoped person (a principal with a tenant) may call: reads that filter by tenant.
# Every other route is fleet-wide and refused to them (fail closed).
TENANT_ROUTES = frozenset({
    ("GET", "/api/whoami"), ("GET", "/api/objects"), ("GET", "/api/objects/{type}/{id}/spans"),
    ("GET", "/api/objects/{type}/{id}/story"), ("GET", "/api/objects/{type}/{id}/story.html"),
    ("GET", "/api/traces/{trace_id}"),
})

API_PREFIX = "/api"
LOCAL = Principal(name="local", kind="local", roles=[Role.admin.value])
ADMIN = Principal(name="admin", kind="person", roles=[Role.admin.value])


def route_template(request: Request) -> str:
    """The matched route's path as OpenAPI writes it (``{name:text}`` -> ``{name}``)."""
    route = request.scope.get("route")
    path = getattr(route, "path", "") or ""
    out, depth, skipping = [], 0, False
    for char in path:
        if char == "{":
            depth, skipping = depth + 1, False
        elif char == "}":
            depth, skipping = depth - 1, False
        elif char == ":" and depth:
            skipping = True
            continue
        if not skipping:
            out.append(char)
    return "".join(out)


def allowed(principal: Principal, method: str, path: str) -> bool:
    if Role.admin.value in principal.roles:
        return True
    roles = ROUTE_ROLES.get((method, path))
    return roles is not None and any(role.value in principal.roles for role in roles)


def identify(request: Request) -> Principal:
    """The principal of a request: the bootstrap admin token, an ID token of the configured OIDC issuer
    (naming a principal), a principal's token, or local (no auth configured)."""
    settings = request.app.state.settings
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    token = given.strip() if scheme.lower() == "bearer" else ""
    if not token:
        if settings.api_token is None:
            return LOCAL
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API token: sign in with Authorization: Bearer <token> "
                            "(FLIGHTREC_API_TOKEN, or a token from `flightrec tokens create`)",
                            headers={"WWW-Authenticate": "Bearer"})
    if settings.api_token is not None and hmac.compare_digest(token, settings.api_token.get_secret_value()):
        return ADMIN
    runtime = getattr(request.app.state, "runtime", None)
    store = getattr(runtime, "store", None)
    oidc = settings.oidc_config()
    if oidc is not None and looks_like_jwt(token):
        return _oidc_principal(oidc, token, store)
    principal = store.principals.by_token(token=token) if store is not None else None
    if principal is None:
        hint = (" (it looks like an ID token, but this server accepts none: FLIGHTREC_OIDC_ISSUER is unset)"
                if oidc is None and looks_like_jwt(token) else "")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"unknown or revoked token{hint}",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


def _oidc_principal(config: OidcConfig, token: str, store: Any) -> Principal:
    """The principal an ID token names (kind person, created beforehand, not revoked), or 401 saying why."""
    def refuse(reason: str) -> NoReturn:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"})

    try:
        name = verifier(config).name(token)
    except TokenRefused as exc:
        refuse(exc.reason)
    except IssuerUnreachable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"cannot check the ID token now: {exc}") from exc
    found = store.principals.get(name=name) if store is not None else None
    create = f"an admin creates it with flightrec tokens create --name {name} --role ROLE"
    if found is None:
        refuse(f"no principal named {name}: {create}")
    if found.revoked:
        refuse(f"the principal {name} is revoked: {create} (again)")
    if found.kind != "person":
        refuse(f"the principal {name} is an {found.kind}, not a person: an ID token signs in people only")
    return found


def authorize(request: Request) -> None:
    """The /api router's dependency: identify the caller, then check the route table."""
    principal = identify(request)
    method, path = request.method.upper(), route_template(request)
    if not path.startswith(API_PREFIX + "/"):  # a route of the /api router, as it sees itself
        path = API_PREFIX + path
    if method == "HEAD":
        method = "GET"
    if principal.tenant and principal.kind == "person" and (method, path) not in TENANT_ROUTES:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{principal.name} reads tenant {principal.tenant} only (objects, their stories and spans, "
                            f"traces); {method} {path} spans every tenant")
    if not allowed(principal, method, path):
        needed = sorted(role.value for role in ROUTE_ROLES.get((method, path), frozenset())) or ["admin"]
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{principal.name} ({', '.join(principal.roles)}) may not {method} {path}: "
                            f"it needs one of {', '.join(sorted({*needed, 'admin'}))}")
    request.state.principal = principal


def principal_of(request: Request) -> Principal:
    return getattr(request.state, "principal", LOCAL)


def tenant_of(request: Request) -> str:
    """The one tenant a person's reads are limited to ('' : every tenant)."""
    principal = principal_of(request)
    return principal.tenant if principal.kind == "person" else ""


def acting_as(request: Request, claimed: str = "", what: str = "who acts") -> str:
    """The name an act is recorded under: the signed-in principal, never a request field.

    Only the local principal (no auth configured, loopback) is named by the request, and must be.
    """
    principal = principal_of(request)
    if principal.kind != "local":
        return principal.name
    if not claimed.strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"actor is required: {what}")
    return claimed.strip()
