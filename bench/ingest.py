"""Ingest benchmark: fleet spans over OTLP/HTTP protobuf until queryable in the store.

4 concurrent senders post requests of 512 spans as fast as the server takes them
(503 + Retry-After is honoured), so the server runs in sustained overload. Reports
spans/s end to end (acknowledged and queryable), server CPU ms per 1,000 spans,
peak server RSS (process tree, writer workers included), bytes on disk per span
after merges, and where a span's time goes, stage by stage, in this process.

    python bench/ingest.py --spans 400000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MonitoredServer, fleet_requests, machine  # noqa: E402
from flightrec.collector.decode import decode_body, decode_protobuf  # noqa: E402
from flightrec.collector.rows import RowBuilder  # noqa: E402
from flightrec.store import SpanBatch, StoreConfig, open_store  # noqa: E402
from flightrec.store.models import SPAN_COLUMN_NAMES  # noqa: E402
from flightrec.store.native import NativeEncoder  # noqa: E402


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


def stage_costs(requests: list[bytes], data: Path) -> dict[str, float]:
    """Microseconds per span of each ingest stage, single-threaded, on the same requests."""
    sample = requests[: min(len(requests), 60)]
    spans = sum(decode_body(body, "application/x-protobuf").accepted for body in sample)
    costs: dict[str, float] = {}
    start = time.perf_counter()
    for body in sample:
        decode_body(body, "application/x-protobuf")
    costs["decode + validate (request path)"] = (time.perf_counter() - start) / spans * 1e6
    normalizer, batch = RowBuilder(), SpanBatch()
    start = time.perf_counter()
    for body in sample:
        normalizer.request_rows(decode_protobuf(body), batch)
    costs["decode + normalize (worker)"] = (time.perf_counter() - start) / spans * 1e6
    store = open_store(StoreConfig(dsn=f"chdb://{data}", database="stage_costs"))
    encoder = NativeEncoder(SPAN_COLUMN_NAMES, store.insert_types()["otel_traces"])
    start = time.perf_counter()
    payload = encoder.encode(batch.span_columns())
    costs["Native encode (worker)"] = (time.perf_counter() - start) / spans * 1e6
    start = time.perf_counter()
    store.engine.insert_native("bench", "stage_costs.otel_traces", SPAN_COLUMN_NAMES, payload)
    costs["ClickHouse insert (store owner)"] = (time.perf_counter() - start) / spans * 1e6
    store.close()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=400_000, help="fleet spans to send")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders")
    parser.add_argument("--per-request", type=int, default=512, help="spans per OTLP request")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    started = time.perf_counter()
    requests = fleet_requests(args.spans, args.per_request)
    total = args.spans
    print(f"prepared {len(requests)} requests ({total} fleet spans) in {time.perf_counter() - started:.1f}s")

    work = Path(tempfile.mkdtemp(prefix="flightrec-bench-"))
    server = MonitoredServer(work / "server")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            cpu_before = server.cpu_seconds()
            t0 = time.perf_counter()
            statuses = send_all(server.url, requests, args.senders)
            acked_s = time.perf_counter() - t0
            while api.get("/api/health").json()["backlog_spans"] > 0:
                time.sleep(0.02)
            queryable_s = time.perf_counter() - t0
            cpu_used = server.cpu_seconds() - cpu_before
            stats = api.get("/api/stats").json()
    finally:
        server.stop()
    assert stats["spans"] == total, f"stored {stats['spans']} of {total} spans"

    store = open_store(StoreConfig(dsn=f"chdb://{work / 'server' / 'data'}"))
    store.optimize()
    disk = store.disk_bytes()
    store.close()
    costs = stage_costs(requests, work / "stages")
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nspans: {total}, requests: {len(requests)} x {args.per_request} spans, senders: {args.senders}")
    print(f"HTTP statuses: {statuses}")
    print(f"acknowledged:      {total / acked_s:10.0f} spans/s ({acked_s:.1f}s)")
    print(f"queryable (e2e):   {total / queryable_s:10.0f} spans/s ({queryable_s:.1f}s)")
    print(f"server CPU:        {cpu_used / total * 1e6:10.1f} ms per 1,000 spans ({cpu_used:.1f} CPU-s)")
    print(f"peak server RSS:   {server.peak_rss / 2**20:10.0f} MiB (process tree)")
    spans_bytes, links_bytes = disk.get("otel_traces", 0), disk.get("object_links", 0)
    print(f"disk per span:     {spans_bytes / total:10.1f} B spans + {links_bytes / total:.1f} B links "
          f"= {(spans_bytes + links_bytes) / total:.1f} B")
    print("where a span's time goes (single thread, us/span):")
    for stage, micros in costs.items():
        print(f"  {stage:36s} {micros:6.1f}")


if __name__ == "__main__":
    main()
