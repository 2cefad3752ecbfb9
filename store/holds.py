"""Legal holds: what is exempt from retention until released (an object's traces, an agent's spans, a trace).

A hold is versioned rows in ``legal_holds`` (placed, then maybe released: never deleted). The
retention TTLs ask the ``legal_hold_keys`` dictionary (migration 0017) over the held keys this
repository recomputes after each change (and the server at start), so the next merge already sees it.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from flightrec.store.engine import Engine
from flightrec.store.retention import HOLD_DICTIONARY

HoldKind = Literal["object", "agent", "trace"]


class Hold(BaseModel):
    """One legal hold and its state."""

    id: str
    kind: HoldKind
    object_type: str = Field(default="", description="for an object hold: the object's type")
    key: str = Field(description="the object's id, the agent's name or the trace id")
    reason: str
    created_at: datetime
    created_by: str
    released: bool = False
    released_at: datetime | None = None
    released_by: str = ""
    release_reason: str = ""

    @property
    def target(self) -> str:
        """What is held, as the CLI names it: ``object:ticket:TCK-1``, ``agent:NAME``, ``trace:ID``."""
        return f"object:{self.object_type}:{self.key}" if self.kind == "object" else f"{self.kind}:{self.key}"


class HoldsRepository:
    """The legal_holds statements."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine = engine
        self.db = db
        # State: the held keys and their dictionary are on every node (the state cluster), so each shard's
        # TTL merges ask a dictionary of every held trace.
        self.on_cluster = engine.topology.on_cluster("legal_hold_keys_table")

    def _latest(self, where: str, params: dict) -> list[Hold]:
        rows = self.engine.query(
            "legal_holds",
            "SELECT Id, Kind, ObjectType, Key, Reason, CreatedAt, CreatedBy, Released, ReleasedAt, ReleasedBy, "
            "ReleaseReason FROM (SELECT Id, argMax(Kind, Version) AS Kind, argMax(ObjectType, Version) AS ObjectType, "
            "argMax(Key, Version) AS Key, argMax(Reason, Version) AS Reason, argMax(CreatedAt, Version) AS CreatedAt, "
            "argMax(CreatedBy, Version) AS CreatedBy, argMax(Released, Version) AS Released, "
            "argMax(ReleasedAt, Version) AS ReleasedAt, argMax(ReleasedBy, Version) AS ReleasedBy, "
            f"argMax(ReleaseReason, Version) AS ReleaseReason FROM {self.db}.legal_holds GROUP BY Id) "
            f"WHERE {where} ORDER BY CreatedAt DESC, Id",
            params,
        )
        return [Hold(id=ident, kind=kind, object_type=otype, key=key, reason=reason,
                     created_at=created.replace(tzinfo=timezone.utc), created_by=by, released=bool(released),
                     released_at=released_at.replace(tzinfo=timezone.utc) if released else None,
                     released_by=rby, release_reason=rreason)
                for ident, kind, otype, key, reason, created, by, released, released_at, rby, rreason in rows]

    def all(self, *, active_only: bool = False) -> list[Hold]:
        """Every hold, newest first (released ones too unless ``active_only``)."""
        return self._latest("Released = 0 OR {all:UInt8} = 1", {"all": 0 if active_only else 1})

    def get(self, *, hold_id: str) -> Hold | None:
        found = self._latest("Id = {id:String}", {"id": hold_id})
        return found[0] if found else None

    def _write(self, hold: Hold) -> None:
        self.engine.insert(
            "write_hold", f"{self.db}.legal_holds",
            [[hold.id], [hold.kind], [hold.object_type], [hold.key], [hold.reason], [hold.created_at], [hold.created_by],
             [int(hold.released)], [hold.released_at or datetime.fromtimestamp(0, tz=timezone.utc)],
             [hold.released_by], [hold.release_reason], [time.time_ns()]],
            ["Id", "Kind", "ObjectType", "Key", "Reason", "CreatedAt", "CreatedBy", "Released", "ReleasedAt",
             "ReleasedBy", "ReleaseReason", "Version"],
        )
        self.reload()

    def add(self, *, kind: HoldKind, key: str, object_type: str = "", reason: str, created_by: str) -> Hold:
        """Place a hold; in force for the next merge when this returns."""
        hold = Hold(id="hold_" + secrets.token_hex(6), kind=kind, object_type=object_type, key=key, reason=reason,
                    created_at=datetime.now(tz=timezone.utc), created_by=created_by)
        self._write(hold)
        return hold

    def release(self, *, hold: Hold, released_by: str, reason: str) -> Hold:
        """Release a hold: what it alone kept expires (see RetentionRepository.expire_released)."""
        released = hold.model_copy(update={"released": True, "released_at": datetime.now(tz=timezone.utc),
                                           "released_by": released_by, "release_reason": reason})
        self._write(released)
        return released

    def reload(self) -> None:
        """Recompute the held keys (a held object's traces as linked now) and load them into the TTLs' dictionary."""
        generation = time.time_ns()
        self.engine.command(
            "refresh_hold_keys",
            f"INSERT INTO {self.db}.legal_hold_keys_table (Generation, Kind, Key) "
            f"SELECT {{gen:UInt64}}, HoldKind, HoldKey FROM {self.db}.legal_holds_active WHERE HoldKind IN ('trace', 'agent') "
            f"UNION ALL SELECT DISTINCT {{gen:UInt64}}, 'trace', TraceId FROM {self.db}.object_links "
            f"WHERE (ObjectType, ObjectId) IN (SELECT HoldObjectType, HoldKey FROM {self.db}.legal_holds_active "
            "WHERE HoldKind = 'object') "
            "UNION ALL SELECT {gen:UInt64}, 'none', ''",  # the generation exists even with nothing held
            {"gen": generation},
        )
        self.engine.command("reload_hold_keys", f"SYSTEM RELOAD DICTIONARY {self.db}.{HOLD_DICTIONARY} {self.on_cluster}")
        self.engine.command(
            "purge_hold_keys", f"DELETE FROM {self.db}.legal_hold_keys_table {self.on_cluster} "
            "WHERE Generation < {gen:UInt64}", {"gen": generation})

    def held_keys(self) -> int:
        """How many keys (traces and agents) the dictionary holds now."""
        rows = self.engine.query(
            "held_key_count", "SELECT element_count FROM system.dictionaries WHERE database = {db:String} "
            "AND name = {name:String}", {"db": self.db, "name": HOLD_DICTIONARY})
        return int(rows[0][0]) if rows else 0

    def object_exists(self, *, object_type: str, object_id: str) -> bool:
        """Whether any stored link names this object."""
        rows = self.engine.query(
            "hold_object_exists",
            f"SELECT count() FROM {self.db}.object_links WHERE ObjectType = {{type:String}} AND ObjectId = {{id:String}}",
            {"type": object_type, "id": object_id})
        return rows[0][0] > 0

    def trace_exists(self, *, trace_id: str) -> bool:
        rows = self.engine.query(
            "hold_trace_exists", f"SELECT count() FROM {self.db}.otel_traces WHERE TraceId = {{trace:String}}",
            {"trace": trace_id})
        return rows[0][0] > 0
