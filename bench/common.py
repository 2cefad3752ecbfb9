"""Shared benchmark plumbing: fleet spans as OTLP requests, a monitored server process."""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from flightrec.collector.prices import Pricer
from flightrec.collector.rates import resolve_rates
from flightrec.collector.rows import RowBuilder
from flightrec.demo.fleet import FleetConfig, FleetSimulation, build_workflow_spans
from flightrec.store import SpanBatch, StoreConfig, open_store


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    memory = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fleet_requests(total_spans: int, per_request: int = 512, seed: int = 11) -> list[bytes]:
    """The fleet's spans, serialized as OTLP/protobuf requests of ``per_request`` spans."""
    spans = []
    config = FleetConfig(workflows=max(1, total_spans // 10 + 10), seed=seed)
    for workflow in build_workflow_spans(config):
        spans.extend(workflow)
        if len(spans) >= total_spans:
            break
    spans = spans[:total_spans]
    return [encode_spans(spans[i : i + per_request]).SerializeToString() for i in range(0, len(spans), per_request)]


def insert_fleet(store: Any, total_spans: int) -> None:
    """Insert the fleet's spans into a store as the writer does (rows as received), one insert per request."""
    builder = RowBuilder()
    for index, body in enumerate(fleet_requests(total_spans)):
        batch = SpanBatch()
        builder.request_rows(ExportTraceServiceRequest.FromString(body), batch)
        store.insert_batch(batch, f"bench-{index}")


@contextmanager
def evidence_store() -> Iterator[tuple[Any, Any]]:
    """An embedded store (kept forever: no retention) and an evidence signing key, in a temporary folder."""
    from flightrec.evidence import keys

    with tempfile.TemporaryDirectory() as root:
        store = open_store(StoreConfig(dsn=f"chdb://{root}/data", retention_days=0))
        try:
            yield store, keys.load_or_create(Path(root) / "key.pem")
        finally:
            store.close()


class MonitoredServer:
    """``flightrec serve`` in a subprocess, with its process tree's peak RSS and CPU time sampled."""

    def __init__(self, data: Path, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.http_port, self.grpc_port = free_port(), free_port()
        self.env = {**os.environ, **(env or {})}
        self.peak_rss = 0
        self._stop = threading.Event()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flightrec", "serve", "--data", str(self.data), "--http-port", str(self.http_port),
             "--grpc-port", str(self.grpc_port), "--log-level", "warning"],
            env=self.env, stdout=open(self.data / "server.log", "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        threading.Thread(target=self._sample, daemon=True).start()

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in self.tree()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.tree():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


class FleetLoad(BaseModel):
    """What :func:`load_fleet_store` put into a store, and where its time went."""

    spans: int
    links: int
    batches: int
    insert_seconds: float
    optimize_seconds: float
    stage_seconds: dict[str, float]
    report: dict[str, Any]


def _produce_fleet(queue: Any, config_json: str, per_batch: int, max_spans: int) -> None:
    """Child process: fleet workflows -> OTLP/protobuf requests of ~per_batch spans (whole traces)."""
    simulation = FleetSimulation(FleetConfig.model_validate_json(config_json))
    pending: list = []
    total = 0
    for workflow in simulation:
        pending.extend(workflow)
        total += len(workflow)
        if len(pending) >= per_batch or (max_spans and total >= max_spans):
            queue.put(("spans", encode_spans(pending).SerializeToString()))
            pending = []
        if max_spans and total >= max_spans:
            break
    if pending:
        queue.put(("spans", encode_spans(pending).SerializeToString()))
    if simulation.report is not None:
        queue.put(("report", simulation.report.model_dump_json()))
    queue.put(None)


def load_fleet_store(root: Path, config: FleetConfig, per_batch: int, max_spans: int = 0) -> FleetLoad:
    """Fill a fresh embedded store at ``root/data`` with a fleet run, through the collector's path.

    Generation and OTLP encoding run in a child process forked before chDB opens here;
    decoding, normalization and insert run in this one: two cores, one pipeline. The
    store is merged (OPTIMIZE FINAL) at the end, so figures see settled parts.
    """
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    context = multiprocessing.get_context("fork")
    queue = context.Queue(maxsize=3)
    producer = context.Process(
        target=_produce_fleet, args=(queue, config.model_dump_json(), per_batch, max_spans), daemon=True
    )
    started = time.perf_counter()
    producer.start()
    store = open_store(StoreConfig(dsn=f"chdb://{root / 'data'}", retention_days=0))
    normalizer = RowBuilder()
    spans = batches = 0
    report: dict[str, Any] = {}
    times: Counter[str] = Counter()
    total = max_spans or config.workflows * 11
    try:
        with Progress(TextColumn("building store"), BarColumn(), MofNCompleteColumn(), TextColumn("spans"),
                      TimeElapsedColumn(), TimeRemainingColumn()) as progress:
            task = progress.add_task("build", total=total)
            while True:
                t0 = time.perf_counter()
                item = queue.get()
                t1 = time.perf_counter()
                times["waiting for the fleet (child)"] += t1 - t0
                if item is None:
                    break
                kind, body = item
                if kind == "report":
                    report = json.loads(body)
                    continue
                batch = normalizer.request_rows(ExportTraceServiceRequest.FromString(body), SpanBatch())
                t2 = time.perf_counter()
                times["decode + normalize"] += t2 - t1
                store.insert_batch(batch, dedup_token=f"bench-{config.seed}-{batches}")
                times["insert_batch"] += time.perf_counter() - t2
                spans, batches = spans + batch.span_count, batches + 1
                progress.update(task, completed=min(spans, total))
        producer.join(timeout=60)
        resolve_rates(store, Pricer())  # what the server's rate resolver does: price the stored models
        inserted_s = time.perf_counter() - started
        t0 = time.perf_counter()
        store.optimize()
        optimize_s = time.perf_counter() - t0
        objects = store.stats().objects
    finally:
        store.close()
    return FleetLoad(
        spans=spans, links=objects, batches=batches, insert_seconds=round(inserted_s, 1),
        optimize_seconds=round(optimize_s, 1), stage_seconds={k: round(v, 1) for k, v in times.items()}, report=report,
    )
