"""Building an undo plan: select actions, newest first, and say for each whether it can be undone."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from flightrec.rollback.models import PlanStep, Selector, UndoCall, UndoPlan
from flightrec.store import Store
from flightrec.store.operations import ActionRecord, LaterChange

UNDO_KINDS = ("http", "handler")


def undo_call(plan_id: str, action: ActionRecord) -> UndoCall | None:
    """The call that reverses an action, from its undo descriptor; None when it has none usable."""
    if action.undo_kind not in UNDO_KINDS or not action.undo_target:
        return None
    try:
        args = json.loads(action.undo_args) if action.undo_args else {}
    except ValueError:
        return None
    if not isinstance(args, dict):
        return None
    return UndoCall(kind=action.undo_kind, target=action.undo_target, args=args,  # type: ignore[arg-type]
                    idempotency_key=f"{plan_id}:{action.action_id}")


def _irreversible_reason(action: ActionRecord) -> str:
    if not action.undo_kind:
        return f"{action.name} recorded no undo descriptor: it cannot be reversed automatically"
    if action.undo_kind not in UNDO_KINDS:
        return f"unknown undo kind {action.undo_kind!r} (expected http or handler)"
    return "the undo descriptor is incomplete (no target, or arguments that are not a JSON object)"


def _conflict(action: ActionRecord, changes: list[LaterChange], in_plan: set[str]) -> str:
    for change in changes:
        if change.object in action.objects and change.time > action.time and change.action_id not in in_plan:
            return (f"{change.object.replace(':', ' ', 1)} was changed after this action by {change.agent} "
                    f"({change.name} at {change.time:%Y-%m-%d %H:%M:%S} UTC)")
    return ""


def build_plan(store: Store, selector: Selector, author: str) -> UndoPlan:
    """Select the performed actions and classify each step; nothing is executed."""
    plan_id = uuid.uuid4().hex[:12]
    actions = store.actions.list_actions(
        agent=selector.agent, object_ref=selector.object, flow=selector.flow, since=selector.since,
        until=selector.until, performed_only=True, last=selector.last,
    )
    ids = {action.action_id for action in actions}
    undone = store.actions.undone(action_ids=sorted(ids))
    oldest = min((action.time for action in actions), default=None)
    changes = (
        store.actions.later_changes(objects=sorted({ref for a in actions for ref in a.objects}), after=oldest)
        if oldest else []
    )
    # A later change that was itself undone no longer stands in the way.
    undone_later = store.actions.undone(action_ids=sorted({change.action_id for change in changes}))
    changes = [change for change in changes if change.action_id not in undone_later]
    steps: list[PlanStep] = []
    for action in actions:
        call = undo_call(plan_id, action)
        conflict = _conflict(action, changes, ids)
        if action.action_id in undone:
            status, reason = "already_undone", f"already undone by plan {undone[action.action_id]}"
        elif call is None:
            status, reason = "irreversible", _irreversible_reason(action)
        elif conflict:
            status, reason = "conflicted", conflict
        else:
            status, reason = "reversible", ""
        steps.append(PlanStep(
            action_id=action.action_id, status=status, reason=reason, action=action.name, agent=action.agent,  # type: ignore[arg-type]
            time=action.time, risk=action.risk, objects=action.objects,
            amount=f"{action.amount:,.2f} {action.currency}" if action.amount else "", call=call,
        ))
    requires_approval = any(step.risk == "high" and step.status == "reversible" for step in steps)
    return UndoPlan(
        id=plan_id, author=author, created_at=datetime.now(tz=timezone.utc), selector=selector, steps=steps,
        status="awaiting_approval" if requires_approval else "ready", requires_approval=requires_approval,
    )
