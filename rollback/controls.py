"""Kill switches: pause, resume, throttle and drain agents and flows; every change audited."""

from __future__ import annotations

from datetime import datetime, timezone

from flightrec.rollback.models import ControlDecision, ControlState, ControlStateName
from flightrec.store import Store
from flightrec.store.operations import ControlRow

# How restrictive each state is, for combining an agent's and a flow's switch.
SEVERITY: dict[str, int] = {"running": 0, "throttled": 1, "draining": 2, "paused": 3}


class KillSwitches:
    """Reads and writes control states; answers "may this agent act now?"."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def set_state(
        self, *, scope: str, name: str, state: ControlStateName, actor: str, reason: str = "", max_per_minute: int = 0
    ) -> ControlState:
        if not name.strip():
            raise ValueError(f"a {scope} name is required")
        if state == "throttled" and max_per_minute < 1:
            raise ValueError("throttling needs max_per_minute >= 1")
        if not reason.strip():
            # Setting the same state again without a reason (a second `pause`) keeps the reason given before.
            before = self.get(scope=scope, name=name)
            reason = before.reason if before.state == state else ""
        row = ControlRow(
            scope=scope, name=name, state=state, max_per_minute=max_per_minute if state == "throttled" else 0,
            actor=actor, reason=reason, updated_at=datetime.now(tz=timezone.utc),
        )
        self.store.controls.set_control(row)
        act = {"running": "resume", "paused": "pause", "throttled": "throttle", "draining": "drain"}[state]
        self.store.audit.append(
            actor=actor, act=act, subject=f"{scope}:{name}",
            details={"reason": reason, **({"max_per_minute": str(max_per_minute)} if state == "throttled" else {})},
        )
        return self.get(scope=scope, name=name)

    def get(self, *, scope: str, name: str) -> ControlState:
        rows = self.store.controls.controls(scope=scope, name=name)
        if not rows:
            return ControlState(scope=scope, name=name, state="running")  # type: ignore[arg-type]
        row = rows[0]
        return ControlState(
            scope=row.scope, name=row.name, state=row.state, max_per_minute=row.max_per_minute,  # type: ignore[arg-type]
            actor=row.actor, reason=row.reason, updated_at=row.updated_at,
        )

    def all(self) -> list[ControlState]:
        return [self.get(scope=row.scope, name=row.name) for row in self.store.controls.controls()]

    def decide(self, *, agent: str, flow: str = "", starting: bool = False) -> ControlDecision:
        """The stricter of the agent's and the flow's switch. Draining refuses new work, not in-flight actions."""
        states = [self.get(scope="agent", name=agent)]
        if flow:
            states.append(self.get(scope="flow", name=flow))
        strictest = max(states, key=lambda s: SEVERITY[s.state])
        throttles = sorted((s for s in states if s.state == "throttled"), key=lambda s: s.max_per_minute)
        who = f"{strictest.scope} {strictest.name}"
        if strictest.state == "paused":
            return ControlDecision(allowed=False, state="paused", reason=f"{who} is paused: {strictest.reason}".rstrip(": "))
        if strictest.state == "draining" and starting:
            return ControlDecision(allowed=False, state="draining", reason=f"{who} is draining: no new work")
        tightest = throttles[0] if throttles else None
        return ControlDecision(
            allowed=True, state=strictest.state, max_per_minute=tightest.max_per_minute if tightest else 0,
            throttle_key=f"{tightest.scope}:{tightest.name}" if tightest else "", reason=strictest.reason,
        )
