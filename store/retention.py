"""Retention: one TTL per table, applied by ALTER only when it differs from the table's own.

Spans, their links and their log records expire after their retention unless a legal hold
covers them: their TTL is ``... DELETE WHERE NOT dictHas(legal_hold_keys, ...)`` over the
dictionary of held traces and agents (migration 0017), evaluated by every TTL merge, so what
is held survives expiry and merges alike. Checked on chDB 4.4 (ClickHouse 26.9): ClickHouse
accepts dictHas, joinGet, ``IN`` a Set table and ``IN (subquery)`` in a TTL WHERE, and each
keeps held rows through ``OPTIMIZE ... FINAL``; the dictionary is the one a background merge
reads without building a set per merge, and it reads the links to find a held object's traces.

Two ClickHouse facts this module works around (tests/test_retention.py shows both):

- a row kept by the WHERE is dropped from its part's TTL bookkeeping, so later merges never
  look at it again; releasing a hold therefore re-materializes the TTL of the partitions that
  hold rows past their retention (:meth:`RetentionRepository.expire_released`);
- ``MODIFY TTL`` rewrites every part by default (``materialize_ttl_after_modify``; on a cluster,
  every part of every replica). It runs only when the wanted TTL differs from the table's as
  ``system.tables`` prints it (never at an unchanged start), and rewrites only where that changes
  what stored rows keep: a table with rows whose retention got shorter, or that had no TTL. A first
  TTL on an empty table, a longer retention, or the same days with other holds change the metadata
  only (``materialize_ttl_after_modify = 0``): a stored part keeps the expiry times computed when it
  was written, and the merge they trigger evaluates the table's current TTL, so a row the new TTL
  keeps is kept (it costs that part one early merge). ``materialize = False`` never rewrites: rows
  already stored then follow a shorter TTL only as their parts merge.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:  # the config imports the policy; the engine imports the config
    from flightrec.store.engine import Engine

HOLD_DICTIONARY = "legal_hold_keys"
PARTITION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
TTL_DAYS = re.compile(r"^toDateTime\(\w+\) \+ toIntervalDay\((\d+)\)")
TTL_TIME = re.compile(r"^(toDateTime\(\w+\)) \+ ")


class RetentionPolicy(BaseModel):
    """Days each kind of record is kept; 0 keeps it forever."""

    spans_days: int = Field(default=180, ge=0, description="spans (otel_traces) and their object links")
    logs_days: int | None = Field(default=None, ge=0, description="log records (otel_logs); None: as spans")
    alerts_days: int = Field(default=0, ge=0, description="alerts and their history (by last update)")
    outbox_days: int = Field(default=30, ge=0, description="the pager outbox's delivery records")
    materialize: bool = Field(default=True, description="on a change, apply the new TTL to stored rows at once "
                              "(rewrites the table's parts); False: metadata only, rows follow as parts merge")


class TableTtl(BaseModel):
    """How one table expires: the time column expression and whether legal holds apply."""

    table: str
    time: str
    held_by: str = Field(default="", description="'' (no holds), 'trace' or 'trace+agent'")


TABLES: dict[str, TableTtl] = {t.table: t for t in (
    TableTtl(table="otel_traces", time="toDateTime(Timestamp)", held_by="trace+agent"),
    # By its last span (End), not its first: a row then outlives every span it covers, so the trace
    # reads bounded by it (Store.trace_window) never lose a span still kept.
    TableTtl(table="otel_traces_trace_id_ts", time="toDateTime(End)", held_by="trace"),
    TableTtl(table="object_links", time="toDateTime(Timestamp)", held_by="trace+agent"),
    TableTtl(table="object_recency", time="toDateTime(LastSeen)"),
    TableTtl(table="otel_logs", time="toDateTime(Timestamp)", held_by="trace"),
    TableTtl(table="alerts", time="toDateTime(UpdatedAt)"),
    TableTtl(table="pager_outbox", time="toDateTime(CreatedAt)"),
)}


def days_of(policy: RetentionPolicy) -> dict[str, int]:
    """Table -> days under this policy."""
    logs = policy.spans_days if policy.logs_days is None else policy.logs_days
    return {"otel_traces": policy.spans_days, "otel_traces_trace_id_ts": policy.spans_days,
            "object_links": policy.spans_days,
            "object_recency": policy.spans_days, "otel_logs": logs,
            "alerts": policy.alerts_days, "pager_outbox": policy.outbox_days}


def render_ttl(db: str, spec: TableTtl, days: int) -> str:
    """The TTL clause as ClickHouse prints it in the table's create query ('' for none)."""
    if days <= 0:
        return ""
    ttl = f"{spec.time} + toIntervalDay({int(days)})"
    if not spec.held_by:
        return ttl
    held = [f"dictHas('{db}.{HOLD_DICTIONARY}', tuple('trace', TraceId))"]
    if spec.held_by == "trace+agent":
        held.append(f"dictHas('{db}.{HOLD_DICTIONARY}', tuple('agent', toString(Agent)))")
    return f"{ttl} WHERE NOT ({' OR '.join(held)})" if len(held) > 1 else f"{ttl} WHERE NOT {held[0]}"


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def ttl_days(ttl: str) -> int:
    """The days of a TTL clause as rendered or printed (0: none, or not in days)."""
    match = TTL_DAYS.match(ttl)
    return int(match.group(1)) if match else 0


