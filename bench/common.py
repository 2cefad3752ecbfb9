"""Shared benchmark plumbing: fleet spans as OTLP requests, a monitored server process."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from flightrec.fleet import FleetConfig, build_workflow_spans


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
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
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
