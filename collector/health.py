"""Is intake healthy? One judgement from the WAL, the writer and the quarantine.

``failing``: the record is not being kept (writer dead or stuck, WAL disk refusing,
backlog full). ``degraded``: it is kept, but something needs a person (the head
segment keeps failing, or segments are being quarantined one after another).
Both answer 503 at ``/api/health`` so orchestrators and probes notice; a single
quarantined segment is reported without flipping health, since intake still works.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from flightrec.collector.pipeline import IngestPipeline
from flightrec.collector.quarantine import QuarantineSummary
from flightrec.collector.wal import WriteAheadLog
from flightrec.collector.writer import BatchWriter

QUARANTINE_WINDOW_S = 600.0


class HealthPolicy(BaseModel):
    writer_stuck_after_s: float = Field(default=60.0, gt=0, description="head segment failing this long: failing")
    writer_slow_after_s: float = Field(default=10.0, gt=0, description="head segment failing this long: degraded")
    quarantine_alarm_segments: int = Field(default=3, ge=1, description="quarantined within the window: degraded")


class IngestHealth(BaseModel):
    status: Literal["ok", "degraded", "failing"]
    problems: list[str]
    quarantine: QuarantineSummary


def assess(
    pipeline: IngestPipeline, wal: WriteAheadLog, writer: BatchWriter, policy: HealthPolicy | None = None
) -> IngestHealth:
    policy = policy or HealthPolicy()
    now = time.time()
    failing: list[str] = []
    degraded: list[str] = []
    metrics = writer.metrics
    if not writer.alive:
        failing.append("the writer is not running: acknowledged spans are not reaching the store")
    failing_since = metrics.failing_since  # read once: the writer thread may reset it meanwhile
    if failing_since:
        stuck_s = now - failing_since
        message = f"the writer has failed to insert for {stuck_s:.0f} s ({metrics.head_attempts} attempts): {metrics.last_error}"
        if stuck_s >= policy.writer_stuck_after_s:
            failing.append(message)
        elif stuck_s >= policy.writer_slow_after_s:
            degraded.append(message)
    if pipeline.metrics.wal_failing_since:
        failing.append(f"the WAL refuses new batches: {pipeline.metrics.last_wal_error}")
    if wal.backlog_spans >= wal.config.max_backlog_spans:
        failing.append(f"the backlog is full ({wal.backlog_spans} spans): intake answers 503")
    summary = writer.quarantine.summary(QUARANTINE_WINDOW_S)
    if summary.recent_segments >= policy.quarantine_alarm_segments:
        degraded.append(
            f"{summary.recent_segments} segments quarantined in the last {QUARANTINE_WINDOW_S / 60:.0f} minutes "
            "(see /api/quarantine)"
        )
    status = "failing" if failing else "degraded" if degraded else "ok"
    return IngestHealth(status=status, problems=failing + degraded, quarantine=summary)
