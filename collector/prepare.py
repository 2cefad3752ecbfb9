"""Segment preparation: WAL segment file in, Native-encoded batch out.

A plain function of its inputs so it runs in a worker process: decoding and
flattening attributes is where ingest spends its Python time, and worker processes put
it on every core while the store owner only hands bytes to ClickHouse.

Preparation also keeps span identity (the first copy of a trace id + span id in a
segment wins; an identical copy is dropped, a different one refused) and splits a
batch whose spans fall in more daily partitions than one insert may create.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path

from flightrec.collector.decode import decode_protobuf
from flightrec.collector.logs import log_rows
from flightrec.collector.rows import RowBuilder
from flightrec.collector.signals import Signal
from flightrec.collector.wal import WalRecord, read_records
from flightrec.store import SpanBatch
from flightrec.store.models import (
    LOG_COLUMN_NAMES,
    SPAN_COLUMN_NAMES,
)
from flightrec.store.native import NativeEncoder, PreparedBatch, PreparedPart
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from pydantic import BaseModel, Field

# ClickHouse's max_partitions_per_insert_block is 100; spans and logs are partitioned by day (0029) in the
# server's time zone, grouped here by UTC day: 99 UTC days touch at most 100 days of any other zone.
MAX_PARTITIONS_PER_INSERT = 100
UTC_DAYS_PER_INSERT = MAX_PARTITIONS_PER_INSERT - 1
_DAY_NS = 86_400 * 10**9
_SAFE_SPAN_NS = (UTC_DAYS_PER_INSERT - 1) * _DAY_NS  # spans closer together than this touch at most 99 UTC days
_TRACE, _SPAN, _HASH, _TS = (SPAN_COLUMN_NAMES.index(name) for name in ("TraceId", "SpanId", "ContentHash", "Timestamp"))
MAX_CONFLICT_EXAMPLES = 5


class Rows(BaseModel):
    """One insert's rows per table."""

    spans: list[tuple] = Field(default_factory=list)
    logs: list[tuple] = Field(default_factory=list)


class Exclusions(BaseModel):
    """Spans the store already holds: their rows are left out (the engine derives no links for them)."""

    spans: set[tuple[str, str]] = Field(default_factory=set)


def conflict_message(trace_id: str, span_id: str) -> str:
    return f"span {span_id} of trace {trace_id} was sent again with different content; the first copy is kept"


def _day(ns: int) -> int:
    """The UTC day (since the epoch) a timestamp falls in."""
    return ns // _DAY_NS


class SegmentPreparer:
    """Decodes segments into rows as received and encodes them for one store's insert types."""

    def __init__(self, insert_types: dict[str, list[str]]) -> None:
        self.rows = RowBuilder()
        self.spans = NativeEncoder(SPAN_COLUMN_NAMES, insert_types["otel_traces"])
        self.logs = NativeEncoder(LOG_COLUMN_NAMES, insert_types["otel_logs"])

    def decode(self, records: list[WalRecord]) -> SpanBatch:
        batch = SpanBatch()
        for record in records:
            if record.signal == Signal.LOGS.value:
                batch.log_rows.extend(log_rows(decode_protobuf(record.payload, ExportLogsServiceRequest)))
            else:
                self.rows.request_rows(decode_protobuf(record.payload), batch)
        return batch

    def prepare(self, path: Path, exclude: Exclusions | None = None) -> PreparedBatch:
        return self.prepare_records(read_records(path), exclude)

    def prepare_records(self, records: list[WalRecord], exclude: Exclusions | None = None) -> PreparedBatch:
        """Decode, keep each span once, split by partition, encode."""
        batch = self.decode(records)
        exclude = exclude or Exclusions()
        seen: dict[tuple[str, str], int] = {}
        rows: list[tuple] = []
        duplicates, conflicts = 0, []
        for row in batch.span_rows:
            key = (row[_TRACE], row[_SPAN])
            if key in exclude.spans:
                continue
            first = seen.get(key)
            if first is None:
                seen[key] = row[_HASH]
                rows.append(row)
            elif first == row[_HASH]:
                duplicates += 1
            else:
                conflicts.append(conflict_message(*key))
        groups = self._by_partitions(Rows(spans=rows, logs=batch.log_rows))
        return PreparedBatch(
            parts=[self._encode(group) for group in groups],
            span_keys=[(row[_TRACE], row[_SPAN], row[_HASH]) for row in rows],
            duplicates=duplicates,
            conflicts=conflicts,
        )

    @staticmethod
    def _by_partitions(rows: Rows) -> list[Rows]:
        """Rows grouped so no group spans more than UTC_DAYS_PER_INSERT consecutive days (a UTC day may
        fall in two of another zone's: 99 of them in a row, in at most 100)."""
        stamps = [row[_TS] for row in rows.spans] + [log[0] for log in rows.logs]
        if not stamps or max(stamps) - min(stamps) < _SAFE_SPAN_NS:
            return [rows]
        first = _day(min(stamps))
        groups: dict[int, Rows] = {}
        for row in rows.spans:
            groups.setdefault((_day(row[_TS]) - first) // UTC_DAYS_PER_INSERT, Rows()).spans.append(row)
        for log in rows.logs:
            groups.setdefault((_day(log[0]) - first) // UTC_DAYS_PER_INSERT, Rows()).logs.append(log)
        return [groups[key] for key in sorted(groups)]

    def _encode(self, rows: Rows) -> PreparedPart:
        batch = SpanBatch(span_rows=rows.spans, log_rows=rows.logs)
        return PreparedPart(
            spans=batch.span_count,
            logs=len(batch.log_rows),
            span_native=self.spans.encode(batch.span_columns()),
            log_native=self.logs.encode(batch.log_columns()),
        )


_worker_preparer: SegmentPreparer | None = None


def _exit_with_parent() -> None:
    """A worker outlives a killed server otherwise (it never sees its pipe close).

    Waits on the parent's sentinel, which closes when the parent is gone, even if that
    happened before this worker finished starting (polling ``getppid`` from here would
    record the new parent and wait forever).
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
    os._exit(0)


def init_worker(insert_types: dict[str, list[str]]) -> None:
    """Process-pool initializer: build this worker's preparer once; die with the parent.

    Ctrl-C reaches the whole process group: the server shuts its workers down in
    order, so a worker ignores SIGINT rather than dying with a traceback.
    """
    global _worker_preparer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_preparer = SegmentPreparer(insert_types)
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def prepare_in_worker(path: str) -> PreparedBatch:
    assert _worker_preparer is not None, "init_worker was not run in this process"
    return _worker_preparer.prepare(Path(path))
