"""A demo system of record the agent fleet really acts on, with undo endpoints (``flightrec records``).

Every mutating route takes and answers JSON, honours an ``Idempotency-Key`` header (the first
successful answer is stored and replayed, with no second effect) and lands in the call audit
(``GET /calls``). An undo is ``POST <flightrec.undo.target>`` with the span's ``flightrec.undo.args``
as its body; undoing twice answers 200 ``{"already": true}``, an unknown id 404, a record changed
since by someone else 409. ``GET /state`` is the whole state, sorted, for before/after comparisons;
``POST /faults`` makes the next matching mutating requests answer 503 without effect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flightrec.demo.records_store import ENTITY_FIELDS, LEDGERS, RecordsError, RecordsStore, Result, cents

DEFAULT_PORT = 4400
DEFAULT_DB = Path(".flightrec/records.db")
CONTROL_PATHS = ("/faults",)
Currency = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
Amount = Field(gt=0, le=1_000_000, description="Amount in currency units")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RefundIn(_Body):
    """Refund part of an invoice or an order: exactly one of invoice_id and order_id."""

    invoice_id: str | None = None
    order_id: str | None = None
    amount: float = Amount
    currency: str = Currency

    @model_validator(mode="after")
    def _one_target(self) -> RefundIn:
        if (self.invoice_id is None) == (self.order_id is None):
            raise ValueError("give exactly one of invoice_id and order_id")
        return self


class CreditIn(_Body):
    """Credit an account."""

    account_id: str
    amount: float = Amount
    currency: str = Currency


class LedgerUndo(_Body):
    """Undo of a refund or credit; each field given must match the entry, or the answer is 409."""

    refund_id: str | None = None
    credit_id: str | None = None
    invoice_id: str | None = None
    order_id: str | None = None
    account_id: str | None = None
    amount: float | None = None
    currency: str | None = None


class PlanIn(_Body):
    """Set an account's plan; with expected_plan, refuse (409) if the account is on another plan."""

    plan: str = Field(min_length=1)
    expected_plan: str | None = None


class OrderChange(_Body):
    """Set one field of an order; with expected_value, refuse (409) if the field holds another value."""

    field: Literal["shipping_address", "shipping_speed", "status"]
    value: str = Field(min_length=1)
    expected_value: str | None = None


class StatusIn(_Body):
    """Set a ticket's status; with expected_status, refuse (409) if it holds another one."""

    status: str = Field(min_length=1)
    expected_status: str | None = None


class AssigneeIn(_Body):
    """Set a ticket's assignee; with expected_assignee, refuse (409) if it holds another one."""

    assignee: str = Field(min_length=1)
    expected_assignee: str | None = None


class FaultIn(_Body):
    """Make the next `fail_next` mutating requests whose path contains `path_contains` fail, without effect."""

    fail_next: int = Field(ge=1, le=1_000_000)
    path_contains: str = ""
    status: int = Field(503, ge=500, le=599)


class Faults:
    """The pending injected fault (one rule at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rule: FaultIn | None = None

    def take(self, path: str) -> int | None:
        """The status to fail this request with, consuming one failure; None to serve it."""
        with self._lock:
            rule = self.rule
            if rule is None or rule.path_contains not in path:
                return None
            self.rule = rule.model_copy(update={"fail_next": rule.fail_next - 1}) if rule.fail_next > 1 else None
            return rule.status


def _store(request: Request) -> RecordsStore:
    return request.app.state.records


Mutation = Callable[[RecordsStore], Result]


def _mutate(request: Request, body: BaseModel | None, action: Mutation) -> Response:
    """Run one mutation idempotently; a refusal answers its status with a `detail` message."""
    store = _store(request)
    payload = body.model_dump(exclude_none=True) if body else {}
    fingerprint = f"{request.method} {request.url.path} {json.dumps(payload, sort_keys=True)}"
    try:
        status, answer, replayed = store.mutate(
            request.headers.get("Idempotency-Key"), fingerprint, lambda: action(store)
        )
    except RecordsError as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    return JSONResponse(answer, status_code=status, headers={"Idempotent-Replayed": "true"} if replayed else None)


def _field(kind: str, ident: str, field: str, value: str, expected: str | None, undo: bool = False) -> Mutation:
    """A mutation setting one field, answering the id, the new value and the previous one."""
    key = "value" if kind == "orders" else field

    def run(store: RecordsStore) -> Result:
        previous, already = store.set_field(kind, ident, field, value, expected, undo)
        answer: dict[str, Any] = {f"{kind[:-1]}_id": ident, key: value, f"previous_{key}": previous}
        return 200, answer | ({"field": field} if kind == "orders" else {}) | ({"already": True} if already else {})

    return run


def _ledger_undo(kind: str, ident: str, body: LedgerUndo | None) -> Mutation:
    """A mutation reversing a refund or credit; the body's fields, if any, must match the entry."""
    body = body or LedgerUndo()
    own, other = ("refund_id", "credit_id") if kind == "refunds" else ("credit_id", "refund_id")
    check = body.model_dump(exclude_none=True, exclude={own, other})
    if "amount" in check:
        check["amount"] = round(check["amount"], 2)
    given = getattr(body, own)

    def run(store: RecordsStore) -> Result:
        if getattr(body, other) is not None or given not in (None, ident):
            named = body.model_dump(include={own, other}, exclude_none=True)
            raise RecordsError(409, f"the undo body names {named}, not {kind[:-1]} {ident}")
        return store.reverse_ledger(kind, ident, check)

    return run


