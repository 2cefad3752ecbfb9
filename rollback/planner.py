"""Building an undo plan: select actions, newest first, and say for each whether it can be undone.

- Each undo is resolved through the registry of systems of record; one that cannot be
  (no descriptor, an unregistered system, an absolute URL, a path not allowed) is
  irreversible, with the reason.
- Conflicts are per field: an action conflicts with a later change only where both changed the
  same field (``flightrec.action.fields``, ``type:id#field``); an action that declares no fields
  is compared by object. A later change made by an action of this plan is no conflict — the
  plan undoes it first — unless that later step cannot run (irreversible or conflicted): then
  the older step on the same field is held back too, as undoing it would overwrite a value the
  plan leaves in place.
- The risk that decides approval comes from the operator's policy for the action and amount,
  never from the span's ``flightrec.action.risk``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timezone

from flightrec.rollback.models import PlanStep, Selector, UndoPlan
from flightrec.rollback.registry import SystemRegistry
from flightrec.store import Store
from flightrec.store.operations import ActionRecord, LaterChange


def _touches(fields: list[str] | None, objects: Iterable[str]) -> set[str]:
    """What an action changed, as comparable keys: its declared fields, else its objects as a whole."""
    return set(fields) if fields is not None else {f"{ref}#*" for ref in objects}


def _overlap(mine: set[str], theirs: set[str]) -> set[str]:
    """Keys both touched; ``type:id#*`` (fields not declared) overlaps every field of that object."""
    out = mine & theirs
    for key in mine:
        ref, _, field = key.partition("#")
        for other in theirs:
            other_ref, _, other_field = other.partition("#")
            if ref == other_ref and "*" in (field, other_field):
                out.add(other if other_field == "*" else other if field == "*" else key)
    return out


def _undo_amount(action: ActionRecord, args: dict | None) -> float:
    """The larger of the amount the span reports and the amount the undo would move."""
    amount = action.amount or 0.0
    value = (args or {}).get("amount")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = max(amount, float(value))
    return amount


def _field_words(keys: set[str]) -> str:
    words = []
    for key in sorted(keys):
        ref, _, field = key.partition("#")
        thing = ref.replace(":", " ", 1)
        words.append(thing if field in ("", "*") else f"{field} of {thing}")
    return ", ".join(words)


def build_plan(store: Store, selector: Selector, author: str, registry: SystemRegistry) -> UndoPlan:
    """Select the performed actions and classify each step; nothing is executed."""
    plan_id = uuid.uuid4().hex[:12]
    actions = store.actions.list_actions(
        agent=selector.agent, object_ref=selector.object, flow=selector.flow, since=selector.since,
        until=selector.until, performed_only=True, last=selector.last,
    )
    actions.sort(key=lambda action: (action.time, action.action_id), reverse=True)
    ids = {action.action_id for action in actions}
    undone = store.actions.undone(action_ids=sorted(ids))
    oldest = min((action.time for action in actions), default=None)
    refs = sorted({ref for action in actions for ref in action.objects} | {
        key.partition("#")[0] for action in actions for key in (action.fields or [])})
    changes: list[LaterChange] = store.actions.later_changes(objects=refs, after=oldest) if oldest else []
    # A later change that was itself undone no longer stands in the way; nor does one this plan undoes.
    undone_later = store.actions.undone(action_ids=sorted({change.action_id for change in changes} - ids))
    outside: dict[str, tuple[LaterChange, set[str]]] = {}
    for change in changes:
        if change.action_id in ids or change.action_id in undone_later:
            continue
        _, keys = outside.get(change.action_id, (change, set()))
        outside[change.action_id] = (change, keys | _touches(change.fields, [change.object]))
    held: dict[str, PlanStep] = {}  # field key -> the newer step of this plan that leaves it as it is
    steps: list[PlanStep] = []
    for action in actions:  # newest first
        call, why = registry.resolve(action, plan_id)
        mine = _touches(action.fields, action.objects)
        risk, risk_reason = registry.policy.risk(action.name, _undo_amount(action, call.args if call else None))
        status, reason = "reversible", ""
        if action.action_id in undone:
            status, reason = "already_undone", f"already undone by plan {undone[action.action_id]}"
        elif call is None:
            status, reason = "irreversible", why
        else:
            later = sorted(
                ((change, _overlap(mine, keys)) for change, keys in outside.values() if change.time > action.time),
                key=lambda item: item[0].time,
            )
            later = [(change, keys) for change, keys in later if keys]
            blocked = {key: held[key] for key in _overlap(mine, set(held))} if held else {}
            if later:
                change, keys = later[0]
                status, reason = "conflicted", (
                    f"{_field_words(keys)} was changed after this action by {change.agent} "
                    f"({change.name} at {change.time:%Y-%m-%d %H:%M:%S} UTC)"
                )
            elif blocked:
                key, newer = sorted(blocked.items())[0]
                status, reason = "conflicted", (
                    f"{_field_words({key})} was changed again by {newer.agent} ({newer.action} at "
                    f"{newer.time:%Y-%m-%d %H:%M:%S} UTC), a step of this plan that stays {newer.status}"
                )
        step = PlanStep(
            action_id=action.action_id, status=status, reason=reason, action=action.name,  # type: ignore[arg-type]
            agent=action.agent, time=action.time, risk=risk, risk_reason=risk_reason, reported_risk=action.risk,
            objects=action.objects, amount=f"{action.amount:,.2f} {action.currency}" if action.amount else "",
            system=call.system if call else (action.undo_system or action.system), fields=action.fields,
            call=call,
        )
        if status in ("irreversible", "conflicted"):
            for key in mine:
                held.setdefault(key, step)
        steps.append(step)
    requires_approval = any(step.risk == "high" and step.status == "reversible" for step in steps)
    return UndoPlan(
        id=plan_id, author=author, created_at=datetime.now(tz=timezone.utc), selector=selector, steps=steps,
        status="awaiting_approval" if requires_approval else "ready", requires_approval=requires_approval,
    )
