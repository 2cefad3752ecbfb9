"""Statements for the evidence log: leaves, tree nodes and signed checkpoints (migration 0015).

The log itself (hashing, the sequencer, proofs, signing) is ``evidence/``; this module only reads
and writes rows. Appending leaves is a compare-and-swap, as the audit log's appends are
(store/audit_log.py): a batch that extends the tree of ``size`` leaves with root ``root`` goes in
with the insert deduplication token ``leaves:<size>:<root>``; two sequencers racing for one size
send one token, the engine keeps the first insert and drops the second whatever its data, and
each reads the batch back (:meth:`EvidenceRepository.leaf_hashes`) to learn whether it won.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple

from pydantic import BaseModel

from flightrec.store.native_block import native_block, native_strings, native_uint64

if TYPE_CHECKING:  # the offline verifier reads checkpoints through this module: no engine import
    from flightrec.store.engine import Engine

SPAN_SOURCE = (
    "TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName, ScopeName, ScopeVersion, "
    "StatusCode, StatusMessage, toUnixTimestamp64Nano(Timestamp), Duration, SpanAttributes, ResourceAttributes, "
    "arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), Events.Name, Events.Attributes, "
    "Links.TraceId, Links.SpanId, Links.TraceState, Links.Attributes"
)


# The canonical forms of a span (evidence/leaves.py documents them and writes the same bytes in
# Python): every string length-prefixed (uint64 little-endian byte length, then the bytes), maps as
# a count then their pairs sorted by key bytes, lists as a count then their items. Hashed by the
# engine, so sequencing reads 150 bytes a span instead of its rows.
def _u64(expression: str) -> str:
    return f"reinterpretAsFixedString(toUInt64({expression}))"


def _str(expression: str) -> str:
    return f"concat({_u64(f'length({expression})')}, {expression})"


def _map(expression: str, name: str) -> str:
    pairs = f"arraySort({name} -> {name}.1, arrayZip(mapKeys({expression}), mapValues({expression})))"
    return (f"concat({_u64(f'length(mapKeys({expression}))')}, "
            f"arrayStringConcat(arrayMap({name} -> concat({_str(f'{name}.1')}, {_str(f'{name}.2')}), {pairs})))")


RECORD_FIELDS = ["'flightrec.span.record.v1'", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName",
                 "SpanKind", "ServiceName", "ScopeName", "ScopeVersion", "StatusCode", "StatusMessage",
                 "toString(toUnixTimestamp64Nano(Timestamp))", "toString(toUnixTimestamp64Nano(Timestamp) + Duration)"]
RECORD_HASH = f"lower(hex(SHA256(concat({', '.join(_str(field) for field in RECORD_FIELDS)}))))"
CONTENT_HASH = (
    "lower(hex(SHA256(concat("
    f"{_str(chr(39) + 'flightrec.span.content.v1' + chr(39))}, {_map('SpanAttributes', 'sa')}, "
    f"{_map('ResourceAttributes', 'ra')}, {_u64('length(Events.Name)')}, "
    "arrayStringConcat(arrayMap((et, en, ea) -> concat("
    f"{_str('toString(toUnixTimestamp64Nano(et))')}, {_str('en')}, {_map('ea', 'ep')}), "
    "Events.Timestamp, Events.Name, Events.Attributes)), "
    f"{_u64('length(Links.TraceId)')}, "
    "arrayStringConcat(arrayMap((lt, ls, lst, la) -> concat("
    f"{_str('lt')}, {_str('ls')}, {_str('lst')}, {_map('la', 'lp')}), "
    "Links.TraceId, Links.SpanId, Links.TraceState, Links.Attributes))))))"
)
# The span leaf data (evidence/leaves.py: RFC 8785 JSON, keys sorted) and its RFC 9162 leaf hash, in
# SQL over a row's ``record`` and ``content`` hashes. For ids that are valid UTF-8 without control
# characters, JSON escapes only '"' and '\\', so two replacements write what Python writes.
def _json_string(expression: str) -> str:
    return f"replaceAll(replaceAll({expression}, '\\\\', '\\\\\\\\'), '\"', '\\\\\"')"


ENGINE_LEAF_IDS = ("isValidUTF8(TraceId) AND isValidUTF8(SpanId) "
                   "AND NOT match(concat(TraceId, SpanId), '[\\\\x00-\\\\x1f]')")
ENGINE_LEAF_HASH = (
    "lower(hex(SHA256(concat(char(0), '{\"content\":\"', content, '\",\"kind\":\"span\",\"record\":\"', record, "
    f"'\",\"span_id\":\"', {_json_string('SpanId')}, '\",\"trace_id\":\"', {_json_string('TraceId')}, "
    "'\",\"v\":1}'))))"
)
LEAF_COLUMNS = ["Idx", "Kind", "TraceId", "SpanId", "AuditSeq", "RecordHash", "ContentHash", "LeafHash", "Time",
                "Seen", "Batch"]
LEAF_SELECT = ", ".join(LEAF_COLUMNS[:8]) + ", toUnixTimestamp64Nano(Time), toUnixTimestamp64Micro(Seen), Batch"


class NewSpan(NamedTuple):
    """A stored span not yet a leaf: its ids, start, record and content hashes (hex), InsertedAt (µs)."""

    trace_id: str
    span_id: str
    start_ns: int
    record_hash: str
    content_hash: str
    inserted_us: int


class SpanCursor(NamedTuple):
    """Where span sequencing has reached: the (InsertedAt µs, TraceId, SpanId) of the last span appended."""

    inserted_us: int
    trace_id: str
    span_id: str


class LeafRow(NamedTuple):
    """One stored leaf (hashes hex; ``time_ns``: the span's start or the entry's time)."""

    index: int
    kind: str
    trace_id: str
    span_id: str
    audit_seq: int
    record_hash: str
    content_hash: str
    leaf_hash: str
    time_ns: int
    seen_us: int
    batch: int


class StoredCheckpoint(BaseModel):
    """A signed checkpoint as stored: the tree size, its root (hex) and the signed note."""

    size: int
    root_hash: str
    time: datetime
    origin: str
    key_id: str
    note: str


def _checkpoint(row: tuple) -> StoredCheckpoint:
    size, root, moment, origin, key_id, note = row
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    return StoredCheckpoint(size=size, root_hash=root, time=moment, origin=origin, key_id=key_id, note=note)


CHECKPOINT_SELECT = "Size, RootHash, Time, Origin, KeyId, Note"


class EvidenceRepository:
    """Leaves, nodes and checkpoints of the one evidence log of a database."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    # -- what is new -------------------------------------------------------------

    def new_spans(self, *, since_us: int, limit: int) -> list[NewSpan]:
        """Stored spans inserted at or after ``since_us`` (µs since 1970) that are no leaf yet, by
        insertion time, one copy each (the first inserted), hashed by the engine: what a sweep
        appends through Python (rows that became visible behind the cursor, ids the engine's leaf
        form does not cover).

        Two statements over the same filter: the first reads cheap columns only to find the insert
        time of the ``limit``-th new span; the second hashes just the new spans up to it (the
        anti-join drops what is a leaf before any hashing), so a window full of sequenced rows
        costs a scan of three columns, never their hashes. A leaf's Seen is its span's InsertedAt,
        so only leaves seen since ``since_us`` can match (the minmax index on Seen skips the rest)."""
        new = ("InsertedAt >= fromUnixTimestamp64Micro({since:Int64}) AND (TraceId, SpanId) NOT IN ("
               f"SELECT TraceId, SpanId FROM {self.db}.evidence_leaves WHERE Kind = 'span' "
               "AND Seen >= fromUnixTimestamp64Micro({since:Int64}))")
        params = {"since": since_us, "limit": limit}
        [(count, until)] = self.engine.query(
            "evidence_new_span_until",
            f"SELECT count(), max(inserted) FROM (SELECT toUnixTimestamp64Micro(InsertedAt) AS inserted "
            f"FROM {self.db}.otel_traces WHERE {new} ORDER BY inserted LIMIT {{limit:UInt32}})", params)
        if not count:
            return []
        rows = self.engine.query(
            "evidence_new_spans",
            f"SELECT TraceId, SpanId, toUnixTimestamp64Nano(Timestamp), {RECORD_HASH}, {CONTENT_HASH}, "
            f"toUnixTimestamp64Micro(InsertedAt) AS inserted FROM {self.db}.otel_traces "
            # PREWHERE: the filter's three columns are read first, the maps only for rows that pass
            f"PREWHERE {new} AND InsertedAt <= fromUnixTimestamp64Micro({{until:Int64}}) "
            "ORDER BY inserted, TraceId, SpanId LIMIT 1 BY TraceId, SpanId LIMIT {limit:UInt32}",
            {**params, "until": until},
        )
        return [NewSpan(*row) for row in rows]

    def unsequenced_behind(self, *, since_us: int, until_us: int) -> bool:
        """Whether [since, until] (InsertedAt, µs) holds more stored spans than span leaves seen
        there: two counts, so a sweep over a window the cursor already covered reads no hashes."""
        [(spans, leaves)] = self.engine.query(
            "evidence_unsequenced_behind",
            f"SELECT (SELECT count() FROM {self.db}.otel_traces WHERE InsertedAt BETWEEN "
            "fromUnixTimestamp64Micro({since:Int64}) AND fromUnixTimestamp64Micro({until:Int64})), "
            f"(SELECT count() FROM {self.db}.evidence_leaves WHERE Kind = 'span' AND Seen BETWEEN "
            "fromUnixTimestamp64Micro({since:Int64}) AND fromUnixTimestamp64Micro({until:Int64}))",
            {"since": since_us, "until": until_us})
        return spans > leaves

    def span_cursor(self) -> SpanCursor | None:
        """The newest (InsertedAt, TraceId, SpanId) that is a span leaf: where the cursor resumes."""
        rows = self.engine.query(
            "evidence_span_cursor",
            f"SELECT toUnixTimestamp64Micro(Seen) AS seen, TraceId, SpanId FROM {self.db}.evidence_leaves "
            "WHERE Kind = 'span' ORDER BY seen DESC, TraceId DESC, SpanId DESC LIMIT 1")
        return SpanCursor(*rows[0]) if rows else None

    def append_spans_after(self, cursor: SpanCursor | None, *, start: int, limit: int, token: str,
                           sequencer: str) -> SpanCursor | None:
        """Append, as leaves from index ``start``, the stored spans past ``cursor`` that are no leaf
        yet (up to ``limit``, in cursor order, one copy each), hashed and inserted by the engine in
        one ``INSERT ... SELECT`` with the compare-and-swap ``token``; the cursor of the last one
        (None: nothing new). The caller reads the batch back to learn whether it won.

        The leaf data is written in SQL exactly as evidence/leaves.py writes it (RFC 8785 JSON; ids
        escaped for ``"`` and ``\\``); ids that are not valid UTF-8 or hold control characters are
        left to the sweep, which hashes their leaf data in Python. Two statements, as
        :meth:`new_spans`: three cheap columns find the batch's last cursor, then only the batch
        is hashed."""
        after = cursor or SpanCursor(0, "", "")
        new = (
            "InsertedAt >= fromUnixTimestamp64Micro({at:Int64}) "
            "AND (toUnixTimestamp64Micro(InsertedAt), TraceId, SpanId) > ({at:Int64}, {trace:String}, {span:String}) "
            f"AND {ENGINE_LEAF_IDS} AND (TraceId, SpanId) NOT IN (SELECT TraceId, SpanId FROM {self.db}.evidence_leaves "
            "WHERE Kind = 'span' AND Seen >= fromUnixTimestamp64Micro({at:Int64}))"
        )
        params = {"at": after.inserted_us, "trace": after.trace_id, "span": after.span_id, "limit": limit}
        [(count, last)] = self.engine.query(
            "evidence_span_batch_end",
            f"SELECT count(), max((inserted, TraceId, SpanId)) FROM (SELECT toUnixTimestamp64Micro(InsertedAt) "
            f"AS inserted, TraceId, SpanId FROM {self.db}.otel_traces PREWHERE {new} "
            "ORDER BY inserted, TraceId, SpanId LIMIT 1 BY TraceId, SpanId LIMIT {limit:UInt32})", params)
        if not count:
            return None
        end = SpanCursor(*last)
        self.engine.command(
            "evidence_append_spans",
            f"INSERT INTO {self.db}.evidence_leaves ({', '.join(LEAF_COLUMNS)}, Sequencer) "
            "SELECT {start:UInt64} + row_number() OVER (ORDER BY inserted, TraceId, SpanId) - 1, 'span', TraceId, "
            f"SpanId, 0, record, content, {ENGINE_LEAF_HASH}, Timestamp, InsertedAt, {{start:UInt64}}, {{me:String}} "
            f"FROM (SELECT TraceId, SpanId, Timestamp, InsertedAt, toUnixTimestamp64Micro(InsertedAt) AS inserted, "
            f"{RECORD_HASH} AS record, {CONTENT_HASH} AS content FROM {self.db}.otel_traces PREWHERE {new} "
            "AND (inserted, TraceId, SpanId) <= ({end_at:Int64}, {end_trace:String}, {end_span:String}) "
            "ORDER BY inserted, TraceId, SpanId LIMIT 1 BY TraceId, SpanId LIMIT {limit:UInt32})",
            {**params, "start": start, "me": sequencer, "end_at": end.inserted_us, "end_trace": end.trace_id,
             "end_span": end.span_id},
            settings={"insert_deduplication_token": token, "log_comment": "evidence_append_spans"})
        return end

    def batch_from(self, start: int, *, sequencer: str) -> tuple[list[bytes], bool]:
        """The leaf hashes of the leaves ``sequencer`` appended from index ``start`` on, in order (up to
        the first index that is not its own), and whether any leaf is stored at ``start`` at all.
        One row back: the hashes concatenated, so a batch of thousands costs one string."""
        [(indices, hashes, mine)] = self.engine.query(
            "evidence_batch_from",
            "SELECT groupArray(Idx), arrayStringConcat(groupArray(LeafHash)), groupArray(Sequencer = {me:String}) "
            f"FROM (SELECT Idx, LeafHash, Sequencer FROM {self.db}.evidence_leaves WHERE Idx >= {{start:UInt64}} "
            "ORDER BY Idx)", {"start": start, "me": sequencer})
        raw = bytes.fromhex(hashes)
        ours: list[bytes] = []
        for offset, (index, own) in enumerate(zip(indices, mine)):
            if index != start + offset or not own:
                break
            ours.append(raw[32 * offset:32 * offset + 32])
        return ours, bool(indices) and indices[0] == start

    def sequenced_audit_through(self) -> int:
        """The newest audit sequence number that is a leaf (0: none)."""
        rows = self.engine.query(
            "evidence_audit_through", f"SELECT max(AuditSeq) FROM {self.db}.evidence_leaves WHERE Kind = 'audit'")
        return int(rows[0][0] or 0) if rows else 0

    def newest_seen(self) -> int:
        """The newest InsertedAt (µs) of a span that is a leaf (0: none): where a restart scans from."""
        rows = self.engine.query(
            "evidence_newest_seen",
            f"SELECT toUnixTimestamp64Micro(max(Seen)) FROM {self.db}.evidence_leaves WHERE Kind = 'span'")
        return int(rows[0][0] or 0) if rows else 0

    # -- the tree ----------------------------------------------------------------

    def tree_size(self) -> tuple[int, int]:
        """(leaves: the highest index + 1, the batch the newest leaf belongs to)."""
        rows = self.engine.query(
            # read in primary-key order: the newest granule, not the whole log
            "evidence_tree_size", f"SELECT Idx, Batch FROM {self.db}.evidence_leaves ORDER BY Idx DESC LIMIT 1")
        return (int(rows[0][0]) + 1, int(rows[0][1])) if rows else (0, 0)

    def append_leaves(self, leaves: Sequence[LeafRow], *, token: str, sequencer: str = "") -> None:
        """Insert one batch of leaves with the compare-and-swap token (the caller reads it back)."""
        columns = [list(column) for column in zip(*leaves)] + [[sequencer] * len(leaves)]
        self.engine.insert("evidence_append_leaves", f"{self.db}.evidence_leaves", columns,
                           [*LEAF_COLUMNS, "Sequencer"], dedup_token=token)

    def leaf_hashes(self, *, start: int, end: int) -> list[tuple[int, str]]:
        """(index, leaf hash) of every stored leaf in [start, end), by index (two rows for one index: both)."""
        return [(idx, digest) for idx, digest in self.engine.query(
            "evidence_leaf_hashes",
            f"SELECT Idx, LeafHash FROM {self.db}.evidence_leaves WHERE Idx >= {{start:UInt64}} AND Idx < {{end:UInt64}} "
            "ORDER BY Idx", {"start": start, "end": end})]

    def leaves(self, *, start: int, end: int) -> list[LeafRow]:
        rows = self.engine.query(
            "evidence_leaves",
            f"SELECT {LEAF_SELECT} FROM {self.db}.evidence_leaves WHERE Idx >= {{start:UInt64}} AND Idx < {{end:UInt64}} "
            "ORDER BY Idx", {"start": start, "end": end})
        return [LeafRow(*row) for row in rows]

    def span_leaves(self, *, low: str, high: str | None) -> list[LeafRow]:
        """Span leaves whose trace id is in [low, high) (``high`` None: no upper bound)."""
        rows = self.engine.query(
            "evidence_span_leaves",
            f"SELECT {LEAF_SELECT} FROM {self.db}.evidence_leaves WHERE Kind = 'span' AND TraceId >= {{low:String}} "
            "AND ({open:UInt8} = 1 OR TraceId < {high:String}) ORDER BY Idx",
            {"low": low, "high": high or "", "open": int(high is None)})
        return [LeafRow(*row) for row in rows]

    def leaves_of_span(self, *, trace_id: str, span_id: str) -> list[LeafRow]:
        rows = self.engine.query(
            "evidence_leaves_of_span",
            f"SELECT {LEAF_SELECT} FROM {self.db}.evidence_leaves WHERE Kind = 'span' AND TraceId = {{trace:String}} "
            "AND SpanId = {span:String} ORDER BY Idx", {"trace": trace_id, "span": span_id})
        return [LeafRow(*row) for row in rows]

    def leaves_of_audit(self, *, seq: int) -> list[LeafRow]:
        rows = self.engine.query(
            "evidence_leaves_of_audit",
            f"SELECT {LEAF_SELECT} FROM {self.db}.evidence_leaves WHERE Kind = 'audit' AND TraceId = '' "
            "AND SpanId = '' AND AuditSeq = {seq:UInt64} ORDER BY Idx", {"seq": seq})
        return [LeafRow(*row) for row in rows]

    def leaves_of_spans(self, *, trace_ids: Sequence[str]) -> list[LeafRow]:
        """Every span leaf of these traces, by index (one read for a bundle's spans)."""
        rows = self.engine.query(
            "evidence_leaves_of_spans",
            f"SELECT {LEAF_SELECT} FROM {self.db}.evidence_leaves WHERE Kind = 'span' "
            "AND TraceId IN {traces:Array(String)} ORDER BY Idx", {"traces": list(trace_ids)})
        return [LeafRow(*row) for row in rows]

    def leaves_of_audits(self, *, seqs: Sequence[int]) -> list[LeafRow]:
        """Every audit leaf of these entries, by index."""
        rows = self.engine.query(
            "evidence_leaves_of_audits",
            f"SELECT {LEAF_SELECT} FROM {self.db}.evidence_leaves WHERE Kind = 'audit' AND TraceId = '' "
            "AND SpanId = '' AND AuditSeq IN {seqs:Array(UInt64)} ORDER BY Idx", {"seqs": list(seqs)})
        return [LeafRow(*row) for row in rows]

    def add_nodes(self, nodes: Sequence[tuple[int, int, bytes]], *, token: str) -> None:
        """Insert complete subtrees (level >= 1, index, hash); the same token twice inserts once.

        Encoded as Native here (three fixed types) rather than through clickhouse-connect's column
        insert, which costs ~10 µs a row in Python against ~1 µs for this: a sequencer batch stores
        as many nodes as leaves."""
        if not nodes:
            return
        levels, indices, hashes = zip(*nodes)
        block = native_block([("Level", "UInt8", bytes(levels)), ("Idx", "UInt64", native_uint64(indices)),
                              ("Hash", "String", native_strings([digest.hex().encode() for digest in hashes]))],
                             len(nodes))
        self.engine.insert_native("evidence_add_nodes", f"{self.db}.evidence_nodes", ["Level", "Idx", "Hash"], block,
                                  dedup_token=token)

    def node_hashes(self, coordinates: Iterable[tuple[int, int]]) -> dict[tuple[int, int], str]:
        """The stored hash (hex) of each (level, index) asked for that is stored: level 0 from the leaves.
        A coordinate stored twice answers one of them (verification reads every row)."""
        wanted = set(coordinates)
        leaves = sorted(index for level, index in wanted if level == 0)
        upper = sorted((level, index) for level, index in wanted if level > 0)
        found: dict[tuple[int, int], str] = {}
        if leaves:
            for idx, digest in self.engine.query(
                    "evidence_leaf_nodes", f"SELECT Idx, LeafHash FROM {self.db}.evidence_leaves "
                                           "WHERE Idx IN {idx:Array(UInt64)}", {"idx": leaves}):
                found[(0, idx)] = digest
        if upper:
            for level, idx, digest in self.engine.query(
                    "evidence_node_hashes", f"SELECT Level, Idx, Hash FROM {self.db}.evidence_nodes "
                                            "WHERE (Level, Idx) IN {at:Array(Tuple(UInt8, UInt64))}", {"at": upper}):
                found[(level, idx)] = digest
        return found

    def nodes(self, *, level: int, start: int, end: int) -> list[tuple[int, int, str]]:
        """Every stored node row of one level with index in [start, end), by index."""
        return [tuple(row) for row in self.engine.query(
            "evidence_nodes",
            f"SELECT Level, Idx, Hash FROM {self.db}.evidence_nodes WHERE Level = {{level:UInt8}} "
            "AND Idx >= {start:UInt64} AND Idx < {end:UInt64} ORDER BY Idx",
            {"level": level, "start": start, "end": end})]

    def node_levels(self) -> list[tuple[int, int]]:
        """(level, rows) of the stored nodes."""
        return [tuple(row) for row in self.engine.query(
            "evidence_node_levels", f"SELECT Level, count() FROM {self.db}.evidence_nodes GROUP BY Level ORDER BY Level")]

    # -- stored spans, for verification -------------------------------------------

    def span_hashes(self, *, low: str, high: str | None) -> list[tuple[str, str, str, str]]:
        """(trace id, span id, record hash, content hash) of every stored copy of every span whose
        trace id is in [low, high), hashed by the engine as the sequencer hashes them."""
        return [tuple(row) for row in self.engine.query(
            "evidence_span_hashes",
            f"SELECT TraceId, SpanId, {RECORD_HASH}, {CONTENT_HASH} FROM {self.db}.otel_traces "
            "WHERE TraceId >= {low:String} AND ({open:UInt8} = 1 OR TraceId < {high:String})",
            {"low": low, "high": high or "", "open": int(high is None)})]

    def span_sources(self, *, low: str, high: str | None) -> list[tuple]:
        """Every stored copy of every span whose trace id is in [low, high), in SpanSource column order."""
        return self.engine.query(
            "evidence_span_sources",
            f"SELECT {SPAN_SOURCE} FROM {self.db}.otel_traces WHERE TraceId >= {{low:String}} "
            "AND ({open:UInt8} = 1 OR TraceId < {high:String})",
            {"low": low, "high": high or "", "open": int(high is None)})

    def span_stored(self, *, trace_id: str, span_id: str) -> bool:
        return bool(self.engine.query(
            "evidence_span_stored",
            f"SELECT 1 FROM {self.db}.otel_traces WHERE TraceId = {{trace:String}} AND SpanId = {{span:String}} LIMIT 1",
            {"trace": trace_id, "span": span_id}))

    # -- checkpoints ---------------------------------------------------------------

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self.engine.insert(
            "evidence_add_checkpoint", f"{self.db}.evidence_checkpoints",
            [[checkpoint.size], [checkpoint.root_hash], [checkpoint.time], [checkpoint.origin], [checkpoint.key_id],
             [checkpoint.note]], ["Size", "RootHash", "Time", "Origin", "KeyId", "Note"])

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = self.engine.query(
            "evidence_latest_checkpoint",
            f"SELECT {CHECKPOINT_SELECT} FROM {self.db}.evidence_checkpoints ORDER BY Size DESC, Time DESC LIMIT 1")
        return _checkpoint(rows[0]) if rows else None

    def checkpoint(self, *, size: int) -> StoredCheckpoint | None:
        """The newest checkpoint of exactly this tree size."""
        rows = self.engine.query(
            "evidence_checkpoint",
            f"SELECT {CHECKPOINT_SELECT} FROM {self.db}.evidence_checkpoints WHERE Size = {{size:UInt64}} "
            "ORDER BY Time DESC LIMIT 1", {"size": size})
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self, *, limit: int = 100) -> list[StoredCheckpoint]:
        """The newest checkpoints first."""
        rows = self.engine.query(
            "evidence_checkpoints",
            f"SELECT {CHECKPOINT_SELECT} FROM {self.db}.evidence_checkpoints ORDER BY Size DESC, Time DESC "
            "LIMIT {limit:UInt32}", {"limit": limit})
        return [_checkpoint(row) for row in rows]
