"""Undo plans as a durable saga: plan, approve, execute step by step, resume after a failure."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flightrec.rollback.executors import UndoExecutor, UndoFailed
from flightrec.rollback.models import Approval, Selector, UndoPlan
from flightrec.rollback.planner import build_plan
from flightrec.rollback.registry import SystemRegistry
from flightrec.rollback.spans import undo_span_request
from flightrec.store import Store

log = logging.getLogger(__name__)
Emit = Callable[[ExportTraceServiceRequest], None]


class PlanError(Exception):
    """A request the plan's state or rules refuse; ``code`` is the HTTP status to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RollbackService:
    """Plans, approvals and execution; every state change saved and audited before it is reported."""

    def __init__(
        self, store: Store, executor: UndoExecutor, emit: Emit | None = None, registry: SystemRegistry | None = None
    ) -> None:
        self.store = store
        self.executor = executor
        self.emit = emit
        self.registry = registry  # the systems undo may call; set by whoever assembles the server
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def _save(self, plan: UndoPlan) -> UndoPlan:
        plan.version += 1
        self.store.plans.save_plan(
            plan_id=plan.id, version=plan.version, status=plan.status, author=plan.author, body=plan.model_dump_json()
        )
        return plan

    def _registry(self) -> SystemRegistry:
        if self.registry is None:
            raise PlanError(503, "no registry of systems of record is configured: undo calls nothing")
        return self.registry

    def create(self, selector: Selector, actor: str) -> UndoPlan:
        if not (selector.agent or selector.object or selector.flow or selector.since or selector.until):
            raise PlanError(400, "choose what to undo: an agent, a flow, an object (type:id) or a time window (since)")
        if selector.since and selector.until and selector.until < selector.since:
            raise PlanError(400, "until is before since: the time window is empty")
        if not actor.strip():
            raise PlanError(400, "actor is required: who is asking for this rollback")
        plan = build_plan(self.store, selector, actor, self._registry())
        plan.version = 0
        self._save(plan)
        self.store.audit.append(
            actor=actor, act="rollback.plan", subject=f"plan:{plan.id}",
            details={"selector": selector.model_dump_json(exclude_defaults=True), "steps": str(len(plan.steps))},
        )
        return plan

    def get(self, plan_id: str) -> UndoPlan:
        body = self.store.plans.load_plan(plan_id=plan_id)
        if body is None:
            raise PlanError(404, f"no rollback plan {plan_id}")
        return UndoPlan.model_validate_json(body)

    def list(self, limit: int = 50) -> list[UndoPlan]:
        return [UndoPlan.model_validate_json(body) for body in self.store.plans.list_plans(limit=limit)]

    def approve(self, plan_id: str, actor: str) -> UndoPlan:
        plan = self.get(plan_id)
        if not actor.strip():
            raise PlanError(400, "actor is required: who approves")
        if plan.status not in ("awaiting_approval", "ready"):
            raise PlanError(409, f"plan {plan_id} is {plan.status}; only a plan not yet run can be approved")
        if not plan.requires_approval:
            raise PlanError(409, f"plan {plan_id} needs no approval: it undoes no high-risk action, "
                                 "so it can be executed as it is")
        if actor == plan.author:
            raise PlanError(403, f"{actor} wrote this plan and cannot approve it: a second person must")
        if any(approval.actor == actor for approval in plan.approvals):
            return plan
        plan.approvals.append(Approval(actor=actor, at=datetime.now(tz=timezone.utc)))
        plan.status = "ready"
        self._save(plan)
        self.store.audit.append(actor=actor, act="rollback.approve", subject=f"plan:{plan.id}", details={})
        return plan

    def execute(self, plan_id: str, actor: str, wait: bool = False) -> UndoPlan:
        """Start (or resume) a plan; with ``wait`` return once it has finished."""
        if not actor.strip():
            raise PlanError(400, "actor is required: who executes")
        with self._lock:
            plan = self.get(plan_id)
            if plan.status == "awaiting_approval":
                raise PlanError(409, f"plan {plan_id} has high-risk steps and needs approval by someone other than {plan.author}")
            if plan.status == "done":
                return plan
            thread = self._running.get(plan_id)
            if thread is None or not thread.is_alive():
                registry = self._registry()
                self.store.audit.append(actor=actor, act="rollback.execute", subject=f"plan:{plan.id}", details={})
                thread = threading.Thread(target=self._run, args=(plan_id, actor, registry), name=f"rollback-{plan_id}",
                                          daemon=True)
                self._running[plan_id] = thread
                thread.start()
        if wait:
            thread.join()
        return self.get(plan_id)

    def _run(self, plan_id: str, actor: str, registry: SystemRegistry) -> None:
        plan = self.get(plan_id)
        plan.status, plan.error = "running", ""
        self._save(plan)
        for step in plan.steps:
            if step.status not in ("reversible", "running", "failed") or step.call is None:
                continue
            step.status, step.attempts = "running", step.attempts + 1
            self._save(plan)
            try:
                self.executor.run(step.call, registry)
            except UndoFailed as exc:
                step.status, step.reason = "failed", str(exc)
                plan.status, plan.error = "failed", f"step {step.action_id} ({step.action}) failed: {exc}"
                self._save(plan)
                self._record(plan, step, actor, str(exc))
                return
            step.status, step.reason, step.finished_at = "done", "", datetime.now(tz=timezone.utc)
            # Read the effect back right away: an older step of this plan may change the same field next.
            step.restored, step.check_result = self.executor.check(step.call, registry)
            self._save(plan)
            self._record(plan, step, actor)
        plan.status = "done"
        self._save(plan)

    def _record(self, plan: UndoPlan, step, actor: str, error: str = "") -> None:
        self.store.audit.append(
            actor=actor, act="rollback.step", subject=f"action:{step.action_id}",
            details={"plan": plan.id, "action": step.action, "result": "failed" if error else "undone", "error": error,
                     "restored": {True: "yes", False: "no", None: "unchecked"}[step.restored] if not error else ""},
        )
        if self.emit is not None:
            try:
                self.emit(undo_span_request(plan, step, actor, error))
            except Exception as exc:  # the undo happened; a lost span must not hide that
                log.warning("rollback: could not record the undo span of %s: %s", step.action_id, exc)
