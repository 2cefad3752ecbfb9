"""Executors: carry out one undo call. HTTP posts to the target; handlers are registered Python callables."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import httpx
from pydantic import BaseModel

from flightrec.rollback.models import UndoCall

HANDLER_GROUP = "flightrec.undo_handlers"


class UndoFailed(Exception):
    """The undo call did not succeed; the message says what the system answered."""


class HandlerContext(BaseModel):
    """What a handler may use: the systems-of-record base URL, the step's idempotency key, an HTTP client."""

    model_config = {"arbitrary_types_allowed": True}

    records_url: str
    idempotency_key: str
    http: httpx.Client


Handler = Callable[[dict[str, Any], HandlerContext], None]


def _post(ctx: HandlerContext, path: str, body: dict[str, Any]) -> None:
    response = ctx.http.post(
        f"{ctx.records_url.rstrip('/')}{path}", json=body, headers={"Idempotency-Key": ctx.idempotency_key}
    )
    if response.status_code >= 300:
        raise UndoFailed(f"POST {path} answered {response.status_code}: {response.text[:300]}")


def set_ticket_status(args: dict[str, Any], ctx: HandlerContext) -> None:
    """Undo of ``ticket.status``: put the previous status back."""
    _post(ctx, f"/tickets/{args['ticket_id']}/status", {"status": args["previous_status"]})


def reassign_ticket(args: dict[str, Any], ctx: HandlerContext) -> None:
    """Undo of ``ticket.assign``: give the ticket back to its previous assignee."""
    _post(ctx, f"/tickets/{args['ticket_id']}/assignee", {"assignee": args["previous_assignee"]})


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
    """Runs undo calls: HTTP with an Idempotency-Key per step, or a registered handler."""

    def __init__(self, records_url: str, timeout_s: float = 10.0, handlers: dict[str, Handler] | None = None) -> None:
        self.records_url = records_url
        self.handlers = handlers if handlers is not None else load_handlers()
        self.http = httpx.Client(timeout=timeout_s)

    def run(self, call: UndoCall) -> None:
        try:
            if call.kind == "http":
                response = self.http.post(call.target, json=call.args, headers={"Idempotency-Key": call.idempotency_key})
                if response.status_code >= 300:
                    raise UndoFailed(f"POST {call.target} answered {response.status_code}: {response.text[:300]}")
                return
            handler = self.handlers.get(call.target)
            if handler is None:
                raise UndoFailed(f"no undo handler named {call.target!r} is registered")
            handler(call.args, HandlerContext(records_url=self.records_url, idempotency_key=call.idempotency_key, http=self.http))
        except httpx.HTTPError as exc:
            raise UndoFailed(f"{call.target}: {exc}") from exc
        except KeyError as exc:
            raise UndoFailed(f"{call.target}: undo arguments lack {exc}") from exc

    def close(self) -> None:
        self.http.close()
