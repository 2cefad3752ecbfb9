"""Ingest benchmark: fleet spans over OTLP/HTTP protobuf until queryable in the store.

4 concurrent senders post requests of 512 spans as fast as the server takes them
(503 + Retry-After is honoured), so the server runs in sustained overload; one server per
ingest parser (``FLIGHTREC_INGEST_PARSER``: python, engine), one after the other on the same
requests. Reports for each: spans/s end to end (acknowledged and queryable) against the
48,000 target, server CPU per span, peak RSS of the server's whole process tree, bytes on
disk per span after merges; then the CPU of each stage (HTTP, WAL, parse, insert, derive) per
span, measured in this process on one segment of the writer's size.

    python bench/ingest.py --spans 400000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MonitoredServer, fleet_requests, machine  # noqa: E402
from flightrec.collector.decode import decode_body  # noqa: E402
from flightrec.collector.engine_ingest import frame  # noqa: E402
from flightrec.collector.prepare import SegmentPreparer  # noqa: E402
from flightrec.collector.wal import WalConfig, WalRecord, WriteAheadLog  # noqa: E402
from flightrec.store import StoreConfig, open_store  # noqa: E402
from flightrec.store.models import SPAN_COLUMN_NAMES  # noqa: E402
from flightrec.store.otlp import SegmentSource  # noqa: E402

TARGET_SPANS_S = 48_000


def send_all(url: str, requests: list[bytes], senders: int) -> dict[int, int]:
    """Post every request once accepted; returns the count of each status seen."""
    next_index = iter(range(len(requests)))
    lock = threading.Lock()
    statuses: dict[int, int] = {}

    def sender() -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                while True:
                    reply = client.post(
                        f"{url}/v1/traces", content=requests[index], headers={"Content-Type": "application/x-protobuf"}
                    )
                    with lock:
                        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
                    if reply.status_code == 200:
                        break
                    time.sleep(min(float(reply.headers.get("retry-after", "1")), 0.25))

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def _timed(costs: dict[str, float], stage: str, spans: int, work: Callable[[], object]) -> None:
    """CPU of this process (chDB runs in it) per span of one stage, in microseconds."""
    start = time.process_time()
    work()
    costs[stage] = (time.process_time() - start) / spans * 1e6


def stage_costs(requests: list[bytes], data: Path, per_segment: int = 10_000) -> dict[str, dict[str, float]]:
    """CPU per span of each ingest stage for each parser, on one segment of the writer's size (10k spans)."""
    counts: list[int] = []
    for body in requests:
        counts.append(decode_body(body, "application/x-protobuf").accepted)
        if sum(counts) >= per_segment:
            break
    bodies, spans = requests[: len(counts)], sum(counts)
    store = open_store(StoreConfig(dsn=f"chdb://{data}", database="stage_costs"))
    parsed, written = store.otlp.create_stage_sinks()
    costs: dict[str, dict[str, float]] = {"python": {}, "engine": {}}
    shared: dict[str, float] = {}
    _timed(shared, "HTTP: decode + validate", spans, lambda: [decode_body(b, "application/x-protobuf") for b in bodies])
    wal = WriteAheadLog(WalConfig(directory=data / "wal", segment_max_spans=10**9, segment_max_bytes=2**40))
    _timed(shared, "WAL: append + fsync", spans, lambda: [wal.append(body, count) for body, count in zip(bodies, counts)])
    wal.close()
    for parser in costs:
        costs[parser].update(shared)
    preparer = SegmentPreparer(store.insert_types())
    records = [WalRecord(spans=count, payload=body) for body, count in zip(bodies, counts)]
    python = costs["python"]
    holder: dict[str, object] = {}
    _timed(python, "parse + flatten + encode (workers)", spans,
           lambda: holder.update(batch=preparer.prepare_records(records)))
    native = holder["batch"].parts[0].span_native
    _timed(python, "insert: write parts", spans, lambda: store.engine.insert_native(
        "bench", f"stage_costs.{written}", SPAN_COLUMN_NAMES, native))
    _timed(python, "insert + derive (otel_traces)", spans, lambda: store.insert_prepared(holder["batch"]))
    python["derive"] = python.pop("insert + derive (otel_traces)") - python["insert: write parts"]
    engine = costs["engine"]
    path = data / "segment.otlp"
    path.write_bytes(frame(bodies))
    source = SegmentSource(path=str(path))
    _timed(engine, "identity: ids-only parse", spans, lambda: store.otlp.span_keys(source))
    _timed(engine, "parse + flatten (engine)", spans, lambda: store.otlp.insert_spans(source, token="p", table=parsed))
    _timed(engine, "parse + flatten + write parts", spans,
           lambda: store.otlp.insert_spans(source, token="w", table=written))
    engine["insert: write parts"] = engine.pop("parse + flatten + write parts") - engine["parse + flatten (engine)"]
    store.engine.command("bench", "TRUNCATE TABLE stage_costs.otel_traces")
    _timed(engine, "all (otel_traces)", spans, lambda: store.otlp.insert_spans(source, token="a"))
    engine["derive"] = engine.pop("all (otel_traces)") - engine["parse + flatten (engine)"] - engine["insert: write parts"]
    store.close()
    return costs


