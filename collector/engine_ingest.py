"""Segments into the store with the engine doing the per-span work (``FLIGHTREC_INGEST_PARSER=engine``).

The writer hands ClickHouse a segment's trace payloads as varint length-delimited
``ExportTraceServiceRequest`` messages: embedded, a file next to the WAL that the statement
reads; on a server, the insert body (``input()``). The engine parses, flattens and inserts
(``store/otlp.py``); Python only frames the bytes and keeps span identity:

- a parse of the ids alone lists the segment's spans; the store is asked which of their
  traces' spans it holds (the statement the Python path uses);
- only when a span is already stored or twice in the segment (resends, replays) are those
  spans' content hashes read, to count identical copies (dropped) and differing ones (refused,
  the first copy kept); the insert then leaves the stored ones out and keeps first copies;
- a segment spread over more days than one insert may create is inserted in groups;
- every insert carries a deduplication token from the segment's name, the group and what was
  left out, so a retry or a replay after a crash inserts nothing twice;
- the views' rows of spans found stored are derived again where a crash lost them
  (``store/view_repair.py``).

Log records keep the Python path (their rows are few and carry no identity check).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, Field

from flightrec.collector.prepare import MAX_PARTITIONS_PER_INSERT, SegmentPreparer, conflict_message
from flightrec.collector.signals import Signal
from flightrec.collector.wal import WalRecord
from flightrec.store import Store
from flightrec.store.otlp import SegmentSource


class EngineResult(BaseModel):
    """What one segment's insert did to its spans."""

    inserted: int = 0
    duplicates: int = 0
    conflicts: list[str] = Field(default_factory=list)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame(payloads: list[bytes]) -> bytes:
    """Requests as the engine's ``Protobuf`` format reads them: each one prefixed by its length."""
    return b"".join(_varint(len(payload)) + payload for payload in payloads)


class EngineSegmentWriter:
    """Inserts WAL records through the engine's OTLP parser; keeps insert-once identity."""

    def __init__(self, store: Store, staging: Path, preparer: SegmentPreparer) -> None:
        self.store = store
        self.staging = staging
        self.preparer = preparer
        staging.mkdir(parents=True, exist_ok=True)
        for leftover in staging.glob("*.otlp"):  # a crash mid-insert: the WAL still holds the segment
            leftover.unlink()

    def write(self, records: list[WalRecord], token: str) -> EngineResult:
        """Insert these records' spans (and log records) once; ``token`` names them (the segment)."""
        logs = [record for record in records if record.signal == Signal.LOGS.value]
        if logs:
            self.store.insert_prepared(self.preparer.prepare_records(logs))
        payloads = [record.payload for record in records if record.signal != Signal.LOGS.value]
        if not payloads:
            return EngineResult()
        body = frame(payloads)
        if not self.store.engine.embedded:
            return self._insert(SegmentSource(body=body), token)
        path = self.staging / f"{token}.otlp"
        with path.open("wb") as handle:
            handle.write(body)
        try:
            return self._insert(SegmentSource(path=str(path)), token)
        finally:
            path.unlink(missing_ok=True)

    def _insert(self, source: SegmentSource, token: str) -> EngineResult:
        keys = self.store.otlp.span_keys(source)
        pairs = list(zip(keys.trace_ids, keys.span_ids))
        counts: dict[tuple[str, str], int] = {}
        for pair in pairs:
            counts[pair] = counts.get(pair, 0) + 1
        stored = self.store.stored_span_hashes(trace_ids=sorted(set(keys.trace_ids)))
        hits = {pair for pair in counts if pair in stored or counts[pair] > 1}
        result, skip = EngineResult(), sorted(pair for pair in counts if pair in stored)
        if hits:
            first: dict[tuple[str, str], int] = {}
            for trace, span, digest in self.store.otlp.span_hashes(source, keys=sorted(hits)):
                pair = (trace, span)
                kept = stored.get(pair, first.get(pair))
                if kept is None:
                    first[pair] = digest
                elif kept in (0, digest):
                    result.duplicates += 1
                else:
                    result.conflicts.append(conflict_message(trace, span))
        days = sorted(set(keys.days))
        groups = [days[i:i + MAX_PARTITIONS_PER_INSERT] for i in range(0, len(days), MAX_PARTITIONS_PER_INSERT)]
        for number, group in enumerate(groups):
            left_out = hashlib.blake2b(repr((skip, group if len(groups) > 1 else [])).encode(), digest_size=8)
            self.store.otlp.insert_spans(
                source, token=f"otel_traces:{token}:{number}:{left_out.hexdigest()}", skip=skip,
                days=group if len(groups) > 1 else [], first_copies=any(count > 1 for count in counts.values()))
        if skip:  # a replay after a crash may find spans stored whose views' rows were lost
            self.store.view_repair.restore(trace_ids=sorted({trace for trace, _ in skip}))
        result.inserted = len(pairs) - result.duplicates - len(result.conflicts)
        return result
