"""Executors: carry out one undo call on a registered system of record, then read its effect back.

Every request goes to a system the registry resolves (base URL and credentials from the
registration, the path checked against its allowed templates, the address checked against this
server's own right before the call); redirects are not followed and proxies from the environment
are not used. What a system answers is summarised — its status and a fixed phrase — never
echoed into the plan, the audit log or a span.

Handlers are operator-installed Python callables (entry points ``flightrec.undo_handlers``);
they reach their system only through :class:`HandlerContext`, whose ``post`` and ``get`` apply
the same checks, so arguments from a span cannot steer them elsewhere either.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import httpx

from flightrec.rollback.models import UndoCall
from flightrec.rollback.registry import SystemRegistry
from flightrec.rollback.systems import Refused, SystemOfRecord

HANDLER_GROUP = "flightrec.undo_handlers"
MAX_READ_BYTES = 1 << 20


class UndoFailed(Exception):
    """The undo call did not succeed; the message summarises what the system answered (never its body)."""


PHRASES: dict[int, str] = {
    400: "refused the request as invalid",
    401: "refused the credentials",
    403: "refused the credentials",
    404: "does not know the record",
    409: "refused: the record was changed since",
    422: "refused the request as invalid",
    429: "is busy; try again later",
}


def summary(system: str, method: str, path: str, status: int) -> str:
    """One fixed sentence for an answer: the system, the request, the status and what it means."""
    if 300 <= status < 400:
        phrase = "answered with a redirect, which is not followed"
    elif status >= 500:
        phrase = "failed on its side"
    else:
        phrase = PHRASES.get(status, "refused the request")
    return f"{system} answered {status} to {method} {path}: {phrase}"


class HandlerContext:
    """What a handler may use: its system (already resolved), the step's idempotency key, and guarded calls."""

    def __init__(self, executor: UndoExecutor, registry: SystemRegistry, system: SystemOfRecord,
                 idempotency_key: str) -> None:
        self._executor, self._registry, self.system = executor, registry, system
        self.idempotency_key = idempotency_key

    def post(self, path: str, body: dict[str, Any]) -> int:
        """POST a JSON body to an allowed path of the system; raise UndoFailed unless it answers 2xx."""
        return self._executor.post(self._registry, self.system, self._registry.allowed_write(self.system, path),
                                   body, self.idempotency_key)


Handler = Callable[[dict[str, Any], HandlerContext], None]


def set_ticket_status(args: dict[str, Any], ctx: HandlerContext) -> None:
    """Undo of ``ticket.status``: put the previous status back, if the ticket still has the one set."""
    body = {"status": args["previous_status"]}
    if args.get("status"):
        body["expected_status"] = args["status"]
    ctx.post(f"/tickets/{args['ticket_id']}/status", body)


def reassign_ticket(args: dict[str, Any], ctx: HandlerContext) -> None:
    """Undo of ``ticket.assign``: give the ticket back to its previous assignee, if it still has the one set."""
    body = {"assignee": args["previous_assignee"]}
    if args.get("assignee"):
        body["expected_assignee"] = args["assignee"]
    ctx.post(f"/tickets/{args['ticket_id']}/assignee", body)


BUILTIN_HANDLERS: dict[str, Handler] = {
    "helpdesk.set_status": set_ticket_status,
    "helpdesk.reassign": reassign_ticket,
}


def load_handlers() -> dict[str, Handler]:
    """Built-in handlers plus those installed packages register under ``flightrec.undo_handlers``."""
    handlers = dict(BUILTIN_HANDLERS)
    for entry in entry_points(group=HANDLER_GROUP):
        handlers[entry.name] = entry.load()
    return handlers


class UndoExecutor:
    """Runs undo calls through a registry: HTTP with an Idempotency-Key per step, or a registered handler.

    ``records_url`` is accepted for callers of the earlier signature and unused: where a call
    goes comes from the registry alone.
    """

    def __init__(self, records_url: str = "", timeout_s: float = 10.0, handlers: dict[str, Handler] | None = None) -> None:
        self.records_url = records_url
        self.handlers = handlers if handlers is not None else load_handlers()
        self.http = httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False)

    def post(self, registry: SystemRegistry, system: SystemOfRecord, path: str, body: dict[str, Any],
             key: str) -> int:
        base, headers = registry.connection(system)
        try:
            response = self.http.post(f"{base}{path}", json=body, timeout=system.timeout_s,
                                      headers={**headers, "Idempotency-Key": key})
        except httpx.HTTPError as exc:
            raise UndoFailed(f"{system.name}: POST {path} could not be sent ({type(exc).__name__})") from exc
        if not 200 <= response.status_code < 300:
            raise UndoFailed(summary(system.name, "POST", path, response.status_code))
        return response.status_code

    def run(self, call: UndoCall, registry: SystemRegistry) -> None:
        """Carry out one call; UndoFailed says why not (refused by the registry, or the system's answer)."""
        try:
            system, target = registry.target(call)
            if call.kind == "http":
                self.post(registry, system, target, call.args, call.idempotency_key)
                return
            handler = self.handlers.get(target)
            if handler is None:
                raise UndoFailed(f"no undo handler named {target!r} is installed")
            handler(call.args, HandlerContext(self, registry, system, call.idempotency_key))
        except Refused as exc:
            raise UndoFailed(f"refused: {exc}") from exc
        except KeyError as exc:
            raise UndoFailed(f"{call.target}: undo arguments lack {exc}") from exc

    def check(self, call: UndoCall, registry: SystemRegistry) -> tuple[bool | None, str]:
        """Read the call's effect back: (True, why) restored, (False, why) not, (None, why) not checked."""
        if call.check is None:
            return None, "no read-back check given"
        try:
            system, path = registry.read_target(call)
            base, headers = registry.connection(system)
        except Refused as exc:
            return None, f"not checked: {exc}"
        try:
            with self.http.stream("GET", f"{base}{path}", headers=headers, timeout=system.timeout_s) as response:
                if response.status_code != 200:
                    return False, f"not restored: {summary(system.name, 'GET', path, response.status_code)}"
                raw = b""
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_READ_BYTES:
                        return None, f"not checked: {system.name} answered more than {MAX_READ_BYTES} bytes"
        except httpx.HTTPError as exc:
            return None, f"not checked: GET {path} could not be sent ({type(exc).__name__})"
        try:
            record = json.loads(raw)
        except ValueError:
            return None, f"not checked: {system.name} did not answer JSON to GET {path}"
        if not isinstance(record, dict):
            return None, f"not checked: {system.name} did not answer a JSON object to GET {path}"
        wrong = sorted(key for key, want in call.check.expect.items() if not _same(record.get(key), want))
        if wrong:
            return False, f"not restored: {', '.join(wrong)} on {path} differ from what the undo should leave"
        return True, f"restored: {path} reads back as expected"

    def close(self) -> None:
        self.http.close()


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, (int, float)) and isinstance(got, (int, float)) and not isinstance(want, bool):
        return round(float(got), 6) == round(float(want), 6)
    return got == want