def run_server(requests: list[bytes], senders: int, work: Path, parser: str) -> dict[str, float]:
    """One server with this ingest parser, overloaded by the senders until every span is queryable."""
    total = sum(decode_body(body, "application/x-protobuf").accepted for body in requests)
    server = MonitoredServer(work / parser, env={"FLIGHTREC_INGEST_PARSER": parser})
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            cpu_before = server.cpu_seconds()
            t0 = time.perf_counter()
            statuses = send_all(server.url, requests, senders)
            acked_s = time.perf_counter() - t0
            while api.get("/api/health").json()["backlog_spans"] > 0:
                time.sleep(0.02)
            queryable_s = time.perf_counter() - t0
            cpu_used = server.cpu_seconds() - cpu_before
            stats = api.get("/api/stats").json()
            processes = len(server.tree())
    finally:
        server.stop()
    assert stats["spans"] == total, f"stored {stats['spans']} of {total} spans"
    store = open_store(StoreConfig(dsn=f"chdb://{work / parser / 'data'}"))
    store.optimize()
    disk = store.disk_bytes()
    store.close()
    return {"acked": total / acked_s, "e2e": total / queryable_s, "cpu_us": cpu_used / total * 1e6,
            "rss_mib": server.peak_rss / 2**20, "processes": processes, "statuses": str(statuses),
            "bytes_spans": disk.get("otel_traces", 0) / total, "bytes_links": disk.get("object_links", 0) / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=400_000, help="fleet spans to send")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders")
    parser.add_argument("--per-request", type=int, default=512, help="spans per OTLP request")
    parser.add_argument("--parsers", nargs="+", default=["python", "engine"], choices=["python", "engine"],
                        help="ingest parsers to run a server with, one after the other (FLIGHTREC_INGEST_PARSER)")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    started = time.perf_counter()
    requests = fleet_requests(args.spans, args.per_request)
    total = args.spans
    print(f"prepared {len(requests)} requests ({total} fleet spans) in {time.perf_counter() - started:.1f}s")

    work = Path(tempfile.mkdtemp(prefix="flightrec-bench-"))
    load = os.getloadavg()
    results = {parser: run_server(requests, args.senders, work, parser) for parser in args.parsers}
    costs = stage_costs(requests, work / "stages")
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nspans: {total}, requests: {len(requests)} x {args.per_request} spans, senders: {args.senders}, "
          f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, after: {os.getloadavg()[0]:.1f}")
    print(f"{'':28s}" + "".join(f"{parser:>14s}" for parser in results))
    rows = (("acknowledged spans/s", "acked", "{:14.0f}"), ("queryable (e2e) spans/s", "e2e", "{:14.0f}"),
            ("server CPU us/span", "cpu_us", "{:14.1f}"), ("peak RSS MiB (all procs)", "rss_mib", "{:14.0f}"),
            ("server processes", "processes", "{:14d}"), ("disk B/span (spans)", "bytes_spans", "{:14.1f}"),
            ("disk B/span (links)", "bytes_links", "{:14.1f}"))
    for label, key, fmt in rows:
        print(f"{label:28s}" + "".join(fmt.format(result[key]) for result in results.values()))
    for parser, result in results.items():
        verdict = "meets" if result["e2e"] >= TARGET_SPANS_S else "misses"
        print(f"{parser}: {result['e2e']:.0f} spans/s end to end {verdict} the {TARGET_SPANS_S:,} target "
              f"({result['e2e'] / TARGET_SPANS_S:.0%}); HTTP statuses {result['statuses']}")
    print("CPU by stage (this process, one 10k-span segment, us/span):")
    for parser, stages in costs.items():
        for stage, micros in stages.items():
            print(f"  {parser:7s} {stage:38s} {micros:7.1f}")
        print(f"  {parser:7s} {'total':38s} {sum(stages.values()):7.1f}")


if __name__ == "__main__":
    main()
