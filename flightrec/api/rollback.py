"""Actions, undo plans and their approval and execution."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from flightrec.api import names  # noqa: F401 - registers the {param:text} path convertor
from flightrec.auth import acting_as
from flightrec.api.deps import get_rollback, get_store
# The rollback service with its registry of systems of record attached (see flightrec.api.systems).
from flightrec.api.envelope import Page
from flightrec.rollback import PlanError, RollbackService, Selector, UndoPlan
from flightrec.store import Store
from flightrec.store.operations import ActionRecord

router = APIRouter(tags=["rollback"])
PLAN_ERRORS = {
    400: {"description": "a required field is missing"},
    403: {"description": "the author cannot approve their own plan"},
    404: {"description": "unknown plan"},
    409: {"description": "the plan's state does not allow this (e.g. approving a plan that needs no approval)"},
}


class PlanRequest(Selector):
    actor: str = Field(default="", description="who acts, without sign-in only (loopback, no API token); signed in: the principal")


class ActorRequest(BaseModel):
    actor: str = Field(default="", description="who acts, without sign-in only (loopback, no API token); signed in: the principal")
    wait: bool = Field(default=False, description="execute: answer only once the plan has finished")


def _plan_call(call, *args) -> UndoPlan:
    try:
        return call(*args)
    except PlanError as exc:
        raise HTTPException(exc.code, exc.message) from exc


@router.get("/actions", summary="Actions agents took or proposed, newest first", response_model=Page[ActionRecord])
def list_actions(
    agent: str = Query("", description="only this agent's"),
    object: str = Query("", description="only actions on this object (type:id)"),
    flow: str = Query("", description="only this flow's (root span name)"),
    last: int = Query(50, ge=1, le=10_000, description="at most this many"),
    performed: bool = Query(False, description="only actions that took effect (auto mode, succeeded)"),
    store: Store = Depends(get_store),
) -> Page[ActionRecord]:
    return Page.of(store.actions.list_actions(agent=agent, object_ref=object, flow=flow, last=last, performed_only=performed))


@router.post("/rollback/plans", summary="Plan the undo of actions (a dry run: nothing is executed)",
             response_model=UndoPlan, status_code=status.HTTP_201_CREATED, responses=PLAN_ERRORS)
def create_plan(body: PlanRequest, request: Request, rollback: RollbackService = Depends(get_rollback)) -> UndoPlan:
    selector = Selector(**body.model_dump(exclude={"actor"}))
    return _plan_call(rollback.create, selector, acting_as(request, body.actor, "who asks for the rollback"))


@router.get("/rollback/plans", summary="Recent undo plans", response_model=Page[UndoPlan])
def list_plans(limit: int = Query(50, ge=1, le=500), rollback: RollbackService = Depends(get_rollback)) -> Page[UndoPlan]:
    return Page.of(rollback.list(limit))


@router.get("/rollback/plans/{plan_id:text}", summary="One plan with each step's status", response_model=UndoPlan,
            responses=PLAN_ERRORS)
def get_plan(plan_id: str, rollback: RollbackService = Depends(get_rollback)) -> UndoPlan:
    return _plan_call(rollback.get, plan_id)


@router.post("/rollback/plans/{plan_id:text}/approve", summary="Approve a plan (not its author)", response_model=UndoPlan,
             responses=PLAN_ERRORS)
def approve_plan(plan_id: str, body: ActorRequest, request: Request,
                 rollback: RollbackService = Depends(get_rollback)) -> UndoPlan:
    return _plan_call(rollback.approve, plan_id, acting_as(request, body.actor, "who approves"))


@router.post("/rollback/plans/{plan_id:text}/execute", summary="Execute or resume a plan", response_model=UndoPlan,
             responses=PLAN_ERRORS)
def execute_plan(plan_id: str, body: ActorRequest, request: Request,
                 rollback: RollbackService = Depends(get_rollback)) -> UndoPlan:
    return _plan_call(rollback.execute, plan_id, acting_as(request, body.actor, "who executes"), body.wait)
