"""The write-ahead log: a batch is acknowledged only once it is on disk.

Segments are files ``<seq>-<instance>.wal`` holding records
``magic | length | items | crc32 | payload`` (payload: a serialized
ExportTraceServiceRequest, magic ``FRW1``, or ExportLogsServiceRequest, magic ``FRL1``;
items: its spans or log records). Appends go to the active segment and are fsynced
before returning. The writer takes sealed segments oldest first, inserts each
with its file name as the deduplication token and deletes it. A crash leaves at
most a torn tail on the active segment, which was never acknowledged and is cut
off at reopen; every other segment is replayed whole, so the same token makes
the replay insert nothing twice.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

MAGIC = b"FRW1"  # a trace request
MAGIC_BY_SIGNAL = {"traces": MAGIC, "logs": b"FRL1"}
SIGNAL_BY_MAGIC = {magic: signal for signal, magic in MAGIC_BY_SIGNAL.items()}
HEADER = struct.Struct("<4sIII")  # magic, payload length, span count, crc32


class WalRecord(BaseModel):
    """One acknowledged batch: its item count (spans or log records), its serialized request, its signal."""

    spans: int
    payload: bytes
    signal: str = "traces"


def read_records(path: Path) -> list[WalRecord]:
    """The records of a segment file, in order, up to the first torn or corrupt record."""
    records: list[WalRecord] = []
    with path.open("rb") as handle:
        data = handle.read()
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, length, spans, crc = HEADER.unpack_from(data, offset)
        payload = data[offset + HEADER.size : offset + HEADER.size + length]
        if magic not in SIGNAL_BY_MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
            break
        records.append(WalRecord(spans=spans, payload=payload, signal=SIGNAL_BY_MAGIC[magic]))
        offset += HEADER.size + length
    return records


def read_payloads(path: Path) -> list[bytes]:
    """The payloads of a segment file, in order, up to the first torn or corrupt record."""
    return [record.payload for record in read_records(path)]


def encode_record(payload: bytes, spans: int, signal: str = "traces") -> bytes:
    return HEADER.pack(MAGIC_BY_SIGNAL[signal], len(payload), spans, zlib.crc32(payload)) + payload


def write_segment_file(path: Path, records: list[WalRecord]) -> None:
    """Write records as a segment file, durably (temp file, fsync, rename)."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("wb") as handle:
        for record in records:
            handle.write(encode_record(record.payload, record.spans, record.signal))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class BacklogFull(Exception):
    """The backlog is at its bound: the batch was not written."""

    def __init__(self, backlog: int) -> None:
        super().__init__(f"backlog full at {backlog} spans")
        self.backlog = backlog


class WalConfig(BaseModel):
    """Where the WAL lives and its bounds."""

    directory: Path = Field(default=Path(".flightrec/wal"), description="segment directory")
    fsync: bool = Field(default=True, description="fsync every append before acknowledging")
    segment_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="seal a segment past this size")
    segment_max_spans: int = Field(default=10_000, ge=1, description="seal a segment past this many spans")
    seal_after_s: float = Field(default=0.2, gt=0, description="seal a non-empty segment this old")
    max_backlog_spans: int = Field(
        default=400_000, ge=1, description="spans on disk not yet inserted before intake answers 503"
    )


class Segment(BaseModel):
    """A sealed segment waiting to be inserted."""

    path: Path
    seq: int
    spans: int
    bytes: int = 0

    @property
    def token(self) -> str:
        return self.path.stem


