"""What the writer's per-segment work costs on a growing store: prepare, the insert-once identity check, insert.

Fleet spans in 10k-span segments, prepared in this process (as a writer worker would) and inserted
into an embedded store one after another, so each identity check reads a store that already
holds the earlier segments. Prints milliseconds per segment and µs per span for each step.

    python bench/writer_identity.py --spans 200000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fleet_requests, machine  # noqa: E402
from flightrec.collector.prepare import SegmentPreparer  # noqa: E402
from flightrec.collector.wal import WalRecord  # noqa: E402
from flightrec.store import StoreConfig, open_store  # noqa: E402

# The check runs in the store owner's thread beside the insert: keep it a small share of it
# (a ratio within one run, so the figure holds on a noisy machine).
IDENTITY_TARGET_SHARE = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000, help="fleet spans in all")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flightrec-identity-"))
    store = open_store(StoreConfig(dsn=f"chdb://{root}/data", database="bench", retention_days=0))
    preparer = SegmentPreparer(store.insert_types())
    requests = fleet_requests(args.spans, per_request=512)
    segments = [requests[index:index + 20] for index in range(0, len(requests), 20)]
    spent = {"prepare": 0.0, "identity check": 0.0, "insert": 0.0}
    spans = 0
    for number, segment in enumerate(segments):
        started = time.perf_counter()
        prepared = preparer.prepare_records([WalRecord(spans=0, payload=payload) for payload in segment])
        checked = time.perf_counter()
        store.stored_span_hashes(trace_ids=sorted({trace for trace, _, _ in prepared.span_keys}))
        inserting = time.perf_counter()
        store.insert_prepared(prepared)
        done = time.perf_counter()
        spent["prepare"] += checked - started
        spent["identity check"] += inserting - checked
        spent["insert"] += done - inserting
        spans += prepared.spans
    store.close()
    print(f"machine: {machine()}; {spans} spans in {len(segments)} segments")
    for step, seconds in spent.items():
        print(f"{step:15s} {seconds / len(segments) * 1000:7.1f} ms per segment, {seconds / spans * 1e6:6.2f} us per span")
    share = spent["identity check"] / spent["insert"]
    print(f"identity check / insert = {share:.2f} (target <= {IDENTITY_TARGET_SHARE}: "
          f"{'met' if share <= IDENTITY_TARGET_SHARE else 'MISSED'})")


if __name__ == "__main__":
    main()