def _routes(app: FastAPI) -> None:
    @app.post("/refunds", status_code=201, summary="Issue a refund on an invoice or order")
    def issue_refund(request: Request, body: RefundIn) -> Response:
        kind, target = ("invoices", body.invoice_id) if body.invoice_id else ("orders", body.order_id)
        return _mutate(request, body, lambda s: s.post_ledger("refunds", kind, str(target), cents(body.amount),
                                                              body.currency))

    @app.post("/credits", status_code=201, summary="Apply a credit to an account")
    def apply_credit(request: Request, body: CreditIn) -> Response:
        return _mutate(request, body, lambda s: s.post_ledger("credits", "accounts", body.account_id,
                                                              cents(body.amount), body.currency))

    @app.post("/refunds/{refund_id}/undo", summary="Reverse a refund (no-op if already reversed)")
    def undo_refund(request: Request, refund_id: str, body: LedgerUndo | None = None) -> Response:
        return _mutate(request, body, _ledger_undo("refunds", refund_id, body))

    @app.post("/credits/{credit_id}/undo", summary="Reverse a credit (no-op if already reversed)")
    def undo_credit(request: Request, credit_id: str, body: LedgerUndo | None = None) -> Response:
        return _mutate(request, body, _ledger_undo("credits", credit_id, body))

    @app.post("/accounts/{account_id}/plan", summary="Change an account's plan")
    def change_plan(request: Request, account_id: str, body: PlanIn) -> Response:
        return _mutate(request, body, _field("accounts", account_id, "plan", body.plan, body.expected_plan))

    @app.post("/accounts/{account_id}/plan/undo", summary="Put an account back on its previous plan")
    def undo_plan(request: Request, account_id: str, body: PlanIn) -> Response:
        return _mutate(request, body, _field("accounts", account_id, "plan", body.plan, body.expected_plan, True))

    @app.post("/orders/{order_id}", summary="Change one field of an order")
    def update_order(request: Request, order_id: str, body: OrderChange) -> Response:
        return _mutate(request, body, _field("orders", order_id, body.field, body.value, body.expected_value))

    @app.post("/orders/{order_id}/undo", summary="Put an order field back to its previous value")
    def undo_order(request: Request, order_id: str, body: OrderChange) -> Response:
        return _mutate(request, body, _field("orders", order_id, body.field, body.value, body.expected_value, True))

    @app.post("/tickets/{ticket_id}/status", summary="Set a ticket's status (also the undo of a status change)")
    def set_status(request: Request, ticket_id: str, body: StatusIn) -> Response:
        return _mutate(request, body, _field("tickets", ticket_id, "status", body.status, body.expected_status))

    @app.post("/tickets/{ticket_id}/assignee", summary="Set a ticket's assignee (also the undo of a reassignment)")
    def set_assignee(request: Request, ticket_id: str, body: AssigneeIn) -> Response:
        return _mutate(request, body, _field("tickets", ticket_id, "assignee", body.assignee, body.expected_assignee))

    @app.get("/state", summary="The whole state, sorted; full=true adds default-valued and reversed records")
    def state(request: Request, full: bool = False) -> dict[str, list[dict[str, Any]]]:
        return _store(request).state(full)

    @app.get("/calls", summary="Every mutating call received, oldest first")
    def calls(request: Request) -> dict[str, Any]:
        items = _store(request).calls()
        return {"items": items, "count": len(items)}

    @app.get("/health", summary="Liveness and the database in use")
    def health(request: Request) -> dict[str, str]:
        return {"status": "ok", "db": str(_store(request).path)}

    @app.post("/faults", summary="Fail the next n matching mutating requests without effect")
    def set_faults(request: Request, body: FaultIn) -> dict[str, Any]:
        request.app.state.faults.rule = body
        return body.model_dump()

    @app.delete("/faults", summary="Clear the injected fault")
    def clear_faults(request: Request) -> dict[str, Any]:
        request.app.state.faults.rule = None
        return {"cleared": True}

    @app.get("/{kind}/{ident}", summary="One ticket, account, order, invoice, refund or credit")
    def read(request: Request, kind: str, ident: str) -> Response:
        store = _store(request)
        try:
            if kind in LEDGERS:
                return JSONResponse(store.ledger_entry(kind, ident))
            if kind in ENTITY_FIELDS:
                return JSONResponse(store.entity(kind, ident))
            raise RecordsError(404, f"unknown kind {kind!r}; one of {', '.join([*ENTITY_FIELDS, *LEDGERS])}")
        except RecordsError as exc:
            return JSONResponse({"detail": exc.message}, status_code=exc.status)


def build_records_app(db_path: Path) -> FastAPI:
    """The records service on the SQLite file `db_path`, opened and closed by the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.records = RecordsStore(db_path)
        try:
            yield
        finally:
            app.state.records.close()

    app = FastAPI(title="Flight Recorder demo system of record", version="1.0.0", lifespan=lifespan,
                  description=__doc__)
    app.state.faults = Faults()

    @app.middleware("http")
    async def faults_and_audit(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if request.method in ("GET", "HEAD", "OPTIONS") or path in CONTROL_PATHS:
            return await call_next(request)
        failure = app.state.faults.take(path)
        if failure is not None:
            response: Response = JSONResponse({"detail": f"injected fault: {failure} without effect"}, failure)
        else:
            response = await call_next(request)
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        await run_in_threadpool(app.state.records.record_call, request.method, path,
                                request.headers.get("Idempotency-Key"), response.status_code, replayed)
        return response

    _routes(app)
    return app


def serve_records(port: int = DEFAULT_PORT, host: str = "127.0.0.1", db_path: Path = DEFAULT_DB,
                  log_level: str = "warning") -> None:
    """Serve the records service until SIGINT/SIGTERM."""
    uvicorn.run(build_records_app(db_path), host=host, port=port, log_level=log_level, access_log=False)
