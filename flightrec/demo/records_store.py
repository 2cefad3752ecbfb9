"""SQLite state of the demo system of record: entities, refunds, credits, idempotency keys, call audit.

Entities (tickets, accounts, orders, invoices) come into being on first touch with deterministic
defaults, so any id works. Money is kept in integer cents, so an action and its undo restore exact
values. Every mutation runs in one transaction under one lock, together with the response it stores
for its Idempotency-Key: the effect and its replayable answer commit atomically.

This SQLite database is not Flight Recorder's store: it stands in for a customer's own system of
record (billing, CRM, helpdesk) that agents act on and rollback undoes over HTTP. The house rule
"all SQL lives in store/" is about Flight Recorder's ClickHouse; this stand-in keeps its own SQL
here, with bound parameters, and table names only from its fixed schema.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

PLANS = ("starter", "team", "pro", "enterprise")
ORDER_FIELDS = ("shipping_address", "shipping_speed", "status")
MONEY_FIELDS = frozenset({"credit_balance", "refunded_total"})
ENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "tickets": ("status", "assignee"),
    "accounts": ("plan", "credit_balance"),
    "orders": ("shipping_address", "shipping_speed", "status", "refunded_total"),
    "invoices": ("refunded_total",),
}
LEDGERS: dict[str, tuple[str, str, str]] = {
    "refunds": ("RF", "issued", "refunded_total"),
    "credits": ("CR", "applied", "credit_balance"),
}
SINGULAR = {"tickets": "ticket", "accounts": "account", "orders": "order", "invoices": "invoice",
            "refunds": "refund", "credits": "credit"}

Result = tuple[int, dict[str, Any]]


class RecordsError(Exception):
    """A request the records service refuses: an HTTP status and a message saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def cents(amount: float) -> int:
    """An amount in currency units as integer cents."""
    return round(amount * 100)


def units(value: int) -> float:
    """Integer cents as an amount in currency units."""
    return round(value / 100, 2)


def defaults(kind: str, ident: str) -> dict[str, Any]:
    """The values an entity has before anything touched it (money in cents)."""
    if kind == "tickets":
        return {"status": "new", "assignee": "unassigned"}
    if kind == "accounts":
        digest = int(hashlib.sha256(ident.encode()).hexdigest(), 16)
        return {"plan": PLANS[digest % len(PLANS)], "credit_balance": 0}
    if kind == "orders":
        return {"shipping_address": "address_v1", "shipping_speed": "standard", "status": "processing",
                "refunded_total": 0}
    return {"refunded_total": 0}


def _public(kind: str, ident: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"id": ident, **{f: units(v) if f in MONEY_FIELDS else v for f, v in values.items()}}


