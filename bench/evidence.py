"""The evidence log's cost: sequencing stored spans (spans/s, CPU per 1,000 spans), proof latency, verify --store.

Fleet spans (as received, ``RowBuilder``) are inserted into an embedded store; the sequencer then
appends them all as leaves (in-process, so the CPU figure covers Python's hashing *and* the
embedded engine's reads and inserts). Then a checkpoint is signed and random inclusion proofs and
consistency proofs are timed, and the whole store is verified once.

    .venv/bin/python bench/evidence.py --spans 200000
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from bench.common import fleet_requests, machine  # noqa: E402
from flightrec.collector.rows import RowBuilder  # noqa: E402
from flightrec.evidence import keys, proofs  # noqa: E402
from flightrec.evidence.log_verify import verify_store  # noqa: E402
from flightrec.evidence.sequencer import Sequencer, SequencerConfig  # noqa: E402
from flightrec.store import SpanBatch, StoreConfig, open_store  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000, help="fleet spans to sequence")
    parser.add_argument("--batch", type=int, default=50_000, help="leaves per append (the sequencer's default)")
    parser.add_argument("--proofs", type=int, default=200, help="inclusion proofs to time")
    args = parser.parse_args()
    print(f"machine: {machine()}  load: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as root:
        store = open_store(StoreConfig(dsn=f"chdb://{root}/data", retention_days=0))
        key = keys.load_or_create(Path(root) / "key.pem")
        try:
            builder = RowBuilder()
            for index, body in enumerate(fleet_requests(args.spans)):
                batch = SpanBatch()
                builder.request_rows(ExportTraceServiceRequest.FromString(body), batch)
                store.insert_batch(batch, f"bench-{index}")
            stored = store.stats().spans
            sequencer = Sequencer(store, key, SequencerConfig(batch=args.batch, checkpoint_interval_s=0))
            start_cpu, start = cpu(), time.perf_counter()
            done = sequencer.run_once()
            took, used = time.perf_counter() - start, cpu() - start_cpu
            print(f"sequenced:           {done:,} of {stored:,} stored spans in {took:.1f} s = {done / took:,.0f} spans/s; "
                  f"CPU {used / done * 1e6:.1f} µs a span = {used / done * 1000 * 1000:.0f} ms per 1,000 spans")
            start = time.perf_counter()
            first, _ = sequencer.checkpoint(sequence=False)
            print(f"checkpoint:          signed {first.size:,} leaves in {(time.perf_counter() - start) * 1000:.1f} ms")
            leaves = store.evidence.span_leaves(low="", high=None)
            rng = random.Random(11)
            timings = []
            for leaf in rng.sample(leaves, min(args.proofs, len(leaves))):
                start = time.perf_counter()
                proofs.span_inclusion(store.evidence, leaf.trace_id, leaf.span_id, None)
                timings.append((time.perf_counter() - start) * 1000)
            print(f"inclusion proof:     p50 {statistics.median(timings):.1f} ms, p95 {percentile(timings, 0.95):.1f} ms "
                  f"({len(timings)} random spans, tree of {first.size:,})")
            old = first.size // 2 + 1
            store.evidence.add_checkpoint(first.model_copy(update={"size": old}))  # a size to prove from (unsigned)
            timings = []
            for _ in range(20):
                start = time.perf_counter()
                proofs.consistency(store.evidence, old, first.size)
                timings.append((time.perf_counter() - start) * 1000)
            print(f"consistency proof:   p50 {statistics.median(timings):.1f} ms ({old:,} -> {first.size:,})")
            start_cpu, start = cpu(), time.perf_counter()
            verdict = verify_store(store, key.public_raw)
            print(f"verify --store:      {'intact' if verdict.ok else 'BROKEN'}, {verdict.leaves:,} leaves and "
                  f"{verdict.spans_checked:,} spans in {time.perf_counter() - start:.1f} s "
                  f"(CPU {(cpu() - start_cpu) / max(1, verdict.leaves) * 1e6:.1f} µs a leaf)")
        finally:
            store.close()


if __name__ == "__main__":
    main()
