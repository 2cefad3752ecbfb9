"""Statements of the pager outbox: entries as versioned rows; the newest version is the entry's state.

An entry is one alert transition for one destination. The delivery loop reads the entries that
are due (the oldest pending entry of each destination and alert, once its next attempt time has
come), and writes a new version after every attempt.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from flightrec.store.engine import Engine

OutboxStatus = Literal["pending", "delivered", "failed"]

COLUMNS = [
    "EntryId", "Version", "Router", "DedupKey", "Change", "Status", "Attempts", "NextAttemptAt", "CreatedAt",
    "UpdatedAt", "StatusCode", "LastError", "Body",
]

# The newest version of every entry; positions match _row. Times as microseconds (no time zone games).
LATEST = """
SELECT EntryId, max(Version) AS version, any(Router) AS router, any(DedupKey) AS dedup_key, any(Change) AS change,
    argMax(Status, Version) AS status, argMax(Attempts, Version) AS attempts,
    toUnixTimestamp64Micro(argMax(NextAttemptAt, Version)) AS next_us, toUnixTimestamp64Micro(min(CreatedAt)) AS created_us,
    toUnixTimestamp64Micro(max(UpdatedAt)) AS updated_us, argMax(StatusCode, Version) AS status_code,
    argMax(LastError, Version) AS last_error, argMax(Body, Version) AS body
FROM {db}.pager_outbox
GROUP BY EntryId
"""


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _time(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)


class OutboxEntry(BaseModel):
    """One version of an outbox entry."""

    entry_id: str
    version: int = 1
    router: str
    dedup_key: str
    change: str
    status: OutboxStatus = "pending"
    attempts: int = 0
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    status_code: int = Field(default=0, description="HTTP status of the last attempt; 0: none (network error)")
    last_error: str = ""
    body: str = Field(description="what to deliver: the alert transition as JSON")


def _row(row: tuple) -> OutboxEntry:
    (entry_id, version, router, dedup_key, change, status, attempts, next_us, created_us, updated_us, status_code,
     last_error, body) = row
    return OutboxEntry(
        entry_id=entry_id, version=int(version), router=router, dedup_key=dedup_key, change=change, status=status,
        attempts=int(attempts), next_attempt_at=_time(next_us), created_at=_time(created_us),
        updated_at=_time(updated_us), status_code=int(status_code), last_error=last_error, body=body,
    )


class OutboxRepository:
    """The pager outbox table."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def save(self, *, entries: list[OutboxEntry]) -> None:
        """Insert these versions (new entries are version 1); a replayed version inserts once."""
        if not entries:
            return
        self.engine.insert(
            "save_outbox_entries", f"{self.db}.pager_outbox",
            [
                [e.entry_id for e in entries], [e.version for e in entries], [e.router for e in entries],
                [e.dedup_key for e in entries], [e.change for e in entries], [e.status for e in entries],
                [e.attempts for e in entries], [e.next_attempt_at for e in entries],
                [e.created_at for e in entries], [e.updated_at for e in entries],
                [e.status_code for e in entries], [e.last_error[:2000] for e in entries], [e.body for e in entries],
            ],
            COLUMNS,
        )

    def due(self, *, routers: list[str], now: datetime, limit: int = 500) -> list[OutboxEntry]:
        """Pending entries to send now: per destination and alert only the oldest pending one (so a resolve
        never overtakes its trigger), and only once its next attempt time has come; oldest first."""
        rows = self.engine.query(
            "due_outbox_entries",
            f"SELECT * FROM ({LATEST.replace('{db}', self.db)} HAVING status = 'pending' AND has({{routers:Array(String)}}, router) "
            "ORDER BY router, dedup_key, created_us, EntryId LIMIT 1 BY router, dedup_key) "
            "WHERE next_us <= {now_us:Int64} ORDER BY next_us, created_us, EntryId LIMIT {limit:UInt32}",
            {"routers": routers, "now_us": _us(now), "limit": limit},
        )
        return [_row(row) for row in rows]

    def next_attempt_at(self, *, routers: list[str]) -> datetime | None:
        """When the next pending entry becomes due (None: nothing pending)."""
        rows = self.engine.query(
            "next_outbox_attempt",
            f"SELECT min(next_us), count() FROM ({LATEST.replace('{db}', self.db)} "
            "HAVING status = 'pending' AND has({routers:Array(String)}, router))",
            {"routers": routers},
        )
        return _time(rows[0][0]) if rows and rows[0][1] else None

    def entries(
        self, *, status: str = "", router: str = "", dedup_key: str = "", limit: int = 1000
    ) -> list[OutboxEntry]:
        """Entries in their newest version, optionally filtered; oldest first."""
        rows = self.engine.query(
            "outbox_entries",
            f"{LATEST.replace('{db}', self.db)} HAVING ({{status:String}} = '' OR status = {{status:String}}) "
            "AND ({router:String} = '' OR router = {router:String}) "
            "AND ({dedup_key:String} = '' OR dedup_key = {dedup_key:String}) "
            "ORDER BY created_us, EntryId LIMIT {limit:UInt32}",
            {"status": status, "router": router, "dedup_key": dedup_key, "limit": limit},
        )
        return [_row(row) for row in rows]

    def history(self, *, entry_id: str) -> list[OutboxEntry]:
        """Every version of one entry, oldest first (what each attempt recorded)."""
        rows = self.engine.query(
            "outbox_entry_history",
            "SELECT EntryId, Version, Router, DedupKey, Change, Status, Attempts, toUnixTimestamp64Micro(NextAttemptAt), "
            "toUnixTimestamp64Micro(CreatedAt), toUnixTimestamp64Micro(UpdatedAt), StatusCode, LastError, Body "
            f"FROM {self.db}.pager_outbox WHERE EntryId = {{entry_id:String}} ORDER BY Version LIMIT 1 BY Version",
            {"entry_id": entry_id},
        )
        return [_row(row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """(destination, status) -> entries in that state now."""
        rows = self.engine.query(
            "outbox_counts",
            f"SELECT router, status, count() FROM ({LATEST.replace('{db}', self.db)}) GROUP BY router, status",
        )
        return {(router, status): int(count) for router, status, count in rows}
