"""The rows a crash took from the views of stored spans, derived again.

A materialized view's insert is not atomic with its source's: ClickHouse commits the spans'
part, then each view's. A process killed in between (kill -9, OOM, power) leaves spans
without their links (``object_links_derived``) or their trace's lookup row
(``otel_traces_trace_id_ts_mv``), or links without their objects' recency
(``object_recency_view``). The WAL replays the segment after the restart, but the
writer leaves out spans the store already holds (insert-once identity), so the views never
see those spans again. Whenever a segment carries spans already stored (replays, resends),
the writer asks this repository to derive their views' rows again. Links and lookup rows
already there are left alone; recency rows (a max per object) are inserted again and merge away.

Reads are by the tables' sort keys (spans by trace id, links by object then trace), and the
rows are inserted through the tables every writer inserts into (the Distributed ones on a
cluster, sharded by trace id like the spans), so the same code serves every topology.
"""

from __future__ import annotations

from flightrec.store.derive import LINK_COLUMNS, links_select
from flightrec.store.engine import Engine
from flightrec.store.meaning import MeaningRepository


class ViewRepairRepository:
    """Re-derives what the span views lost for given traces; inserts only what is missing."""

    def __init__(self, engine: Engine, database: str, meaning: MeaningRepository) -> None:
        self.engine = engine
        self.db = database
        self.meaning = meaning
        self.topology = engine.topology

    def restore(self, *, trace_ids: list[str]) -> None:
        """Insert the links, recency and lookup rows these traces' stored spans should have and lack.

        One statement per view. Links and lookup rows: a read by sort key and an anti-join on the rows
        present (``GLOBAL`` on a cluster, where both sides are Distributed tables); recency: a max per
        object, inserted again."""
        if trace_ids:
            self.restore_links(trace_ids=trace_ids)
            self.restore_recency(trace_ids=trace_ids)
            self.restore_lookup(trace_ids=trace_ids)

    def restore_links(self, *, trace_ids: list[str]) -> None:
        """The links of these traces' spans that object_links lacks, at the rules' version in force.

        While stored history awaits a re-derive (``stale``), the spans' objects are the old rules':
        their links get the version before, so the re-derive's removal of older links takes them."""
        state = self.meaning.state()
        if state is not None:  # no rules installed: no link view to have lost rows
            version = state.version - 1 if state.stale else state.version
            expected = links_select(self.db, version, " WHERE TraceId IN {traces:Array(String)}")
            self.engine.command(
                "restore_links",
                f"INSERT INTO {self.db}.object_links ({', '.join(LINK_COLUMNS)}) SELECT * FROM ({expected}) "
                f"WHERE (ObjectType, ObjectId, TraceId, SpanId) {self.topology.NOT_IN} ("
                f"SELECT ObjectType, ObjectId, TraceId, SpanId FROM {self.db}.object_links "
                "WHERE TraceId IN {traces:Array(String)} "
                f"AND (ObjectType, ObjectId) {self.topology.IN} (SELECT ObjectType, ObjectId FROM ({expected})))",
                {"traces": trace_ids},
            )

    def restore_recency(self, *, trace_ids: list[str]) -> None:
        """The last-touched time of these traces' objects, from their links (a crash between the links'
        part and the recency view's loses it). A max column: a row inserted again merges away."""
        self.engine.command(
            "restore_recency",
            f"INSERT INTO {self.db}.object_recency (ObjectType, ObjectId, Tenant, Agent, LastSeen) "
            f"SELECT ObjectType, ObjectId, Tenant, Agent, max(Timestamp) FROM {self.db}.object_links "
            f"WHERE TraceId IN {{traces:Array(String)}} AND (ObjectType, ObjectId) {self.topology.IN} ("
            "SELECT substringIndex(o, ':', 1), substring(o, position(o, ':') + 1) "
            f"FROM {self.db}.otel_traces ARRAY JOIN Objects AS o WHERE TraceId IN {{traces:Array(String)}}) "
            "GROUP BY ObjectType, ObjectId, Tenant, Agent",
            {"traces": trace_ids},
        )

    def restore_lookup(self, *, trace_ids: list[str]) -> None:
        """The lookup rows (first and last span start) of these traces that otel_traces_trace_id_ts lacks."""
        # min/max columns: a row with a trace's whole range merges into a narrower one, so adding it is safe
        self.engine.command(
            "restore_lookup",
            f"INSERT INTO {self.db}.otel_traces_trace_id_ts (TraceId, Start, End) "
            "SELECT TraceId, toDateTime(min(Timestamp)) AS Start, toDateTime(max(Timestamp)) AS End "
            f"FROM {self.db}.otel_traces WHERE TraceId IN {{traces:Array(String)}} AND TraceId != '' GROUP BY TraceId "
            f"HAVING (TraceId, Start, End) {self.topology.NOT_IN} (SELECT TraceId, min(Start), max(End) "
            f"FROM {self.db}.otel_traces_trace_id_ts WHERE TraceId IN {{traces:Array(String)}} GROUP BY TraceId)",
            {"traces": trace_ids},
        )
