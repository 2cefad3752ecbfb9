"""Segment preparation: WAL segment file in, Native-encoded batch out.

A plain function of its inputs so it runs in a worker process: decoding and
normalizing is where ingest spends its Python time, and worker processes put
it on every core while the store owner only hands bytes to ClickHouse.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from collector.decode import decode_protobuf
from collector.normalize import NormalizeConfig, Normalizer
from collector.wal import read_payloads
from store import SpanBatch
from store.models import LINK_COLUMN_NAMES, SPAN_COLUMN_NAMES
from store.native import NativeEncoder, PreparedBatch


class SegmentPreparer:
    """Decodes, normalizes and encodes segments for one store's insert types."""

    def __init__(self, config: NormalizeConfig, insert_types: dict[str, list[str]]) -> None:
        self.normalizer = Normalizer(config)
        self.spans = NativeEncoder(SPAN_COLUMN_NAMES, insert_types["otel_traces"])
        self.links = NativeEncoder(LINK_COLUMN_NAMES, insert_types["object_links"])

    def normalize(self, path: Path) -> SpanBatch:
        batch = SpanBatch()
        for payload in read_payloads(path):
            self.normalizer.normalize_request(decode_protobuf(payload), batch)
        return batch

    def prepare(self, path: Path) -> PreparedBatch:
        batch = self.normalize(path)
        return PreparedBatch(
            spans=batch.span_count,
            links=batch.link_count,
            span_native=self.spans.encode(batch.span_columns()),
            link_native=self.links.encode(batch.link_columns()),
        )


_worker_preparer: SegmentPreparer | None = None


def _exit_with_parent(parent: int) -> None:
    """A worker outlives a killed server otherwise (it never sees its pipe close)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def init_worker(config_json: str, insert_types: dict[str, list[str]]) -> None:
    """Process-pool initializer: build this worker's preparer once; die with the parent."""
    global _worker_preparer
    _worker_preparer = SegmentPreparer(NormalizeConfig.model_validate_json(config_json), insert_types)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def prepare_in_worker(path: str) -> PreparedBatch:
    assert _worker_preparer is not None, "init_worker was not run in this process"
    return _worker_preparer.prepare(Path(path))
