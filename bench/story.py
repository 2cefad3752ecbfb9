"""Story benchmark: the story of one object among >= 1,000,000 stored fleet spans.

Builds (once, cached under ``bench/out/story-store-<spans>``) an embedded store of fleet
spans, inserted in-process through the real code path (OTLP request -> RowBuilder ->
``Store.insert_batch``), then serves it with ``flightrec serve`` and measures, client-side
and sequentially, ``GET /api/objects/{type}/{id}/story`` for a fixed-seed sample of
objects (half from ``GET /api/objects?limit=1000``, half drawn from the whole population),
plus the spans, list and search routes for comparison. Finally it reopens the store in
this process and splits a story's time into the store queries, narration and JSON.

    python bench/story.py                 # 1,000,000 spans, reuses the cached store
    python bench/story.py --rebuild       # build the store again
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MonitoredServer, load_fleet_store, machine  # noqa: E402
from flightrec.demo.fleet import FleetConfig  # noqa: E402
from flightrec.stories import narrate  # noqa: E402
from flightrec.store import ObjectRef, StoreConfig, open_store  # noqa: E402
from flightrec.store.links import covered_spans  # noqa: E402
from flightrec.store.repository import SPAN_SELECT, _record_from_row  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
TARGET_P95_MS = 50.0
RUNS = 50  # the story route's default: the latest 50 runs of the object


# -- build ----------------------------------------------------------------------------


def build_store(root: Path, spans_target: int, seed: int, per_batch: int) -> dict:
    """Fill ``root/data`` with >= spans_target fleet spans; returns what was built."""
    workflows = math.ceil(spans_target / 10.0)  # ~10.8 spans per workflow: stops before the fleet runs out
    load = load_fleet_store(root, FleetConfig(workflows=workflows, seed=seed), per_batch, max_spans=spans_target)
    store = open_store(StoreConfig(dsn=f"chdb://{root / 'data'}", retention_days=0))
    try:
        disk = store.disk_bytes()
    finally:
        store.close()
    info = {
        "spans": load.spans, "links": load.links, "batches": load.batches, "workflows_config": workflows, "seed": seed,
        "insert_seconds": load.insert_seconds, "optimize_seconds": load.optimize_seconds,
        "build_seconds": round(load.insert_seconds + load.optimize_seconds, 1),
        "stage_seconds": load.stage_seconds, "disk_bytes": disk,
    }
    (root / "build.json").write_text(json.dumps(info, indent=2))  # written last: marks the store complete
    return info


# -- measuring ------------------------------------------------------------------------


def caught_up(url: str) -> None:
    """Wait until the evidence log has sequenced every stored span (a server's first start on a store built
    in process sequences all of it, which would otherwise compete with the requests measured)."""
    started = time.perf_counter()
    reply = httpx.post(f"{url}/api/evidence/checkpoints", json={}, timeout=3600)
    reply.raise_for_status()
    print(f"evidence log caught up in {time.perf_counter() - started:.1f}s "
          f"(checkpoint of {reply.json()['checkpoint']['size']:,} leaves)")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def summary(values_ms: list[float]) -> str:
    return (f"n={len(values_ms):4d}  p50 {pct(values_ms, 50):7.1f}  p95 {pct(values_ms, 95):7.1f}  "
            f"p99 {pct(values_ms, 99):7.1f}  max {max(values_ms):7.1f}  mean {sum(values_ms) / len(values_ms):7.1f} ms")


def timed(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1e3, result


def path_of(obj: tuple[str, str]) -> str:
    return f"/api/objects/{quote(obj[0], safe='')}/{quote(obj[1], safe='')}"


def population(store, seed: int, count: int) -> tuple[list[tuple[str, str]], dict]:
    """A fixed-seed random sample of every linked object, the heaviest objects, and run counts."""
    db = store.db
    sample = [
        (kind, ident) for kind, ident in store.engine.query(
            "bench_population_sample",
            f"SELECT ObjectType, ObjectId FROM {db}.object_links GROUP BY ObjectType, ObjectId "
            "ORDER BY cityHash64(ObjectType, ObjectId, {seed:UInt64}) LIMIT {n:UInt32}",
            {"seed": seed, "n": count},
        )
    ]
    per_object = store.engine.query(
        "bench_runs_per_object",
        f"SELECT ObjectType, count(), quantiles(0.5, 0.95, 0.99)(runs), max(runs) FROM ("
        f"SELECT ObjectType, ObjectId, uniqExact(TraceId) AS runs FROM {db}.object_links "
        "GROUP BY ObjectType, ObjectId) GROUP BY ObjectType ORDER BY ObjectType",
    )
    heaviest = [
        (kind, ident, runs) for kind, ident, runs in store.engine.query(
            "bench_heaviest",
            f"SELECT ObjectType, ObjectId, uniqExact(TraceId) AS runs FROM {db}.object_links "
            "GROUP BY ObjectType, ObjectId ORDER BY runs DESC, ObjectType, ObjectId LIMIT 5",
        )
    ]
    traces = store.engine.query("bench_traces", f"SELECT uniqExact(TraceId) FROM {db}.otel_traces")[0][0]
    return sample, {
        "runs_per_object": {kind: {"objects": n, "p50": q[0], "p95": q[1], "p99": q[2], "max": mx}
                            for kind, n, q, mx in per_object},
        "heaviest": heaviest, "traces": traces,
    }


def measure_http(url: str, api_sample: list[tuple[str, str]], pop_sample: list[tuple[str, str]],
                 spans_sample: list[tuple[str, str]], heaviest: list[tuple[str, str]],
                 warmup: list[tuple[str, str]], seed: int) -> dict:
    """Every object is asked for once per route: ClickHouse's query condition cache (on by
    default) makes a repeated read of the same traces faster, so the spans route runs on other
    objects than the story route, and the repeated story is reported apart."""
    results: dict = {}
    with httpx.Client(base_url=url, timeout=120) as api:
        for obj in warmup:
            api.get(path_of(obj) + "/story").raise_for_status()
            api.get(path_of(obj) + "/spans").raise_for_status()
        for _ in range(3):
            api.get("/api/objects", params={"limit": 50}).raise_for_status()
            api.get("/api/search", params={"q": "TCK-10"}).raise_for_status()

        objects = [("api", obj) for obj in api_sample] + [("population", obj) for obj in pop_sample]
        random.Random(seed).shuffle(objects)
        story_ms: dict[str, list[float]] = {"api": [], "population": []}
        steps, traces, runs_total, story_bytes = [], [], [], []
        for group, obj in objects:
            ms, reply = timed(lambda: api.get(path_of(obj) + "/story"))
            reply.raise_for_status()
            body = reply.json()
            story_ms[group].append(ms)
            steps.append(len(body["steps"]))
            traces.append(len(body["traces"]))
            runs_total.append(body["runs_total"])
            story_bytes.append(len(reply.content))
        results["story"] = story_ms
        results["story_shape"] = {"steps": steps, "traces": traces, "runs_total": runs_total, "bytes": story_bytes}

        results["story_repeat"] = [
            timed(lambda: api.get(path_of(obj) + "/story").raise_for_status())[0] for _, obj in objects[:100]
        ]

        spans_ms, span_counts = [], []
        for obj in spans_sample:
            ms, reply = timed(lambda: api.get(path_of(obj) + "/spans"))
            reply.raise_for_status()
            spans_ms.append(ms)
            span_counts.append(len(reply.json()["spans"]))
        results["spans"] = spans_ms
        results["spans_count"] = span_counts

        heavy = []
        for obj in heaviest:
            story = [timed(lambda: api.get(path_of(obj) + "/story"))[0] for _ in range(3)]
            ms, reply = timed(lambda: api.get(path_of(obj) + "/spans"))
            heavy.append({"object": obj, "story_ms": story, "spans_ms": ms, "spans": len(reply.json()["spans"]),
                          "bytes": len(reply.content)})
        results["heaviest"] = heavy

        results["list50"] = [timed(lambda: api.get("/api/objects", params={"limit": 50}).raise_for_status())[0]
                             for _ in range(30)]
        results["list1000"] = [timed(lambda: api.get("/api/objects", params={"limit": 1000}).raise_for_status())[0]
                               for _ in range(10)]
        results["search"] = [timed(lambda: api.get("/api/search", params={"q": "TCK-10"}).raise_for_status())[0]
                             for _ in range(30)]
    return results


def measure_in_process(store, objects: list[tuple[str, str]], warmup: list[tuple[str, str]]) -> dict:
    """Each part of the story route, timed separately on the same objects."""
    parts: dict[str, list[float]] = {name: [] for name in (
        "object_anchors", "trace spans query (rows)", "rows -> SpanRecord", "covered_spans",
        "object_run_count", "narrate", "Story -> JSON", "total (route work, first read)",
        "object_spans again (condition cache warm)")}
    span_counts, rows_read = [], []
    db = store.db
    for index, (kind, ident) in enumerate(warmup + objects):
        obj = ObjectRef(type=kind, id=ident)
        # object_spans in pieces (a diagnostic copy of its statement), first read of the object.
        anchors_ms, anchors = timed(lambda: store.object_anchors(obj=obj, runs=RUNS))
        trace_ids = sorted({trace for trace, _ in anchors})
        query_ms, rows = timed(lambda: store.engine.query(
            "bench_object_trace_spans",
            f"SELECT {SPAN_SELECT} FROM {db}.otel_traces WHERE TraceId IN {{trace_ids:Array(String)}} "
            "ORDER BY Timestamp, SpanId LIMIT 1 BY TraceId, SpanId",
            {"trace_ids": trace_ids},
        ))
        convert_ms, records = timed(lambda: [_record_from_row(row) for row in rows])
        cover_ms, spans = timed(lambda: covered_spans(records, anchors))
        count_ms, runs_total = timed(lambda: store.object_run_count(obj=obj))
        narrate_ms, story = timed(lambda: narrate(obj, spans, runs_total=runs_total))
        json_ms, _ = timed(lambda: story.model_dump_json())
        again_ms, again = timed(lambda: store.object_spans(obj=obj, runs=RUNS))
        assert [(x.trace_id, x.span_id) for x in again] == [(x.trace_id, x.span_id) for x in spans]
        if index < len(warmup):
            continue
        total_ms = anchors_ms + query_ms + convert_ms + cover_ms + count_ms + narrate_ms + json_ms
        for name, ms in (("object_anchors", anchors_ms), ("trace spans query (rows)", query_ms),
                         ("rows -> SpanRecord", convert_ms), ("covered_spans", cover_ms),
                         ("object_run_count", count_ms), ("narrate", narrate_ms), ("Story -> JSON", json_ms),
                         ("total (route work, first read)", total_ms),
                         ("object_spans again (condition cache warm)", again_ms)):
            parts[name].append(ms)
        span_counts.append(len(spans))
        rows_read.append(len(rows))
    return {"parts": parts, "spans": span_counts, "rows": rows_read}


# -- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to store (whole workflows, at least)")
    parser.add_argument("--seed", type=int, default=23, help="fleet and sampling seed")
    parser.add_argument("--batch", type=int, default=50_000, help="spans per insert_batch")
    parser.add_argument("--sample", type=int, default=200, help="objects from GET /api/objects?limit=1000")
    parser.add_argument("--population", type=int, default=200, help="objects drawn from every linked object")
    parser.add_argument("--rebuild", action="store_true", help="build the store even if a cached one exists")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    root = OUT / f"story-store-{args.spans}"
    marker = root / "build.json"
    cached = marker.exists() and not args.rebuild
    if cached:
        info = json.loads(marker.read_text())
        print(f"store: cached {root} ({info['spans']:,} spans; built in {info['build_seconds']}s; --rebuild to redo)")
    else:
        info = build_store(root, args.spans, args.seed, args.batch)
        print(f"store: built {root} in {info['build_seconds']}s "
              f"(insert {info['insert_seconds']}s = {info['spans'] / info['insert_seconds']:,.0f} spans/s, "
              f"optimize {info['optimize_seconds']}s); stages: {info['stage_seconds']}")

    store = open_store(StoreConfig(dsn=f"chdb://{root / 'data'}", retention_days=0))
    try:
        drawn, shape = population(store, args.seed, 2 * args.population)
    finally:
        store.close()
    pop_sample, pop_spans = drawn[: args.population], drawn[args.population :]
    disk = info["disk_bytes"]
    print(f"stored: {info['spans']:,} spans, {shape['traces']:,} traces, {info['links']:,} links; disk "
          f"{disk.get('otel_traces', 0) / 2**20:.0f} MiB spans + {disk.get('object_links', 0) / 2**20:.0f} MiB links")
    print("runs (traces) per object, by type:")
    for kind, row in shape["runs_per_object"].items():
        print(f"  {kind:9s} {row['objects']:7,} objects  p50 {row['p50']:5.0f}  p95 {row['p95']:5.0f}  "
              f"p99 {row['p99']:5.0f}  max {row['max']:5d}")

    server = MonitoredServer(root, env={"FLIGHTREC_RETENTION_DAYS": "0"})
    started = time.perf_counter()
    server.start()
    print(f"server up in {time.perf_counter() - started:.1f}s at {server.url}")
    caught_up(server.url)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as api:
            stats = api.get("/api/stats").json()
            assert stats["spans"] == info["spans"], f"server sees {stats['spans']} of {info['spans']} spans"
            listed_ms, reply = timed(lambda: api.get("/api/objects", params={"limit": 1000}))
            listed = [(item["type"], item["id"]) for item in reply.raise_for_status().json()["items"]]
        rng = random.Random(args.seed)
        picked = rng.sample(listed, min(2 * args.sample, len(listed) - 10))
        api_sample, api_spans = picked[: len(picked) // 2], picked[len(picked) // 2 :]
        chosen = set(picked) | set(drawn)
        warmup = [obj for obj in listed if obj not in chosen][:10]
        heaviest = [(kind, ident) for kind, ident, _ in shape["heaviest"]]
        types = Counter(kind for kind, _ in api_sample + pop_sample)
        print(f"objects: {len(api_sample)} from /api/objects?limit=1000 (first call {listed_ms:.0f} ms) + "
              f"{len(pop_sample)} from the population; types {dict(sorted(types.items()))}")
        cpu_before = server.cpu_seconds()
        spans_sample = [obj for obj in api_spans + pop_spans if obj not in set(api_sample) | set(pop_sample)]
        http = measure_http(server.url, api_sample, pop_sample, spans_sample, heaviest, warmup, args.seed)
        cpu_used = server.cpu_seconds() - cpu_before
    finally:
        server.stop()

    store = open_store(StoreConfig(dsn=f"chdb://{root / 'data'}", retention_days=0))
    try:
        local = measure_in_process(store, api_sample + pop_sample, warmup)
    finally:
        store.close()

    story_all = http["story"]["api"] + http["story"]["population"]
    shape_http = http["story_shape"]
    print(f"\nHTTP, client wall time, sequential (server peak RSS {server.peak_rss / 2**20:.0f} MiB, "
          f"{cpu_used:.1f} CPU-s during the run):")
    print(f"  story  all objects            {summary(story_all)}")
    print(f"  story  from /api/objects      {summary(http['story']['api'])}")
    print(f"  story  from the population    {summary(http['story']['population'])}")
    print(f"  story  repeated (warm cache)  {summary(http['story_repeat'])}")
    print(f"  spans  other objects, all runs {summary(http['spans'])}")
    print(f"  GET /api/objects?limit=50     {summary(http['list50'])}")
    print(f"  GET /api/objects?limit=1000   {summary(http['list1000'])}")
    print(f"  GET /api/search?q=TCK-10      {summary(http['search'])}")

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    print(f"  per story: {mean(local['spans']):.1f} spans (max {max(local['spans'])}), "
          f"{mean(shape_http['steps']):.1f} steps (max {max(shape_http['steps'])}), "
          f"{mean(shape_http['traces']):.1f} runs told (max {max(shape_http['traces'])}) of "
          f"{mean(shape_http['runs_total']):.1f} (max {max(shape_http['runs_total'])}), "
          f"{mean(shape_http['bytes']) / 1024:.1f} KiB JSON; /spans returns {mean(http['spans_count']):.1f} spans "
          f"(max {max(http['spans_count'])})")
    print("  heaviest objects (most runs; the story tells the latest 50, /spans all of them):")
    for entry, (_, _, runs) in zip(http["heaviest"], shape["heaviest"]):
        kind, ident = entry["object"]
        print(f"    {kind}:{ident:10s} {runs:4d} runs  story {entry['story_ms'][0]:6.1f} ms first, "
              f"{min(entry['story_ms']):6.1f} best of 3;  "
              f"spans {entry['spans_ms']:7.1f} ms ({entry['spans']} spans, {entry['bytes'] / 2**20:.1f} MiB)")

    print("\nin process, same objects (store reopened here; ms):")
    for name, values in local["parts"].items():
        print(f"  {name:42s} p50 {pct(values, 50):7.2f}  p95 {pct(values, 95):7.2f}  max {max(values):7.2f}")
    print(f"  rows read by the trace spans query: mean {mean(local['rows']):.1f}, "
          f"kept after cover: mean {mean(local['spans']):.1f}")
    total = local["parts"]["total (route work, first read)"]
    print(f"  HTTP + FastAPI/pydantic response overhead ~ story p50 {pct(story_all, 50) - pct(total, 50):.1f} ms, "
          f"p95 {pct(story_all, 95) - pct(total, 95):.1f} ms")

    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
          + " (other processes on this machine skew these figures)")
    p95 = pct(story_all, 95)
    verdict = "MET" if p95 <= TARGET_P95_MS else "MISSED"
    print(f"\ntarget story API p95 <= {TARGET_P95_MS:.0f} ms: {verdict} (p95 {p95:.1f} ms over {len(story_all)} requests, "
          f"{info['spans']:,} spans stored)")
    (OUT / "story-results.json").write_text(json.dumps(
        {"machine": machine(), "build": info, "shape": shape, "http": http, "in_process": local}, indent=1, default=str))


if __name__ == "__main__":
    main()
