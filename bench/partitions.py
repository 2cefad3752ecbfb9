"""Daily against monthly partitions (issue 13, migration 0029): what 180 days of parts cost the story's reads.

A trace lookup (``Store.trace_spans``) and an object's story read (``Store.object_spans``), both with
their log records (one GenAI event a trace), use the sort key, which every partition has: with daily
partitions a read looks into ~30 times the
partitions it did with monthly ones. This builds one embedded store whose spans are spread evenly
over 180 days (each trace within one day; a ticket per trace), through the writer's path
(``SegmentPreparer`` -> ``Store.insert_prepared``), merges it, times both reads for a fixed-seed
sample of traces and tickets (and the writer's identity read of a segment), then rebuilds the spans'
table with monthly partitions (the same rows)
and times the same sample again: the ratio is the cost of the daily key, from one run.

    python bench/partitions.py                  # 180,000 spans over 180 days
    python bench/partitions.py --spans 500000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: E402

from bench.common import machine  # noqa: E402
from bench.story import pct  # noqa: E402
from flightrec.collector.prepare import SegmentPreparer  # noqa: E402
from flightrec.collector.wal import WalRecord  # noqa: E402
from flightrec.store import ObjectRef, StoreConfig, open_store  # noqa: E402
from tests.monthly_partitions import rebuild_by_month  # noqa: E402
from tests.otlp_helpers import make_request, make_span  # noqa: E402

DAYS = 180
SPANS_PER_TRACE = 10
DAY_NS = 86_400 * 10**9


def insert(store, preparer: SegmentPreparer, spans: list) -> None:  # noqa: ANN001
    """The spans, and a GenAI event log record for each root (the story reads them by trace)."""
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    for span in spans:
        if not span.parent_span_id:
            records.add(time_unix_nano=span.start_time_unix_nano, trace_id=span.trace_id, span_id=span.span_id,
                        event_name="gen_ai.choice", body={"string_value": "done"})
    store.insert_prepared(preparer.prepare_records([
        WalRecord(spans=len(spans), payload=make_request(spans).SerializeToString()),
        WalRecord(spans=len(records), payload=logs.SerializeToString(), signal="logs")]))


def fill(store, spans: int, seed: int) -> list[str]:  # noqa: ANN001
    """``spans`` spans in traces of ten over DAYS days; the traces' ids."""
    rng = random.Random(seed)
    preparer = SegmentPreparer(store.insert_types())
    now = time.time_ns() - DAY_NS
    traces, batch = [], []
    for number in range(spans // SPANS_PER_TRACE):
        trace = uuid.UUID(int=rng.getrandbits(128)).bytes
        start = now - (number % DAYS) * DAY_NS - rng.randrange(3600) * 10**9
        root = make_span("invoke_agent", {"ticket.id": f"TCK-{number}", "gen_ai.agent.name": "bench-agent"},
                         trace_id=trace, start_ns=start)
        batch += [root] + [make_span(f"step-{i}", {"gen_ai.operation.name": "chat"}, trace_id=trace,
                                     parent=root.span_id, start_ns=start + i * 10**6)
                           for i in range(1, SPANS_PER_TRACE)]
        traces.append(trace.hex())
        if len(batch) >= 20_000:
            insert(store, preparer, batch)
            batch = []
    if batch:
        insert(store, preparer, batch)
    for table in ("otel_traces", "otel_logs"):
        store.engine.command("bench_optimize", f"OPTIMIZE TABLE {store.db}.{table} FINAL")
    return traces


def partitions(store) -> tuple[int, int]:  # noqa: ANN001
    return store.engine.query("bench_parts", "SELECT uniqExact(partition_id), count() FROM system.parts "
                              "WHERE database = {db:String} AND table = 'otel_traces' AND active", {"db": store.db})[0]


def time_reads(store, sample: list[tuple[str, int]]) -> dict[str, list[float]]:  # noqa: ANN001
    """Per sampled trace: the trace read, the story read; per 100 of them, the writer's identity read of a
    segment of 1,000 new traces and those 100 (what a resend finds stored)."""
    out: dict[str, list[float]] = {"trace": [], "story": [], "writer": []}
    for start in range(0, len(sample) - 99, 100):
        segment = [uuid.uuid4().hex for _ in range(1000)] + [trace for trace, _ in sample[start:start + 100]]
        began = time.perf_counter()
        assert len(store.stored_span_hashes(trace_ids=segment)) == 100 * SPANS_PER_TRACE
        out["writer"].append((time.perf_counter() - began) * 1000)
    for trace, number in sample:
        began = time.perf_counter()
        assert any(span.events for span in store.trace_spans(trace_id=trace))
        out["trace"].append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        assert store.object_spans(obj=ObjectRef(type="ticket", id=f"TCK-{number}"), runs=50)
        out["story"].append((time.perf_counter() - began) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--spans", type=int, default=180_000)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as root:
        store = open_store(StoreConfig(dsn=f"chdb://{root}", retention_days=0))
        began = time.perf_counter()
        traces = fill(store, args.spans, args.seed)
        print(f"built {len(traces) * SPANS_PER_TRACE:,} spans over {DAYS} days in {time.perf_counter() - began:.0f} s")
        rng = random.Random(args.seed)
        sample = [(traces[i], i) for i in rng.sample(range(len(traces)), args.sample)]
        time_reads(store, sample[:20])  # warm the caches alike for both keys
        results = {}
        for key in ("daily", "monthly"):
            if key == "monthly":
                for table in ("otel_traces", "otel_logs"):
                    rebuild_by_month(store, table)
                    store.engine.command("bench_optimize", f"OPTIMIZE TABLE {store.db}.{table} FINAL")
                time_reads(store, sample[:20])
            count, parts = partitions(store)
            reads = time_reads(store, sample)
            results[key] = reads
            print(f"{key:8} {count:4} partitions, {parts:4} parts: trace read p50 {pct(reads['trace'], 50):6.1f} ms "
                  f"p95 {pct(reads['trace'], 95):6.1f} ms; story read p50 {pct(reads['story'], 50):6.1f} ms "
                  f"p95 {pct(reads['story'], 95):6.1f} ms; writer identity read (1,100 traces) median "
                  f"{pct(reads['writer'], 50):6.1f} ms")
        for read in ("trace", "story", "writer"):
            ratio = pct(results["daily"][read], 95) / pct(results["monthly"][read], 95)
            target = ("no target: unbounded by design, a resent span's first copy is found on any day"
                      if read == "writer" else "target: at most 1.2x, the story's p95 as with monthly partitions")
            print(f"{read} read p95, daily / monthly: {ratio:.2f}x ({target})")
        store.close()


if __name__ == "__main__":
    main()
