"""The batch writer: sealed WAL segments into the store, each exactly once, in order.

Segments are prepared (decoded into rows as received, Native-encoded) by worker processes,
a few ahead of the insert, and inserted oldest first; every table insert carries a
deduplication token derived from its bytes (``Store.insert_prepared``), so a retry or a
replay after a crash stores nothing twice; a segment leaves the WAL only after its insert.

Span identity is insert-once: before an insert the writer asks the store which of
the segment's spans it already holds; identical copies are dropped, differing ones
refused and counted, so the first stored copy stays and no aggregate counts a span
twice. A failure that retrying cannot fix (the engine refused the data itself, or
the segment cannot be decoded) is retried a few times, then the segment is split
into its records: the good ones are inserted, the bad ones quarantined, and the
writer moves on. Transient failures (store down, overloaded) retry in order forever.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Callable
from typing import Literal
from pathlib import Path

from pydantic import BaseModel, Field

from flightrec.collector.engine_ingest import EngineSegmentWriter
from flightrec.collector.prepare import Exclusions, SegmentPreparer, conflict_message, init_worker, prepare_in_worker
from flightrec.collector.quarantine import Quarantine
from flightrec.collector.wal import Segment, WalRecord, WriteAheadLog, read_records
from flightrec.store import Store, StoreError
from flightrec.store.native import PreparedBatch

log = logging.getLogger(__name__)


class WriterConfig(BaseModel):
    parser: Literal["python", "engine"] = Field(
        default="python", description="who parses and flattens segments: worker processes (python) or the engine")
    workers: int = Field(default=2, ge=0, description="processes preparing segments; 0 prepares in the writer thread")
    retry_initial_s: float = Field(default=0.5, gt=0, description="first wait after a failed insert")
    retry_max_s: float = Field(default=10.0, gt=0, description="longest wait between insert retries")
    drain_timeout_s: float = Field(default=30.0, ge=0, description="how long shutdown waits to flush the WAL")
    quarantine_after: int = Field(
        default=3, ge=1, description="attempts at a segment the store refuses for its data before it is split"
    )


class WriterMetrics(BaseModel):
    inserted_spans: int = 0
    inserted_segments: int = 0
    insert_failures: int = 0
    last_error: str = ""
    duplicate_spans: int = Field(default=0, description="identical copies of stored spans, dropped")
    conflicting_spans: int = Field(default=0, description="differing copies of stored spans, refused")
    quarantined_segments: int = 0
    quarantined_spans: int = 0
    failing_since: float = Field(default=0.0, description="unix time since which the head segment fails (0: it does not)")
    head_attempts: int = Field(default=0, description="failed attempts at the segment at the head of the WAL")


def _classify(exc: Exception) -> bool:
    """True when the failure may pass on its own (retry in order), False when the data is at fault."""
    if isinstance(exc, StoreError):
        return exc.transient
    if isinstance(exc, (BrokenProcessPool, MemoryError, OSError)):
        return True
    return False  # decoding or encoding the segment failed: the same bytes fail the same way


class BatchWriter:
    """A background thread: prepare the oldest sealed segments, insert them in order, forget them."""

    def __init__(
        self,
        wal: WriteAheadLog,
        store: Store,
        config: WriterConfig | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        self.wal = wal
        self.store = store
        self.config = config or WriterConfig()
        self.quarantine = quarantine or Quarantine(wal.config.directory / "quarantine")
        self.metrics = WriterMetrics()
        self._insert_types = store.insert_types()
        self._preparer = SegmentPreparer(self._insert_types)
        self._engine = (EngineSegmentWriter(store, wal.config.directory / "engine", self._preparer)
                        if self.config.parser == "engine" else None)
        self._pool: ProcessPoolExecutor | None = None
        self._in_flight: dict[Path, Future[PreparedBatch]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._head: Path | None = None
        self._replaying = threading.Lock()

    def start(self) -> None:
        """Start the writer thread (and its worker pool); returns at once."""
        if self._thread is None:
            self._pool = self._pool or self._new_pool_ignoring_ctrl_c()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="flightrec-writer", daemon=True)
            self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _new_pool(self) -> ProcessPoolExecutor | None:
        """Worker processes, started now rather than on the first segment (spawn takes a second)."""
        if not self.config.workers or self._engine is not None:
            return None
        pool = ProcessPoolExecutor(
            max_workers=self.config.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self._insert_types,),
        )
        for _ in range(self.config.workers):
            pool.submit(os.getpid)
        return pool

    def _new_pool_ignoring_ctrl_c(self) -> ProcessPoolExecutor | None:
        """The pool, spawned with SIGINT ignored when called on the main thread.

        Ctrl-C reaches the whole process group, and a worker still importing would die with
        a traceback; an ignored disposition survives exec, so Python in the worker keeps
        ignoring it (the server shuts its workers down in order). Elsewhere (the demo starts
        a server on a thread) signals cannot be changed, and workers ignore SIGINT once ready.
        """
        if threading.current_thread() is not threading.main_thread():
            return self._new_pool()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return self._new_pool()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run(self) -> None:
        if self._pool is None:
            try:
                self._pool = self._new_pool()
            except OSError as exc:
                log.error("writer: no worker processes (%s); preparing segments in the writer thread", exc)
        backoff = self.config.retry_initial_s
        try:
            while not self._stop.is_set():
                try:
                    window = max(1, self.config.workers * 2)
                    segments = self.wal.sealed_segments(window, timeout=0.1)
                    if not segments:
                        continue
                    written = self.write_segment(segments[0], ahead=segments[1:])
                except Exception as exc:  # the writer must outlive any one failure (the WAL, a pool)
                    log.exception("writer: unexpected error, will retry")
                    self.metrics.last_error = str(exc)[:500] or type(exc).__name__
                    self.metrics.failing_since = self.metrics.failing_since or time.time()
                    written = False
                if written:
                    backoff = self.config.retry_initial_s
                else:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.retry_max_s)
        finally:
            self._close_pool()

    def _submit(self, segment: Segment) -> Future[PreparedBatch] | None:
        if self._pool is None:
            return None
        if segment.path not in self._in_flight:
            self._in_flight[segment.path] = self._pool.submit(prepare_in_worker, str(segment.path))
        return self._in_flight[segment.path]

    def _prepare(self, segment: Segment, ahead: list[Segment]) -> PreparedBatch:
        future = self._submit(segment)
        for later in ahead:
            self._submit(later)
        if future is None:
            return self._preparer.prepare(segment.path)
        try:
            return future.result()
        finally:
            self._in_flight.pop(segment.path, None)

    def _insert(self, prepared: PreparedBatch, again: Callable[[Exclusions], PreparedBatch]) -> int:
        """Insert what the store does not hold yet; answer the spans inserted.

        When some spans are already stored, the batch is prepared again without them (rare:
        resends and replays); its log records are unchanged by that, so their content-derived
        token makes a retry of them a no-op.
        """
        stored = self.store.stored_span_hashes(trace_ids=sorted({trace for trace, _, _ in prepared.span_keys}))
        conflicts = list(prepared.conflicts)
        duplicates = prepared.duplicates
        hits = [(trace, span, digest) for trace, span, digest in prepared.span_keys if (trace, span) in stored]
        if hits:
            refused = {(t, s) for t, s, digest in hits if stored[(t, s)] not in (0, digest)}
            conflicts += [conflict_message(t, s) for t, s in sorted(refused)]
            duplicates += len(hits) - len(refused)
            prepared = again(Exclusions(spans={(t, s) for t, s, _ in hits}))
        self.store.insert_prepared(prepared)
        if hits:  # a replay after a crash may find spans stored whose views' rows were lost
            self.store.view_repair.restore(trace_ids=sorted({trace for trace, _, _ in hits}))
        self._count_identity(duplicates, conflicts)
        return prepared.spans

    def _engine_write(self, records: list[WalRecord], token: str) -> int:
        """Records through the engine's parser (collector/engine_ingest.py); answer the spans inserted."""
        assert self._engine is not None
        result = self._engine.write(records, token)
        self._count_identity(result.duplicates, result.conflicts)
        return result.inserted

    def _count_identity(self, duplicates: int, conflicts: list[str]) -> None:
        self.metrics.duplicate_spans += duplicates
        if not conflicts:
            return
        self.metrics.conflicting_spans += len(conflicts)
        more = f"; and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
        reason = "; ".join(conflicts[:3]) + more
        log.warning("writer: refused %d differing copies of stored spans: %s", len(conflicts), reason)
        try:
            self.store.record_rejections(transport="writer", rejected=len(conflicts), reason=reason)
        except Exception as exc:  # the count is also in metrics
            log.warning("could not record %d refused spans: %s", len(conflicts), exc)

    def write_segment(self, segment: Segment, ahead: list[Segment] | None = None) -> bool:
        """Prepare and insert one segment; False (kept for a retry) on a transient failure."""
        if self._head != segment.path:
            self._head, self.metrics.head_attempts = segment.path, 0
        try:
            if self._engine is not None:
                inserted = self._engine_write(read_records(segment.path), segment.token)
            else:
                prepared = self._prepare(segment, ahead or [])
                inserted = self._insert(prepared, lambda exclude: self._preparer.prepare(segment.path, exclude))
        except Exception as exc:
            return self._failed(segment, exc)
        self._done(segment, inserted)
        return True

    def _failed(self, segment: Segment, exc: Exception) -> bool:
        """Count the failure; split the segment once the store has refused its data often enough."""
        transient = _classify(exc)
        self.metrics.insert_failures += 1
        self.metrics.head_attempts += 1
        self.metrics.failing_since = self.metrics.failing_since or time.time()
        self.metrics.last_error = str(exc)[:500] or type(exc).__name__
        if isinstance(exc, BrokenProcessPool):
            self._close_pool()
            try:
                self._pool = self._new_pool()
            except OSError as spawn_error:  # cannot spawn workers (EAGAIN, ENOMEM): prepare in this thread
                log.error("writer: no worker processes (%s); preparing segments in the writer thread", spawn_error)
        if transient or self.metrics.head_attempts < self.config.quarantine_after:
            kind = "transient" if transient else f"attempt {self.metrics.head_attempts}"
            log.error("writer: segment %s not inserted (%s), will retry: %s", segment.token, kind,
                      self.metrics.last_error)
            return False
        return self._salvage(segment)

    def _salvage(self, segment: Segment) -> bool:
        """Insert the segment record by record; quarantine the records the store refuses for their data."""
        records = read_records(segment.path)
        bad: list[WalRecord] = []
        reasons: list[str] = []
        inserted = 0
        for number, record in enumerate(records):
            try:
                if self._engine is not None:
                    inserted += self._engine_write([record], f"{segment.token}-{number}")
                    continue
                prepared = self._preparer.prepare_records([record])
                inserted += self._insert(
                    prepared,
                    lambda exclude, one=record: self._preparer.prepare_records([one], exclude),
                )
            except Exception as exc:
                if _classify(exc):
                    log.error("writer: salvage of %s paused by a transient failure: %s", segment.token, exc)
                    return False
                bad.append(record)
                reasons.append(f"record {number}: {str(exc)[:400] or type(exc).__name__}")
        if bad:
            try:
                entry = self.quarantine.add(segment.token, bad, "; ".join(reasons[:3]), self.metrics.head_attempts)
            except OSError as exc:  # a full disk: keep the segment in the WAL and try again later
                log.error("writer: could not quarantine records of %s, will retry: %s", segment.token, exc)
                return False
            self.metrics.quarantined_segments += 1
            self.metrics.quarantined_spans += entry.spans
            log.error("writer: quarantined %d of %d records (%d spans) of segment %s: %s", len(bad), len(records),
                      entry.spans, segment.token, entry.reason)
        self._done(segment, inserted)
        return True

    def _done(self, segment: Segment, inserted: int) -> None:
        self.wal.complete(segment)
        self.metrics.inserted_spans += inserted
        self.metrics.inserted_segments += 1
        self.metrics.failing_since = 0.0
        self.metrics.head_attempts = 0
        self._head = None

    def replay(self, name: str) -> Segment:
        """Queue a quarantined segment again (once its cause is fixed); raises UnknownSegment.

        One replay at a time: two requests for the same segment must not queue it twice.
        """
        with self._replaying:
            _, records = self.quarantine.load(name)
            queued = self.wal.adopt(records)
            self.quarantine.remove(name)
        return queued

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        self._in_flight.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Insert everything in the WAL now (from the caller's thread if the writer is stopped)."""
        deadline = time.monotonic() + (self.config.drain_timeout_s if timeout_s is None else timeout_s)
        self.wal.seal_now()
        while self.wal.pending_segments():
            if time.monotonic() > deadline:
                return False
            if self._thread is not None and self._thread.is_alive():
                time.sleep(0.02)
                continue
            segment = self.wal.next_sealed(timeout=0)
            if segment is not None and not self.write_segment(segment):
                time.sleep(self.config.retry_initial_s)
        return True

    def shutdown(self) -> None:
        """Flush what is durable into the store, then stop the thread and workers; safe twice."""
        if self._thread is None:
            return
        self.flush()
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
