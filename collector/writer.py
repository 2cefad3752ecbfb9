"""The batch writer: sealed WAL segments into the store, each exactly once."""

from __future__ import annotations

import logging
import threading
import time

from pydantic import BaseModel, Field

from collector.decode import decode_protobuf
from collector.normalize import Normalizer
from collector.wal import Segment, WriteAheadLog
from store import SpanBatch, Store

log = logging.getLogger(__name__)


class WriterConfig(BaseModel):
    retry_initial_s: float = Field(default=0.5, gt=0, description="first wait after a failed insert")
    retry_max_s: float = Field(default=10.0, gt=0, description="longest wait between insert retries")
    drain_timeout_s: float = Field(default=30.0, ge=0, description="how long shutdown waits to flush the WAL")


class WriterMetrics(BaseModel):
    inserted_spans: int = 0
    inserted_segments: int = 0
    insert_failures: int = 0
    last_error: str = ""


class BatchWriter:
    """A background thread: take the oldest sealed segment, normalize, insert, forget it."""

    def __init__(self, wal: WriteAheadLog, store: Store, normalizer: Normalizer, config: WriterConfig | None = None):
        self.wal = wal
        self.store = store
        self.normalizer = normalizer
        self.config = config or WriterConfig()
        self.metrics = WriterMetrics()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="flightrec-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = self.config.retry_initial_s
        while not self._stop.is_set():
            segment = self.wal.next_sealed(timeout=0.1)
            if segment is None:
                continue
            if self.write_segment(segment):
                backoff = self.config.retry_initial_s
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.retry_max_s)

    def build_batch(self, segment: Segment) -> SpanBatch:
        batch = SpanBatch()
        for payload in self.wal.read_segment(segment):
            self.normalizer.normalize_request(decode_protobuf(payload), batch)
        return batch

    def write_segment(self, segment: Segment) -> bool:
        """Insert one segment; False (and the segment kept for a retry) if the store refused it."""
        try:
            batch = self.build_batch(segment)
            self.store.insert_batch(batch, dedup_token=segment.token)
        except Exception as exc:  # the store may be down; the segment stays on disk
            self.metrics.insert_failures += 1
            self.metrics.last_error = str(exc)[:500]
            log.error("writer: segment %s not inserted, will retry: %s", segment.token, exc)
            return False
        self.wal.complete(segment)
        self.metrics.inserted_spans += batch.span_count
        self.metrics.inserted_segments += 1
        return True

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
        """Stop intake into the store: flush what is durable, stop the thread; safe twice."""
        if self._thread is None:
            return
        self.flush()
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
