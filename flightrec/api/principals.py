"""Principals and their tokens: created (the token shown once), listed, revoked; each act audited."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from flightrec.api import names  # noqa: F401 - registers the {param:text} path convertor
from flightrec.api.deps import get_store
from flightrec.api.envelope import Page
from flightrec.auth import Role, acting_as, principal_of
from flightrec.store import Store
from flightrec.store.principals import Principal

router = APIRouter(tags=["principals"])
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class PrincipalRequest(BaseModel):
    name: str = Field(description="unique: a person's login or an agent's name")
    kind: str = Field(default="person", pattern="^(person|agent)$")
    roles: list[Role] = Field(min_length=1)
    agents: list[str] = Field(default_factory=list, description="agent principals: the agent names it speaks for")
    services: list[str] = Field(default_factory=list,
                                description="agent principals: the service names its spans may carry (empty: any)")
    tenant: str = Field(default="", max_length=128, description="agents: the tenant of its spans; people: the one "
                        "tenant whose objects, stories and traces they may read (empty: any)")
    actor: str = ""

    @field_validator("agents", "services")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        cleaned = sorted({item.strip() for item in value if item.strip()})
        if len(cleaned) > 1000 or any(len(item) > 256 for item in cleaned):
            raise ValueError("at most 1000 names of at most 256 characters each")
        return cleaned

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value) or value in ("local", "admin"):
            raise ValueError("a name is letters, digits, '_', '.', '@', '-' (not 'local' or 'admin')")
        return value


class CreatedPrincipal(BaseModel):
    principal: Principal
    token: str = Field(description="shown this once; only its hash is kept")


class WhoAmI(BaseModel):
    """Who a request acts as; ``role`` is the first of its roles (kind ``local``: no sign-in configured)."""

    name: str
    role: str
    roles: list[str]
    kind: str
    agents: list[str]


@router.get("/whoami", summary="Who this request acts as (the dashboards' sign-in check)", response_model=WhoAmI)
def whoami(request: Request) -> WhoAmI:
    principal = principal_of(request)
    return WhoAmI(name=principal.name, role=principal.roles[0] if principal.roles else "", roles=principal.roles,
                  kind=principal.kind, agents=principal.agents)


@router.get("/principals", summary="Every principal, revoked ones too (no tokens)", response_model=Page[Principal])
def list_principals(store: Store = Depends(get_store)) -> Page[Principal]:
    return Page.of(store.principals.all())


@router.post("/principals", summary="Create a principal (or a new token for a revoked one); audited",
             response_model=CreatedPrincipal, status_code=201, responses={409: {"description": "the name is taken"}})
def create_principal(body: PrincipalRequest, request: Request, store: Store = Depends(get_store)) -> CreatedPrincipal:
    actor = acting_as(request, body.actor)
    roles = sorted({role.value for role in body.roles})
    if body.kind == "agent" and (roles != [Role.agent.value] or not body.agents):
        raise HTTPException(422, "an agent principal has the role agent only and names the agents it speaks for")
    if body.kind == "person" and Role.agent.value in roles:
        raise HTTPException(422, "the agent role is for agent principals (kind agent)")
    if body.kind == "person" and body.services:
        raise HTTPException(422, "services scope what an agent principal's spans may claim: kind agent only")
    if body.kind == "person" and body.tenant and Role.admin.value in roles:
        raise HTTPException(422, "an admin spans every tenant: a tenant-scoped person takes read roles")
    current = store.principals.get(name=body.name)
    if current is not None and not current.revoked:
        raise HTTPException(409, f"principal {body.name!r} exists: revoke it first to issue a new token")
    principal, token = store.principals.create(name=body.name, kind=body.kind, roles=roles, agents=body.agents,
                                               services=body.services, tenant=body.tenant, created_by=actor)
    store.audit.append(actor=actor, act="principal.create", subject=f"principal:{body.name}",
                       details={"kind": body.kind, "roles": ",".join(roles), "agents": ",".join(body.agents),
                                "services": ",".join(body.services), "tenant": body.tenant})
    return CreatedPrincipal(principal=principal, token=token)


@router.delete("/principals/{name:text}", summary="Revoke a principal's token; audited", response_model=Principal,
               responses={404: {"description": "no such principal"}})
def revoke_principal(name: str, request: Request, store: Store = Depends(get_store)) -> Principal:
    actor = acting_as(request, request.query_params.get("actor", ""))
    revoked = store.principals.revoke(name=name)
    if revoked is None:
        raise HTTPException(404, f"no principal named {name!r}: GET /api/principals lists them")
    store.audit.append(actor=actor, act="principal.revoke", subject=f"principal:{name}", details={})
    return revoked
