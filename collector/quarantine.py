"""Quarantine: WAL records the store refused for what they carry, kept aside, not retried forever.

A record lands here only after the writer failed to insert it for a reason that
will not go away on retry (the engine rejected the data itself), so one bad batch
never stops the record for everyone. Each quarantined segment is a file in the WAL
record format plus a JSON note saying why; an operator lists them and replays
them (``flightrec wal replay``) once the cause is fixed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from flightrec.collector.wal import WalRecord, read_records, write_segment_file

NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,120}$")


class QuarantinedSegment(BaseModel):
    """What was set aside, and why."""

    segment: str = Field(description="name to replay it by")
    spans: int
    bytes: int
    reason: str = Field(description="the store's answer to the last attempt")
    attempts: int = Field(description="inserts tried before it was set aside")
    quarantined_at: datetime


class QuarantineSummary(BaseModel):
    segments: int = 0
    spans: int = 0
    bytes: int = 0
    recent_segments: int = Field(default=0, description="segments quarantined within the alarm window")


class UnknownSegment(KeyError):
    """No quarantined segment has this name."""


class Quarantine:
    """The quarantine directory of one WAL."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _paths(self, name: str) -> tuple[Path, Path]:
        if not NAME.match(name) or ".." in name:
            raise UnknownSegment(name)
        return self.directory / f"{name}.wal", self.directory / f"{name}.json"

    def add(self, name: str, records: list[WalRecord], reason: str, attempts: int) -> QuarantinedSegment:
        """Keep records aside durably under ``name`` (data first, then the note)."""
        data, note = self._paths(name)
        entry = QuarantinedSegment(
            segment=name,
            spans=sum(record.spans for record in records),
            bytes=sum(len(record.payload) for record in records),
            reason=reason[:2000],
            attempts=attempts,
            quarantined_at=datetime.now(tz=timezone.utc),
        )
        with self._lock:
            write_segment_file(data, records)
            note.write_text(entry.model_dump_json(), encoding="utf-8")
        return entry

    def entries(self) -> list[QuarantinedSegment]:
        """Everything quarantined, oldest first; a data file without its note still shows."""
        found: list[QuarantinedSegment] = []
        with self._lock:
            for data in sorted(self.directory.glob("*.wal")):
                found.append(self._entry(data))
        found.sort(key=lambda entry: (entry.quarantined_at, entry.segment))
        return found

    def _entry(self, data: Path) -> QuarantinedSegment:
        note = data.with_suffix(".json")
        try:
            return QuarantinedSegment.model_validate(json.loads(note.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            records = read_records(data)
            return QuarantinedSegment(
                segment=data.stem, spans=sum(r.spans for r in records), bytes=data.stat().st_size,
                reason="(note missing)", attempts=0,
                quarantined_at=datetime.fromtimestamp(data.stat().st_mtime, tz=timezone.utc),
            )

    def load(self, name: str) -> tuple[QuarantinedSegment, list[WalRecord]]:
        """A quarantined segment and its records (left in place until :meth:`remove`)."""
        data, _ = self._paths(name)
        with self._lock:
            if not data.exists():
                raise UnknownSegment(name)
            return self._entry(data), read_records(data)

    def remove(self, name: str) -> None:
        """Forget a segment once its records are queued again (so a crash in between loses nothing)."""
        data, note = self._paths(name)
        with self._lock:
            data.unlink(missing_ok=True)
            note.unlink(missing_ok=True)

    def summary(self, window_s: float) -> QuarantineSummary:
        entries = self.entries()
        since = time.time() - window_s
        return QuarantineSummary(
            segments=len(entries),
            spans=sum(entry.spans for entry in entries),
            bytes=sum(entry.bytes for entry in entries),
            recent_segments=sum(1 for entry in entries if entry.quarantined_at.timestamp() >= since),
        )
