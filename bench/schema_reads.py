"""Schema reads benchmark (issue 13, deliverable 4): the reads other tools make, with and without the tool schema.

On bench/story.py's cached store of fleet spans (built here if missing, the same way), in process:

- a trace search by service and time window (root spans, newest first, 100) and a per-span-name count
  over the same window, with the ``by_service_time`` projection (migration 0022) and without it
  (``optimize_use_projections = 0``: the plan the table had before 0022);
- trace lookups: the story's read of one trace (``Store.trace_spans``), and Grafana's OTel-mode read
  through ``otel_traces_trace_id_ts`` (migration 0023) with and without the projection allowed (a
  trace lookup must keep the table's key: tests/test_tool_schema.py checks the plan);
- the story's store read of an object (``Store.object_spans``, the latest 50 runs);
- an attribute filter (``SpanAttributes[key] = value``) with the map bloom filters and without them
  (``use_skip_indexes = 0``);
- what the projection, the bloom filters and the lookup table cost on disk, and what building the
  projection and the filters over the stored spans costs (dropped and built again, synchronously).

ClickHouse's query condition cache is off for every timed read (a repeated filter would be answered from it).

    python bench/schema_reads.py                   # 1,000,000 spans (bench/out/story-store-1000000)
    python bench/schema_reads.py --spans 200000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402
from bench.story import OUT, RUNS, build_store, pct, timed  # noqa: E402
from flightrec.store import ObjectRef, StoreConfig, open_store  # noqa: E402
from flightrec.store.tool_reads import BLOOM_INDEXES  # noqa: E402

NO_CACHE = {"use_query_condition_cache": 0}
WITHOUT_PROJECTION = {**NO_CACHE, "optimize_use_projections": 0}
WITHOUT_SKIP_INDEXES = {**NO_CACHE, "use_skip_indexes": 0}


def line(label: str, values: list[float]) -> dict:
    figures = {"n": len(values), "p50": round(pct(values, 50), 1), "p95": round(pct(values, 95), 1)}
    print(f"  {label:58s} n={figures['n']:4d}  p50 {figures['p50']:8.1f}  p95 {figures['p95']:8.1f} ms")
    return figures


def paired(label: str, calls: list[tuple[Callable[[], object], Callable[[], object]]]) -> dict:
    """Time each (with, without) pair back to back, alternating which goes first; both must answer alike."""
    with_ms, without_ms = [], []
    for index, (with_call, without_call) in enumerate(calls):
        order = [(with_call, with_ms), (without_call, without_ms)]
        answers = []
        for call, bucket in (order if index % 2 == 0 else order[::-1]):
            ms, answer = timed(call)
            bucket.append(ms)
            answers.append(answer)
        assert answers[0] == answers[1], f"{label}: the two plans answered differently"
    print(label)
    return {"with": line("with", with_ms), "without": line("without", without_ms)}


def service_windows(store, seed: int, count: int) -> list[tuple[str, int, int]]:
    """(service, since, until) windows: per service, 1 hour and 10% of its time range, ending at random points."""
    rng = random.Random(seed)
    windows = []
    services = sorted(store.tool_reads.services(), key=lambda s: -s.spans)
    for index in range(count):
        service = services[index % len(services)]
        span = max(service.last_ns - service.first_ns, 1)
        width = 3600 * 10**9 if index % 2 == 0 else max(span // 10, 1)
        until = service.first_ns + width + int(rng.random() * max(span - width, 0))
        windows.append((service.service, until - width, until))
    return windows


def sample_traces(store, count: int) -> list[str]:
    per_prefix = max(1, count // 16)
    traces = [trace for prefix in "0123456789abcdef" for trace in store.find_traces(id_prefix=prefix, limit=per_prefix)]
    return traces[:count]


def attribute_filters(store, objects: list[ObjectRef], count: int) -> list[tuple[str, str]]:
    """(key, value) pairs that name one object: the attribute on its spans whose value is its id."""
    found = []
    for obj in objects:
        for span in store.object_spans(obj=obj, runs=1):
            keys = [key for key, value in span.attributes.items() if value == obj.id]
            if keys:
                found.append((keys[0], obj.id))
                break
        if len(found) >= count:
            break
    return found


def build_cost(store) -> dict:
    """Build the projection and the bloom filters again over every stored span, synchronously: what
    migration 0022 costs a store that holds spans (in this process: chDB's threads count)."""
    costs = {}
    spans = store.stats().spans
    for what in ("bloom filters", "projection"):
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        store.tool_reads.rebuild_tool_schema(what)
        cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        costs[what] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cpu_us_per_span": round(cpu / spans * 1e6, 2)}
        print(f"  build the {what:14s} {wall:6.1f} s wall, {cpu:6.1f} s CPU, {cpu / spans * 1e6:5.2f} µs CPU a span")
    return costs


def measure(store, args: argparse.Namespace, results: dict) -> None:
    """Every timed read, with and without the tool schema."""
    reads = store.tool_reads
    windows = service_windows(store, args.seed, args.reads)
    results["service_roots"] = paired("trace search: a service's root spans in a window, newest 100", [
        (lambda w=w: reads.service_roots(service=w[0], since_ns=w[1], until_ns=w[2], settings=NO_CACHE),
         lambda w=w: reads.service_roots(service=w[0], since_ns=w[1], until_ns=w[2], settings=WITHOUT_PROJECTION))
        for w in windows])
    results["service_counts"] = paired("dashboard panel: a service's spans per name in a window", [
        (lambda w=w: reads.service_span_counts(service=w[0], since_ns=w[1], until_ns=w[2], settings=NO_CACHE),
         lambda w=w: reads.service_span_counts(service=w[0], since_ns=w[1], until_ns=w[2],
                                               settings=WITHOUT_PROJECTION))
        for w in windows])

    traces = sample_traces(store, args.reads)
    lookup_ms = [timed(lambda t=t: store.trace_spans(trace_id=t))[0] for t in traces]
    missing = [trace for trace in traces if not reads.trace_by_lookup(trace_id=trace)]
    assert not missing, f"{len(missing)} traces not found through the lookup table, e.g. {missing[0]}"
    results["trace_grafana"] = paired("trace by id, Grafana's OTel-mode read (lookup table, then spans)", [
        (lambda t=t: reads.trace_by_lookup(trace_id=t, settings=NO_CACHE),
         lambda t=t: reads.trace_by_lookup(trace_id=t, settings=WITHOUT_PROJECTION)) for t in traces])
    print("trace lookup: Store.trace_spans (the story's read of a trace)")
    results["trace_spans"] = line("default settings", lookup_ms)

    objects = [ObjectRef(type=o.type, id=o.id) for o in store.recent_objects(limit=args.reads)]
    print("story read: Store.object_spans, latest 50 runs")
    results["object_spans"] = line("default settings", [timed(lambda o=o: store.object_spans(obj=o, runs=RUNS))[0]
                                                        for o in objects])

    filters = attribute_filters(store, objects, args.reads)
    results["attribute_filter"] = paired(f"attribute filter: SpanAttributes[key] = value ({len(filters)} objects' ids)", [
        (lambda f=f: reads.spans_with_attribute(key=f[0], value=f[1], settings=NO_CACHE),
         lambda f=f: reads.spans_with_attribute(key=f[0], value=f[1], settings=WITHOUT_SKIP_INDEXES))
        for f in filters])

    if not args.no_build_cost:
        print("building the tool schema again over the stored spans (synchronous)")
        results["build_cost"] = build_cost(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in the store (bench/story.py's cache)")
    parser.add_argument("--seed", type=int, default=23, help="fleet and sampling seed (bench/story.py's)")
    parser.add_argument("--batch", type=int, default=50_000, help="spans per insert_batch when building")
    parser.add_argument("--reads", type=int, default=100, help="reads of each kind")
    parser.add_argument("--no-build-cost", action="store_true", help="skip building the projection and filters again")
    parser.add_argument("--build-cost-only", action="store_true", help="only the disk and build figures")
    args = parser.parse_args()

    root = OUT / f"story-store-{args.spans}"
    if not (root / "build.json").exists():
        info = build_store(root, args.spans, args.seed, args.batch)
        print(f"store: built {root} in {info['build_seconds']}s")
    print(f"machine: {machine()}")
    store = open_store(StoreConfig(dsn=f"chdb://{root / 'data'}", retention_days=0))
    results: dict = {"spans": args.spans, "machine": machine()}
    try:
        reads = store.tool_reads
        storage = reads.storage()
        results["storage"] = storage.model_dump()
        projection = sum(storage.projection_bytes.values())
        indexes = sum(size for name, size in storage.index_bytes.items() if name in BLOOM_INDEXES)
        print(f"otel_traces: {storage.spans:,} rows, {storage.spans_bytes / 2**20:.1f} MiB on disk, of it the projection "
              f"{projection / 2**20:.1f} MiB ({projection / storage.spans_bytes:.1%}), the four bloom filters "
              f"{indexes / 2**20:.1f} MiB ({indexes / storage.spans_bytes:.1%}); lookup table "
              f"{storage.lookup_bytes / 2**20:.1f} MiB")

        if args.build_cost_only:
            results["build_cost"] = build_cost(store)
        else:
            measure(store, args, results)
    finally:
        store.close()
    out = OUT / f"schema-{'build' if args.build_cost_only else 'reads'}-{args.spans}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
