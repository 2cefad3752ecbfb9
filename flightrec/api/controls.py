"""Kill switches for agents and flows, and the check agents make before they act."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from flightrec.api import names  # noqa: F401 - registers the {param:text} path convertor
from flightrec.api.deps import get_store, get_switches
from flightrec.api.envelope import Page
from flightrec.auth import acting_as, principal_of
from flightrec.rollback import ControlDecision, ControlState, KillSwitches
from flightrec.store import Store

router = APIRouter(tags=["controls"])
Scope = Literal["agents", "flows"]
STATES = {"pause": "paused", "resume": "running", "throttle": "throttled", "drain": "draining"}


class ControlRequest(BaseModel):
    actor: str = Field(default="", description="who acts, without sign-in only (loopback, no API token); signed in: the principal")
    reason: str = ""
    max_per_minute: int = Field(default=0, ge=0, description="throttle only: actions allowed per minute")
    force: bool = Field(default=False, description="set the switch of an agent that has never sent spans (a typo otherwise)")


class ControlView(BaseModel):
    """A switch as agents and people read it."""

    agent: str | None = None
    flow: str | None = None
    state: str
    max_per_minute: int
    actor: str
    reason: str
    updated_at: datetime | None
    note: str = Field(default="", description="e.g. the agent named has never sent spans (a typo?), with close names")


def _view(control: ControlState) -> ControlView:
    named = {"agent": control.name} if control.scope == "agent" else {"flow": control.name}
    return ControlView(**named, state=control.state, max_per_minute=control.max_per_minute, actor=control.actor,
                       reason=control.reason, updated_at=control.updated_at)


@router.get("/controls", summary="Every switch that was ever set", response_model=Page[ControlView])
def list_controls(switches: KillSwitches = Depends(get_switches)) -> Page[ControlView]:
    return Page.of([_view(control) for control in switches.all()])


@router.get("/controls/check", summary="May this agent act (or start new work) now?", response_model=ControlDecision)
def check(
    request: Request,
    agent: str = Query(..., min_length=1), flow: str = Query(""),
    starting: bool = Query(False, description="asking to start new work (refused while draining)"),
    switches: KillSwitches = Depends(get_switches),
) -> ControlDecision:
    principal = principal_of(request)
    if principal.kind == "agent" and agent not in principal.agents and "*" not in principal.agents:
        raise HTTPException(403, f"{principal.name} speaks for {', '.join(principal.agents)}, not {agent}")
    return switches.decide(agent=agent, flow=flow, starting=starting)


# A name is any text, "/" included (sent as %2F): the command after it is the last segment.
@router.get("/controls/{scope}/{name:text}", summary="An agent's or flow's switch", response_model=ControlView)
def get_control(scope: Scope, name: str, switches: KillSwitches = Depends(get_switches)) -> ControlView:
    return _view(switches.get(scope=scope[:-1], name=name))


@router.post("/controls/{scope}/{name:text}/{command}", summary="pause, resume, throttle or drain an agent or flow",
             response_model=ControlView, responses={400: {"description": "missing actor or bad throttle"},
                                                    404: {"description": "an agent never seen (send force to set it)"}})
def set_control(
    scope: Scope, name: str, command: Literal["pause", "resume", "throttle", "drain"], body: ControlRequest,
    request: Request, switches: KillSwitches = Depends(get_switches), store: Store = Depends(get_store),
) -> ControlView:
    actor = acting_as(request, body.actor, "who is flipping the switch")
    note = ""
    if scope == "agents":
        known, close = store.agents_like(name=name)
        if not known:
            similar = f" (did you mean {', '.join(repr(other) for other in close)}?)" if close else ""
            if not body.force and switches.get(scope="agent", name=name).updated_at is None:
                raise HTTPException(404, f"no agent named {name!r} has sent spans{similar}; nothing was changed. "
                                    "To set the switch before the agent first runs, send force (CLI: --force)")
            note = f"no agent named {name!r} has sent spans; the switch is set and applies when it does{similar}"
    try:
        control = switches.set_state(scope=scope[:-1], name=name, state=STATES[command], actor=actor,  # type: ignore[arg-type]
                                     reason=body.reason, max_per_minute=body.max_per_minute)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    return _view(control).model_copy(update={"note": note})
