"""The registry of systems of record: the only places undo calls, resolved from what a span names.

Systems come from three places: the settings (``systems``, a table per name in the settings
file), the demo system of record when ``records_url`` is set, and operators registering them
through ``POST /api/systems``. API registrations are acts of people: each one is an audit entry
(``system.register``), and the registry reads them back from the audit log, so what undo may
call is exactly what the hash-chained log says an operator registered.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from flightrec.rollback.models import ReadBack, UndoCall
from flightrec.rollback.systems import (
    HANDLER_NAME,
    OwnAddress,
    Refused,
    SystemOfRecord,
    SystemSpec,
    UndoPolicy,
    match_path,
    plain_path,
)
from flightrec.store import Store
from flightrec.store.operations import ActionRecord

REGISTER_ACT = "system.register"
SUBJECT = "system:"


class SystemRegistry:
    """Resolves undo descriptors to calls on registered systems, and refuses everything else."""

    def __init__(
        self,
        store: Store | None,
        configured: dict[str, SystemSpec] | None = None,
        demo: dict[str, SystemSpec] | None = None,
        own: OwnAddress | None = None,
        policy: UndoPolicy | None = None,
    ) -> None:
        self.store = store
        self.configured = dict(configured or {})
        self.demo = dict(demo or {})
        self.own = own or OwnAddress()
        self.policy = policy or UndoPolicy()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, store: Store | None) -> SystemRegistry:
        """The registry a server's settings describe (``flightrec.settings.Settings``)."""
        return cls(store, settings.systems, settings.demo_systems(), settings.own_address(), settings.undo_policy())

    # --- what is registered ----------------------------------------------------------------

    def _registered(self) -> dict[str, SystemOfRecord]:
        if self.store is None:
            return {}
        out: dict[str, SystemOfRecord] = {}
        for entry in self.store.audit.latest_by_subject(acts=[REGISTER_ACT], subject_prefix=SUBJECT):
            name = entry.subject.removeprefix(SUBJECT)
            try:
                spec = SystemSpec.model_validate_json(entry.details.get("spec", ""))
            except ValueError:
                continue  # an entry this version cannot read registers nothing
            out[name] = SystemOfRecord(name=name, source="api", registered_by=entry.actor,
                                       registered_at=entry.time, **spec.model_dump())
        return out

    def systems(self) -> list[SystemOfRecord]:
        """Every registered system, by name; settings win over the demo, the API over both."""
        merged: dict[str, SystemOfRecord] = {}
        for source, specs in (("demo", self.demo), ("settings", self.configured)):
            for name, spec in specs.items():
                merged[name] = SystemOfRecord(name=name, source=source, **spec.model_dump())  # type: ignore[arg-type]
        merged.update(self._registered())
        for system in merged.values():
            system.credentials_present = bool(system.credentials_env and os.environ.get(system.credentials_env))
        return [merged[name] for name in sorted(merged)]

    def get(self, name: str) -> SystemOfRecord | None:
        return next((system for system in self.systems() if system.name == name), None)

    def register(self, name: str, spec: SystemSpec, actor: str) -> SystemOfRecord:
        """Register (or replace) a system; refused if it is this server. Audited before it takes effect."""
        if self.store is None:
            raise Refused("systems can only be registered on a server with a store")
        if not actor.strip():
            raise ValueError("actor is required: who registers this system")
        problem = self.own.problem(spec.base_url)
        if problem:
            raise Refused(f"{spec.base_url} cannot be registered: {problem}")
        SystemOfRecord(name=name, **spec.model_dump())  # validates the name
        with self._lock:
            self.store.audit.append(actor=actor, act=REGISTER_ACT, subject=f"{SUBJECT}{name}",
                                    details={"spec": spec.model_dump_json()})
        system = self.get(name)
        assert system is not None
        return system

    # --- resolving an undo descriptor ------------------------------------------------------

    def resolve(self, action: ActionRecord, plan_id: str) -> tuple[UndoCall | None, str]:
        """The call that reverses an action, or None and why it cannot be made (one sentence)."""
        if not action.undo_kind:
            return None, f"{action.name} recorded no undo descriptor: it cannot be reversed automatically"
        if action.undo_kind not in ("http", "handler"):
            return None, f"unknown undo kind {action.undo_kind!r} (expected http or handler)"
        try:
            args = json.loads(action.undo_args) if action.undo_args else {}
        except ValueError:
            return None, "the undo arguments are not JSON"
        if not isinstance(args, dict):
            return None, "the undo arguments are not a JSON object"
        system_name = action.undo_system or action.system
        check = None
        if action.undo_check:
            try:
                check = ReadBack.model_validate_json(action.undo_check)
            except ValueError:
                check = None  # a malformed check is no check; the step stays reversible
        call = UndoCall(kind=action.undo_kind, system=system_name, target=action.undo_target, args=args,  # type: ignore[arg-type]
                        idempotency_key=f"{plan_id}:{action.action_id}", check=check)
        try:
            self.target(call)
        except Refused as exc:
            return None, str(exc)
        if check is not None:
            try:
                self.read_target(call)
            except Refused:
                call.check = None
        return call, ""

    def target(self, call: UndoCall) -> tuple[SystemOfRecord, str]:
        """The system and the concrete path (http) or handler (handler) of a call; Refused otherwise.

        Run when planning and again right before each call, so a system removed, changed or
        pointing at this server since the plan was made is refused then.
        """
        path = plain_path(call.target) if call.kind == "http" else ""
        if not call.system:
            raise Refused("the undo names no system of record (flightrec.undo.system)")
        system = self.get(call.system)
        if system is None:
            raise Refused(f"the undo names system {call.system[:60]!r}, which no operator registered")
        if call.kind == "http":
            if match_path(path, system.paths) is None:
                raise Refused(f"{path[:80]} is not among the undo paths allowed on system {system.name}")
            return system, path
        if not HANDLER_NAME.match(call.target or "") or call.target not in system.handlers:
            raise Refused(f"handler {call.target[:60]!r} is not allowed on system {system.name}")
        return system, call.target

    def read_target(self, call: UndoCall) -> tuple[SystemOfRecord, str]:
        """The system and path of a call's read-back check; Refused if it is not an allowed read."""
        system, _ = self.target(call)
        if call.check is None:
            raise Refused("no read-back check")
        path = plain_path(call.check.path)
        if match_path(path, system.read_paths) is None:
            raise Refused(f"{path[:80]} is not among the paths a check may read on system {system.name}")
        return system, path

    def allowed_write(self, system: SystemOfRecord, path: str) -> str:
        """A handler's path, checked like an http undo's: plain and allowed on its system."""
        path = plain_path(path)
        if match_path(path, system.paths) is None:
            raise Refused(f"{path[:80]} is not among the undo paths allowed on system {system.name}")
        return path

    def allowed_read(self, system: SystemOfRecord, path: str) -> str:
        path = plain_path(path)
        if match_path(path, system.read_paths) is None:
            raise Refused(f"{path[:80]} is not among the paths a check may read on system {system.name}")
        return path

    def connection(self, system: SystemOfRecord) -> tuple[str, dict[str, str]]:
        """Base URL and auth headers, checked against this server's own address right before a call."""
        problem = self.own.problem(system.base_url)
        if problem:
            raise Refused(f"system {system.name} is not called: {problem}")
        headers: dict[str, str] = {}
        if system.auth != "none":
            secret = os.environ.get(system.credentials_env, "") if system.credentials_env else ""
            if not secret:
                raise Refused(f"system {system.name}: the credentials variable {system.credentials_env or '(none)'} "
                              "is not set")
            if system.auth == "bearer":
                headers["Authorization"] = f"Bearer {secret}"
            else:
                import base64

                headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
        return system.base_url, headers
