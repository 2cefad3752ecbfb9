"""Scale curve (issue 9): one `flightrec serve` grown to 1M, 3M and 10M spans through the real ingest path.

Fleet spans are sent as OTLP/HTTP protobuf (512 a request, 4 senders) in chunks of 100,000
generated before each step's ingest is timed and kept on disk (a chunk's workflows have their own
seed, so ids never repeat; steps must be multiples of the chunk size). At
each step, once every span sent is queryable, it measures over HTTP, sequentially:

- ingest of the spans sent since the previous step: spans/s end to end (sent -> queryable), server
  CPU per 1,000 spans and the peak RSS of the server's process tree while they went in, with the
  1-minute load average at its start and end (the machine is shared);
- bytes on disk per stored span: each table's active parts (parts merged away wait minutes for
  deletion and are not counted; the whole directory is reported beside them);
- story p50/p95/p99 over objects from the objects list and from search, the objects list
  (limit 50) p95, search p95, one detector pass (POST /api/detectors/run).

Figures go to bench/out/scale.json and a plotly chart of each against the stored span count to
bench/scale.html (plotly.js from its CDN: open it with network, or read RESULTS.md), both written
again after every step, so a partial curve survives a crash or a stopped run.

    python bench/scale.py                          # 1M, 3M, 10M
    python bench/scale.py --steps 1000000,3000000  # a shorter curve
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MonitoredServer, machine  # noqa: E402
from bench.ingest import send_all  # noqa: E402
from flightrec.demo.fleet import FleetConfig, build_workflow_spans  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CHART = Path(__file__).resolve().parent / "scale.html"
TARGETS = {"ingest_spans_s": 48_000, "cpu_ms_per_1000": 20.0, "peak_rss_mib": 1024.0, "bytes_per_span": 150.0,
           "story_p95_ms_1m": 50.0, "story_p95_ms_10m": 100.0, "list_p95_ms_1m": 50.0, "search_p95_ms": 100.0,
           "detector_s_10m": 10.0}
CHUNK_SPANS = 100_000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else 0.0


def chunk_requests(index: int, spans: int, per_request: int) -> list[bytes]:
    """Chunk ``index`` of fleet spans (its own seed) as OTLP/protobuf requests."""
    generated = []
    for workflow in build_workflow_spans(FleetConfig(workflows=spans // 10 + 10, seed=1000 + index)):
        generated.extend(workflow)
        if len(generated) >= spans:
            break
    generated = generated[:spans]
    return [encode_spans(generated[i:i + per_request]).SerializeToString() for i in range(0, len(generated), per_request)]


def write_chunks(directory: Path, start: int, total: int, per_request: int, progress: Progress) -> list[Path]:
    """The requests of spans ``start`` to ``total``, generated before their ingest is timed, each chunk a
    file of length-prefixed requests (10M spans are ~11 GB of requests: on disk, not in memory)."""
    directory.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(f"requests generated ({start:,} to {total:,})", total=total - start)
    paths = []
    for index in range(start // CHUNK_SPANS, total // CHUNK_SPANS):
        path = directory / f"chunk-{index:05d}.bin"
        with path.open("wb") as out:
            for body in chunk_requests(index, CHUNK_SPANS, per_request):
                out.write(struct.pack("<I", len(body)) + body)
        paths.append(path)
        progress.update(task, advance=CHUNK_SPANS)
    return paths


def read_chunk(path: Path) -> list[bytes]:
    data, requests, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        requests.append(data[offset + 4:offset + 4 + size])
        offset += 4 + size
    return requests


PART = re.compile(r"^([^_]+)_(\d+)_(\d+)_(\d+)(?:_(\d+))?$")  # partition_min_max_level[_mutation]


def store_bytes(data: Path) -> dict[str, int]:
    """Bytes of each table's active parts (a part whose block range another part covers was merged away and
    waits for deletion), and of the whole store directory."""
    def size(path: Path) -> int:
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())

    sizes, tables = {"directory": size(data / "data")}, {}
    for link in sorted((data / "data" / "data").glob("*/*"), key=lambda link: len(link.name)):
        tables.setdefault(link.resolve(), link.name)  # a view's link shares its target's directory
    for directory, table in tables.items():
        parts = [(part, PART.match(part.name)) for part in directory.iterdir() if part.is_dir()]
        ranges = [(m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5] or 0)) for _, m in parts if m]
        sizes[table] = sum(size(part) for part, m in parts if m and not any(
            q[0] == m[1] and q[1] <= int(m[2]) and q[2] >= int(m[3]) and q[3:] >= (int(m[4]), int(m[5] or 0))
            and q != (m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5] or 0)) for q in ranges))
    return sizes


def bytes_per_span(sizes: dict[str, int], spans: int) -> dict:
    tables = {table: size / spans for table, size in sizes.items() if table != "directory" and size >= spans}
    return {"bytes_per_span": sum(size for table, size in sizes.items() if table != "directory") / spans,
            "bytes_per_span_spans_links": (sizes.get("otel_traces", 0) + sizes.get("object_links", 0)) / spans,
            "bytes_per_span_directory": sizes["directory"] / spans, "bytes_per_span_tables": tables}


def wait_queryable(api: httpx.Client, expected: int) -> None:
    while True:
        health = api.get("/api/health").json()
        if health["backlog_spans"] == 0 and api.get("/api/stats").json()["spans"] >= expected:
            return
        time.sleep(0.05)


def timed_ms(call) -> float:  # noqa: ANN001 - a zero-argument request
    started = time.perf_counter()
    call().raise_for_status()
    return (time.perf_counter() - started) * 1000


def read_figures(api: httpx.Client, seed: int, sample: int) -> dict:
    """Story, list, search and detector figures on the store as it is now."""
    listed = api.get("/api/objects", params={"limit": 1000}).json()["items"]
    found = api.get("/api/search", params={"q": "TCK-1"}).json()["items"]
    searched = [tuple(hit["key"].split(":", 1)) for hit in found if hit["kind"] == "object"]
    objects = [(item["type"], item["id"]) for item in listed] + searched
    random.Random(seed).shuffle(objects)
    objects = objects[:sample]
    story = [timed_ms(lambda: api.get(f"/api/objects/{quote(kind, safe='')}/{quote(ident, safe='')}/story"))
             for kind, ident in objects]
    listing = [timed_ms(lambda: api.get("/api/objects", params={"limit": 50})) for _ in range(30)]
    search = [timed_ms(lambda: api.get("/api/search", params={"q": "TCK-10"})) for _ in range(30)]
    detector = timed_ms(lambda: api.post("/api/detectors/run")) / 1000
    return {"story_objects": len(objects), "story_p50_ms": pct(story, 50), "story_p95_ms": pct(story, 95),
            "story_p99_ms": pct(story, 99), "list_p95_ms": pct(listing, 95), "search_p95_ms": pct(search, 95),
            "detector_pass_s": detector}


def save(points: list[dict]) -> None:
    """bench/out/scale.json and the chart, as they are after the latest step."""
    OUT.mkdir(exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps({"machine": machine(), "targets": TARGETS, "points": points}, indent=2))
    chart(points)


def chart(points: list[dict]) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figures = [("ingest_spans_s", "ingest, spans/s"), ("cpu_ms_per_1000", "server CPU, ms per 1,000 spans"),
               ("peak_rss_mib", "peak RSS, MiB"), ("bytes_per_span", "bytes on disk per span"),
               ("story_p95_ms", "story p95, ms"), ("list_p95_ms", "objects list p95, ms"),
               ("search_p95_ms", "search p95, ms"), ("detector_pass_s", "detector pass, s")]
    fig = make_subplots(rows=4, cols=2, subplot_titles=[title for _, title in figures])
    stored = [point["stored_spans"] for point in points]
    for index, (key, title) in enumerate(figures):
        fig.add_trace(go.Scatter(x=stored, y=[point[key] for point in points], mode="lines+markers", name=title),
                      row=index // 2 + 1, col=index % 2 + 1)
    fig.update_xaxes(title_text="stored spans", type="log")
    fig.update_layout(height=1200, showlegend=False, title="Flight Recorder scale curve (bench/scale.py)")
    fig.write_html(CHART, include_plotlyjs="cdn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000000,3000000,10000000", help="stored span counts to measure at")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--per-request", type=int, default=512)
    parser.add_argument("--sample", type=int, default=200, help="objects whose story is read at each step")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    steps = sorted(int(step) for step in args.steps.split(","))
    if any(step % CHUNK_SPANS for step in steps):
        parser.error(f"every step must be a multiple of {CHUNK_SPANS:,} spans (the chunk size)")
    print(f"machine: {machine()}")

    work = Path(tempfile.mkdtemp(prefix="flightrec-scale-"))
    server = MonitoredServer(work / "server", env={"FLIGHTREC_DETECT_INTERVAL_S": "0"})
    server.start()
    points: list[dict] = []
    sent = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    try:
        with httpx.Client(base_url=server.url, timeout=600) as api, Progress(*columns) as progress:
            task = progress.add_task("spans sent", total=steps[-1])
            for step in steps:
                generating = time.perf_counter()
                chunks = write_chunks(work / "requests", sent, step, args.per_request, progress)
                generation_s = time.perf_counter() - generating
                progress.console.print(f"{step - sent:,} spans of requests generated in {generation_s:.0f} s (not timed)")
                load_start = os.getloadavg()[0]
                cpu_before, server.peak_rss, started = server.cpu_seconds(), 0, time.perf_counter()
                segment = step - sent
                for path in chunks:
                    send_all(server.url, read_chunk(path), args.senders)
                    path.unlink()
                    sent += CHUNK_SPANS
                    progress.update(task, completed=sent)
                wait_queryable(api, sent)
                elapsed, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu_before
                load_end = os.getloadavg()[0]
                progress.console.print(f"{segment:,} spans queryable in {elapsed:.0f} s; load average (1 min) "
                                       f"{load_start:.1f} at the start, {load_end:.1f} at the end")
                api.post("/api/evidence/checkpoints", json={}).raise_for_status()  # reads measured with the log caught up
                progress.update(task, description=f"spans sent (measuring at {step:,})")
                point = {"stored_spans": api.get("/api/stats").json()["spans"], "ingest_spans_s": segment / elapsed,
                         "cpu_ms_per_1000": cpu / segment * 1e6, "peak_rss_mib": server.peak_rss / 2**20,
                         **bytes_per_span(store_bytes(server.data), step), **read_figures(api, args.seed, args.sample),
                         "ingest_s": elapsed, "generation_s": generation_s, "load_start": load_start,
                         "load_end": load_end, "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
                points.append(point)
                save(points)
                progress.console.print(json.dumps({key: round(value, 2) if isinstance(value, float) else value
                                                   for key, value in point.items()}))
                progress.update(task, description="spans sent")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'stored':>11} {'ingest/s':>9} {'CPU/1k':>8} {'RSS MiB':>8} {'B/span':>7} {'story p50/p95/p99 ms':>22} "
          f"{'list p95':>9} {'search p95':>10} {'detect s':>8} {'load':>9}")
    print(f"{'target':>11} {'>=48,000':>9} {'<=20':>8} {'<=1,024':>8} {'<=150':>7} {'p95 <=50 1M, <=100 10M':>22}     "
          f"{'<=50 (1M)':>9} {'<=100':>10} {'<=10 (10M)':>8}")
    for p in points:
        print(f"{p['stored_spans']:>11,} {p['ingest_spans_s']:>9,.0f} {p['cpu_ms_per_1000']:>8.0f} "
              f"{p['peak_rss_mib']:>8.0f} {p['bytes_per_span']:>7.0f} "
              f"{p['story_p50_ms']:>6.0f}/{p['story_p95_ms']:>5.0f}/{p['story_p99_ms']:>5.0f}     "
              f"{p['list_p95_ms']:>9.0f} {p['search_p95_ms']:>10.0f} {p['detector_pass_s']:>8.1f} "
              f"{p['load_start']:>4.1f}-{p['load_end']:<4.1f}")
    print(f"\ntargets: {json.dumps(TARGETS)}")
    print(f"chart: {CHART}")


if __name__ == "__main__":
    main()