class RecordsStore:
    """The service's state in one SQLite file (WAL mode); safe to share between request threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        for kind, fields in ENTITY_FIELDS.items():
            columns = ", ".join(f"{f} {'INTEGER' if f in MONEY_FIELDS else 'TEXT'} NOT NULL" for f in fields)
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {kind} (id TEXT PRIMARY KEY, {columns})")
        for kind in LEDGERS:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {kind} (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, "
                "target_kind TEXT NOT NULL, target_id TEXT NOT NULL, amount INTEGER NOT NULL, "
                "currency TEXT NOT NULL, status TEXT NOT NULL)"
            )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "status INTEGER NOT NULL, body TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, method TEXT NOT NULL, path TEXT NOT NULL, "
            "idempotency_key TEXT, status INTEGER NOT NULL, replayed INTEGER NOT NULL)"
        )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def mutate(
        self, key: str | None, fingerprint: str, action: Callable[[], Result]
    ) -> tuple[int, dict[str, Any], bool]:
        """Run `action` in a transaction, or replay the stored answer for a known key; (status, body, replayed).

        Only successful answers are stored: a refused request had no effect, so repeating it is harmless.
        """
        with self._lock:
            if key:
                row = self._db.execute(
                    "SELECT fingerprint, status, body FROM idempotency WHERE key = ?", (key,)
                ).fetchone()
                if row and row[0] != fingerprint:
                    raise RecordsError(422, f"Idempotency-Key {key!r} was already used for another request: {row[0]}")
                if row:
                    return row[1], json.loads(row[2]), True
            self._db.execute("BEGIN IMMEDIATE")
            try:
                status, body = action()
                if key:
                    self._db.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?)",
                                     (key, fingerprint, status, json.dumps(body)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return status, body, False

    def _entity(self, kind: str, ident: str, create: bool = True) -> dict[str, Any]:
        fields = ENTITY_FIELDS[kind]
        row = self._db.execute(f"SELECT {', '.join(fields)} FROM {kind} WHERE id = ?", (ident,)).fetchone()
        if row is not None:
            return dict(zip(fields, row))
        if not create:
            raise RecordsError(404, f"{SINGULAR[kind]} {ident} was never changed here, so there is nothing to undo")
        values = defaults(kind, ident)
        self._db.execute(f"INSERT INTO {kind} VALUES (?, {', '.join('?' * len(fields))})",
                         (ident, *(values[f] for f in fields)))
        return values

    def _update(self, kind: str, ident: str, field: str, value: Any) -> None:
        self._db.execute(f"UPDATE {kind} SET {field} = ? WHERE id = ?", (value, ident))

    def set_field(
        self, kind: str, ident: str, field: str, value: str, expected: str | None = None, undo: bool = False
    ) -> tuple[str, bool]:
        """Set one text field; (previous value, already). An undo needs the entity to exist.

        Already means the field holds `value` (nothing to do). With `expected`, a field holding
        anything else than `expected` or `value` is a conflict (409): someone changed it since.
        """
        current = self._entity(kind, ident, create=not undo)[field]
        if current == value:
            return current, True
        if expected is not None and current != expected:
            raise RecordsError(
                409, f"{SINGULAR[kind]} {ident} has {field}={current!r}, not {expected!r}: it was changed since"
            )
        self._update(kind, ident, field, value)
        return current, False

    def post_ledger(self, kind: str, target_kind: str, target_id: str, amount: int, currency: str) -> Result:
        """Issue a refund or apply a credit: a new entry plus the target's running total."""
        prefix, status, total_field = LEDGERS[kind]
        before = self._entity(target_kind, target_id)[total_field]
        seq = self._db.execute(f"SELECT COALESCE(MAX(seq), 0) + 1 FROM {kind}").fetchone()[0]
        ident = f"{prefix}-{seq:06d}"
        self._db.execute(f"INSERT INTO {kind} VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (seq, ident, target_kind, target_id, amount, currency, status))
        self._update(target_kind, target_id, total_field, before + amount)
        entry = {k: v for k, v in self.ledger_entry(kind, ident).items() if k != "id"}
        return 201, {f"{SINGULAR[kind]}_id": ident, **entry, f"previous_{total_field}": units(before),
                     total_field: units(before + amount)}

    def reverse_ledger(self, kind: str, ident: str, check: dict[str, Any]) -> Result:
        """Reverse a refund or credit once; `check` holds fields the caller expects it to have."""
        _prefix, live, total_field = LEDGERS[kind]
        entry = self.ledger_entry(kind, ident)
        mismatched = {k: v for k, v in check.items() if entry.get(k) != v}
        if mismatched:
            raise RecordsError(409, f"{SINGULAR[kind]} {ident} is {entry}; the undo expected {mismatched}")
        key = f"{SINGULAR[kind]}_id"
        if entry["status"] != live:
            return 200, {key: ident, "status": entry["status"], "already": True}
        target_kind, target_id = self._db.execute(
            f"SELECT target_kind, target_id FROM {kind} WHERE id = ?", (ident,)
        ).fetchone()
        before = self._entity(target_kind, target_id)[total_field]
        after = before - cents(entry["amount"])
        self._db.execute(f"UPDATE {kind} SET status = 'reversed' WHERE id = ?", (ident,))
        self._update(target_kind, target_id, total_field, after)
        return 200, {key: ident, "status": "reversed", "previous_status": live,
                     f"previous_{total_field}": units(before), total_field: units(after)}

    def ledger_entry(self, kind: str, ident: str) -> dict[str, Any]:
        """One refund or credit as the API shows it; 404 if unknown."""
        with self._lock:
            row = self._db.execute(
                f"SELECT target_kind, target_id, amount, currency, status FROM {kind} WHERE id = ?", (ident,)
            ).fetchone()
        if row is None:
            raise RecordsError(404, f"no {SINGULAR[kind]} with id {ident}")
        target_kind, target_id, amount, currency, status = row
        return {"id": ident, f"{SINGULAR[target_kind]}_id": target_id, "amount": units(amount), "currency": currency,
                "status": status}

    def entity(self, kind: str, ident: str) -> dict[str, Any]:
        """One entity as the API shows it (its defaults if never touched); nothing is created."""
        with self._lock:
            fields = ENTITY_FIELDS[kind]
            row = self._db.execute(f"SELECT {', '.join(fields)} FROM {kind} WHERE id = ?", (ident,)).fetchone()
        return _public(kind, ident, dict(zip(fields, row)) if row else defaults(kind, ident))

    def state(self, full: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Every kind's records sorted by id. Unless `full`, entities still at their defaults and
        reversed refunds and credits are left out, so an action and its undo give back the same state."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for kind, fields in ENTITY_FIELDS.items():
                rows = self._db.execute(f"SELECT id, {', '.join(fields)} FROM {kind} ORDER BY id").fetchall()
                values = [(row[0], dict(zip(fields, row[1:]))) for row in rows]
                out[kind] = [_public(kind, i, v) for i, v in values if full or v != defaults(kind, i)]
            for kind, (_prefix, live, _total) in LEDGERS.items():
                ids = [row[0] for row in self._db.execute(
                    f"SELECT id FROM {kind} WHERE ? OR status = ? ORDER BY id", (full, live))]
                out[kind] = [self.ledger_entry(kind, ident) for ident in ids]
        return out

    def record_call(self, method: str, path: str, key: str | None, status: int, replayed: bool) -> None:
        """Append one mutating call to the audit."""
        with self._lock:
            self._db.execute(
                "INSERT INTO calls (method, path, idempotency_key, status, replayed) VALUES (?, ?, ?, ?, ?)",
                (method, path, key, status, int(replayed)),
            )

    def calls(self) -> list[dict[str, Any]]:
        """Every mutating call received, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, method, path, idempotency_key, status, replayed FROM calls ORDER BY seq"
            ).fetchall()
        return [{"seq": s, "method": m, "path": p, "idempotency_key": k, "status": st, "replayed": bool(r)}
                for s, m, p, k, st, r in rows]
