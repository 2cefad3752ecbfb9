"""The batch writer: sealed WAL segments into the store, each exactly once, in order.

Segments are prepared (decoded, normalized, Native-encoded) by worker processes,
a few ahead of the insert, and inserted oldest first with the segment's name as
the deduplication token; a segment leaves the WAL only after its insert.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pydantic import BaseModel, Field

from collector.normalize import NormalizeConfig
from collector.prepare import SegmentPreparer, init_worker, prepare_in_worker
from collector.wal import Segment, WriteAheadLog
from store import Store
from store.native import PreparedBatch

log = logging.getLogger(__name__)


class WriterConfig(BaseModel):
    workers: int = Field(default=2, ge=0, description="processes preparing segments; 0 prepares in the writer thread")
    retry_initial_s: float = Field(default=0.5, gt=0, description="first wait after a failed insert")
    retry_max_s: float = Field(default=10.0, gt=0, description="longest wait between insert retries")
    drain_timeout_s: float = Field(default=30.0, ge=0, description="how long shutdown waits to flush the WAL")


class WriterMetrics(BaseModel):
    inserted_spans: int = 0
    inserted_segments: int = 0
    insert_failures: int = 0
    last_error: str = ""


class BatchWriter:
    """A background thread: prepare the oldest sealed segments, insert them in order, forget them."""

    def __init__(
        self,
        wal: WriteAheadLog,
        store: Store,
        normalize: NormalizeConfig | None = None,
        config: WriterConfig | None = None,
    ) -> None:
        self.wal = wal
        self.store = store
        self.normalize = normalize or NormalizeConfig()
        self.config = config or WriterConfig()
        self.metrics = WriterMetrics()
        self._insert_types = store.insert_types()
        self._preparer = SegmentPreparer(self.normalize, self._insert_types)
        self._pool: ProcessPoolExecutor | None = None
        self._in_flight: dict[Path, Future[PreparedBatch]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread (and its worker pool); returns at once."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="flightrec-writer", daemon=True)
            self._thread.start()

    def _new_pool(self) -> ProcessPoolExecutor | None:
        """Worker processes, started now rather than on the first segment (spawn takes a second)."""
        if not self.config.workers:
            return None
        pool = ProcessPoolExecutor(
            max_workers=self.config.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.normalize.model_dump_json(), self._insert_types),
        )
        for _ in range(self.config.workers):
            pool.submit(os.getpid)
        return pool

    def _run(self) -> None:
        self._pool = self._new_pool()
        backoff = self.config.retry_initial_s
        try:
            while not self._stop.is_set():
                window = max(1, self.config.workers * 2)
                segments = self.wal.sealed_segments(window, timeout=0.1)
                if not segments:
                    continue
                if self.write_segment(segments[0], ahead=segments[1:]):
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

    def write_segment(self, segment: Segment, ahead: list[Segment] | None = None) -> bool:
        """Prepare and insert one segment; False (the segment kept for a retry) on failure."""
        try:
            prepared = self._prepare(segment, ahead or [])
            self.store.insert_prepared(prepared, dedup_token=segment.token)
        except Exception as exc:  # the store may be down or a worker died: keep the segment
            self.metrics.insert_failures += 1
            self.metrics.last_error = str(exc)[:500] or type(exc).__name__
            log.error("writer: segment %s not inserted, will retry: %s", segment.token, self.metrics.last_error)
            if isinstance(exc, BrokenProcessPool):
                self._close_pool()
                self._pool = self._new_pool()
            return False
        self.wal.complete(segment)
        self.metrics.inserted_spans += prepared.spans
        self.metrics.inserted_segments += 1
        return True

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