class WriteAheadLog:
    """Durable, bounded queue of OTLP batches between intake and the batch writer."""

    def __init__(self, config: WalConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._instance = uuid.uuid4().hex[:12]
        self._sealed: deque[Segment] = deque()
        self._active: BinaryIO | None = None
        self._active_path: Path | None = None
        self._active_spans = 0
        self._active_bytes = 0
        self._active_since = 0.0
        self._next_seq = 0
        self._backlog = 0
        self._sealed_bytes = 0
        self._closed = False
        self._recover()

    # -- recovery ------------------------------------------------------------------

    def _recover(self) -> None:
        """Cut torn tails, seal every segment left from before, count the backlog."""
        self.config.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.config.directory.glob("*.wal.tmp"):
            leftover.unlink()  # a replay interrupted before its rename: the original is still quarantined
        found = sorted(self.config.directory.glob("*.wal"), key=lambda p: (int(p.stem.split("-")[0]), p.name))
        for path in found:
            spans, good_bytes = self._scan(path)
            if good_bytes < path.stat().st_size:
                log.warning("wal: cutting a torn tail of %s at byte %d", path.name, good_bytes)
                with path.open("r+b") as handle:
                    handle.truncate(good_bytes)
                    os.fsync(handle.fileno())
            seq = int(path.stem.split("-")[0])
            self._next_seq = max(self._next_seq, seq + 1)
            if spans == 0:
                path.unlink()
                continue
            self._sealed.append(Segment(path=path, seq=seq, spans=spans, bytes=good_bytes))
            self._backlog += spans
            self._sealed_bytes += good_bytes

    @staticmethod
    def _scan(path: Path) -> tuple[int, int]:
        """(spans, bytes) of the valid records at the start of a segment."""
        spans = offset = 0
        with path.open("rb") as handle:
            while True:
                header = handle.read(HEADER.size)
                if len(header) < HEADER.size:
                    return spans, offset
                magic, length, count, crc = HEADER.unpack(header)
                payload = handle.read(length)
                if magic not in SIGNAL_BY_MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
                    return spans, offset
                spans += count
                offset += HEADER.size + length

    # -- intake --------------------------------------------------------------------

    @property
    def backlog_spans(self) -> int:
        """Spans acknowledged but not yet inserted."""
        return self._backlog

    @property
    def backlog_bytes(self) -> int:
        """Bytes on disk of what is acknowledged but not yet inserted."""
        return self._sealed_bytes + (self._active_bytes if self._active is not None else 0)

    def append(self, payload: bytes, spans: int, signal: str = "traces") -> None:
        """Write one batch and make it durable.

        Raises :class:`BacklogFull` past ``max_backlog_spans`` (checked under the same
        lock as the write, so concurrent requests cannot overshoot) and OSError if the
        disk refuses the batch.
        """
        record = encode_record(payload, spans, signal)
        with self._lock:
            if self._closed:
                raise OSError("the write-ahead log is closed")
            if self._backlog + spans > self.config.max_backlog_spans:
                raise BacklogFull(self._backlog)
            if self._active is None:
                self._open_segment()
            assert self._active is not None
            start = self._active_bytes
            try:
                view = memoryview(record)
                while view:  # unbuffered: nothing refused can linger in a buffer and reach the disk later
                    view = view[self._active.write(view):]
                if self.config.fsync:
                    os.fsync(self._active.fileno())
            except OSError:
                self._cut_back(start)
                raise
            self._active_bytes += len(record)
            self._active_spans += spans
            self._backlog += spans
            if self._active_bytes >= self.config.segment_max_bytes or self._active_spans >= self.config.segment_max_spans:
                self._seal_locked()

    def _cut_back(self, good_bytes: int) -> None:
        """Undo a failed append; if even that fails, seal what was acknowledged and start a new segment."""
        assert self._active is not None
        try:
            os.ftruncate(self._active.fileno(), good_bytes)
            self._active.seek(good_bytes)
        except OSError as exc:
            log.error("wal: could not cut a failed append off %s (%s); sealing it", self._active_path, exc)
            self._seal_locked()  # recovery and read_records stop at the torn tail: acknowledged records stay

    def _open_segment(self) -> None:
        path = self.config.directory / f"{self._next_seq:020d}-{self._instance}.wal"
        self._next_seq += 1
        self._active = path.open("ab", buffering=0)
        self._active_path = path
        self._active_spans = self._active_bytes = 0
        self._active_since = time.monotonic()

    def _seal_locked(self) -> None:
        if self._active is None or self._active_path is None:
            return
        self._active.close()
        seq = int(self._active_path.stem.split("-")[0])
        if self._active_spans:
            self._sealed.append(Segment(path=self._active_path, seq=seq, spans=self._active_spans,
                                        bytes=self._active_bytes))
            self._sealed_bytes += self._active_bytes
            self._ready.notify_all()
        else:
            self._active_path.unlink(missing_ok=True)
        self._active = None
        self._active_path = None

    # -- the writer's side ------------------------------------------------------------

    def next_sealed(self, timeout: float) -> Segment | None:
        """The oldest sealed segment, sealing the active one once it is old enough."""
        found = self.sealed_segments(1, timeout)
        return found[0] if found else None

    def sealed_segments(self, limit: int, timeout: float) -> list[Segment]:
        """Up to ``limit`` oldest sealed segments (not removed), waiting up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if self._sealed:
                    return [self._sealed[index] for index in range(min(limit, len(self._sealed)))]
                now = time.monotonic()
                if self._active is not None and self._active_spans and now - self._active_since >= self.config.seal_after_s:
                    self._seal_locked()
                    continue
                remaining = deadline - now
                if remaining <= 0:
                    return []
                wait = remaining
                if self._active is not None and self._active_spans:
                    wait = min(wait, max(0.005, self.config.seal_after_s - (now - self._active_since)))
                self._ready.wait(wait)

    def seal_now(self) -> None:
        """Seal the active segment at once (shutdown, tests)."""
        with self._lock:
            self._seal_locked()

    @staticmethod
    def read_segment(segment: Segment) -> list[bytes]:
        """The payloads of a sealed segment, in order."""
        return read_payloads(segment.path)

    def adopt(self, records: list[WalRecord]) -> Segment:
        """Queue records again as a new sealed segment (a quarantined segment replayed).

        Not bounded by ``max_backlog_spans``: an operator asked for it, and the spans were
        acknowledged long ago.
        """
        spans = sum(record.spans for record in records)
        with self._lock:
            if self._closed:
                raise OSError("the write-ahead log is closed")
            seq = self._next_seq
            self._next_seq += 1
            path = self.config.directory / f"{seq:020d}-{self._instance}.wal"
            write_segment_file(path, records)
            segment = Segment(path=path, seq=seq, spans=spans, bytes=path.stat().st_size)
            self._sealed.append(segment)
            self._backlog += spans
            self._sealed_bytes += segment.bytes
            self._ready.notify_all()
        return segment

    def complete(self, segment: Segment) -> None:
        """The segment is in the store: forget it."""
        with self._lock:
            if segment in self._sealed:
                self._sealed.remove(segment)
                self._backlog -= segment.spans
                self._sealed_bytes -= segment.bytes
        segment.path.unlink(missing_ok=True)

    def oldest_pending(self) -> Segment | None:
        """The segment the writer is working on, if any."""
        with self._lock:
            return self._sealed[0] if self._sealed else None

    def pending_segments(self) -> int:
        with self._lock:
            return len(self._sealed) + (1 if self._active is not None and self._active_spans else 0)

    def close(self) -> None:
        """Seal what is open and refuse further appends; safe to call twice."""
        with self._lock:
            self._seal_locked()
            self._closed = True
            self._ready.notify_all()
