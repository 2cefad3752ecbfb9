"""The registry of systems of record undo may call: list them, register one (audited)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import Field

from flightrec.auth import acting_as
from flightrec.api.deps import get_systems
from flightrec.api.envelope import Page
from flightrec.rollback import SystemRegistry
from flightrec.rollback.systems import NAME_PATTERN, Refused, SystemOfRecord, SystemSpec

router = APIRouter(tags=["systems"])
SYSTEM_ERRORS = {
    400: {"description": "no actor, or the target is this server itself"},
    409: {"description": "the system is defined in the settings file (change it there)"},
}


class SystemRequest(SystemSpec):
    name: str = Field(pattern=NAME_PATTERN, description="the name undo descriptors use (flightrec.undo.system)")
    actor: str = Field(default="", description="who acts, without sign-in only (loopback, no API token); signed in: the principal")


@router.get("/systems", summary="Systems of record undo may call", response_model=Page[SystemOfRecord])
def list_systems(registry: SystemRegistry = Depends(get_systems)) -> Page[SystemOfRecord]:
    return Page.of(registry.systems())


@router.post("/systems", summary="Register (or replace) a system of record undo may call; audited",
             response_model=SystemOfRecord, status_code=status.HTTP_201_CREATED, responses=SYSTEM_ERRORS)
def register_system(body: SystemRequest, request: Request,
                    registry: SystemRegistry = Depends(get_systems)) -> SystemOfRecord:
    actor = acting_as(request, body.actor, "who registers this system")
    existing = registry.get(body.name)
    if existing is not None and existing.source != "api":
        raise HTTPException(409, f"system {body.name} is defined in the {existing.source} settings; change it there")
    try:
        return registry.register(body.name, SystemSpec(**body.model_dump(exclude={"name", "actor"})), actor)
    except Refused as exc:
        raise HTTPException(400, str(exc)) from exc