def ttl_time(ttl: str) -> str:
    """The time a TTL clause counts from (``toDateTime(End)``), '' if none."""
    match = TTL_TIME.match(ttl)
    return match.group(1) if match else ""


def needs_rewrite(current: str, wanted: str, has_rows: bool) -> bool:
    """Whether stored rows must be re-evaluated at once for the wanted TTL to hold for them.

    Only a table with rows whose TTL is new or shorter, or counts from another column: a longer one,
    or the same days with other holds, keeps what the old one kept, and the merge each part's old
    expiry triggers applies it; a part's expiry by another column (the trace lookup's, Start before
    End) could drop it before the new TTL would (its parts are dropped whole).
    """
    if not wanted or not has_rows:
        return False
    old = ttl_days(current)
    return old == 0 or ttl_days(wanted) < old or ttl_time(wanted) != ttl_time(current)


class RetentionRepository:
    """The TTL statements: read a table's TTL, set it when it differs, expire what a release let go."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine = engine
        self.db = db
        self.topology = engine.topology

    def _alter(self, table: str) -> str:
        """``ALTER TABLE`` of the table that stores ``table``'s rows, on its cluster (a TTL is storage)."""
        return f"ALTER TABLE {self.db}.{self.topology.storage_name(table)} {self.topology.on_cluster(table)}"

    def table_ttl(self, table: str) -> str:
        """The TTL clause of a table as ClickHouse reports it ('' when none or no such table)."""
        rows = self.engine.query(
            "table_ttl",
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {table:String}",
            {"db": self.db, "table": self.topology.storage_name(table)},
        )
        text = rows[0][0] if rows else ""
        start = text.find(" TTL ")
        if start < 0:
            return ""
        end = text.find(" SETTINGS ", start)
        return _squash(text[start + 5: end if end >= 0 else len(text)])

    def apply(self, policy: RetentionPolicy, tables: list[str] | None = None) -> list[str]:
        """Set each table's TTL where it differs from the policy's; return the tables altered."""
        altered = []
        for table, days in days_of(policy).items():
            if tables is not None and table not in tables:
                continue
            wanted = render_ttl(self.db, TABLES[table], days)
            current = self.table_ttl(table)
            if _squash(wanted) == current:
                continue
            if wanted:
                sql = f"{self._alter(table)} MODIFY TTL {wanted}"
            elif current:
                sql = f"{self._alter(table)} REMOVE TTL"
            else:
                continue
            rewrite = policy.materialize and needs_rewrite(current, wanted, self.has_rows(table))
            self.engine.command("apply_retention", sql, settings={"materialize_ttl_after_modify": int(rewrite)})
            altered.append(table)
        return altered

    def has_rows(self, table: str) -> bool:
        """Whether any active part of the table holds rows (an empty table has nothing to rewrite)."""
        return self._system_count("table_has_rows", "system.parts", table, " AND active AND rows > 0") > 0

    def _system_count(self, name: str, system_table: str, table: str, condition: str = "") -> int:
        """Rows of a system table about one table's storage (on a cluster: every node's)."""
        rows = self.engine.query(
            name,
            f"SELECT count() FROM {self.topology.parts_of(system_table)} WHERE database = {{db:String}} "
            f"AND table = {{table:String}}{condition}",
            {"db": self.db, "table": self.topology.storage_name(table)},
        )
        return rows[0][0]

    def expire_released(self, policy: RetentionPolicy) -> int:
        """Re-materialize the TTL of the held tables' partitions that keep rows past their retention.

        A row a hold kept through a TTL merge is not looked at again by later merges; after a
        release this lets the rows no other hold covers expire. Returns the mutations started
        (they run in the background; ``mutations_done`` tells when they are through).
        """
        started = 0
        now = datetime.now(tz=timezone.utc)
        for table, days in days_of(policy).items():
            if days <= 0 or not TABLES[table].held_by:
                continue
            cutoff = (now - timedelta(days=days)).replace(tzinfo=None)
            rows = self.engine.query(
                "expired_partitions",
                f"SELECT DISTINCT partition_id FROM {self.topology.parts_of('system.parts')} WHERE database = {{db:String}} "
                "AND table = {table:String} AND active AND rows > 0 AND min_time < {cutoff:DateTime} ORDER BY partition_id",
                {"db": self.db, "table": self.topology.storage_name(table), "cutoff": cutoff},
            )
            for (partition,) in rows:
                if not PARTITION_ID.match(partition):  # ClickHouse's own ids: digits, letters, '-', '_'
                    raise ValueError(f"unexpected partition id {partition!r} in {table}")
                self.engine.command(  # a partition id is a literal in ALTER (no parameter there)
                    "materialize_ttl",
                    f"{self._alter(table)} MATERIALIZE TTL IN PARTITION ID '{partition}'",
                )
                started += 1
        return started

    def mutations_done(self) -> bool:
        """Whether every mutation on this database's tables has finished."""
        rows = self.engine.query(
            "mutations_pending",
            f"SELECT count() FROM {self.topology.parts_of('system.mutations')} WHERE database = {{db:String}} "
            "AND NOT is_done",
            {"db": self.db},
        )
        return rows[0][0] == 0

    def mutation_count(self, table: str) -> int:
        """Mutations ever run on a table (a MODIFY TTL that materializes is one)."""
        return self._system_count("mutation_count", "system.mutations", table)
