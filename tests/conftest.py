"""Shared fixtures: an embedded store per test (one chDB directory per test process,
one database per test) and real ``flightrec serve`` processes on free loopback ports.

The suite runs on pytest-xdist workers (``-n 2``): every worker is its own process, with its own
temp dirs (so its own chDB directory) and its own block of ports (``free_port``)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from flightrec.store import Store, StoreConfig, open_store
from tests.http_receiver import receiver  # noqa: F401 - a fixture for every test module

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], object], timeout_s: float = 60, what: str = "condition") -> None:
    """Poll ``condition`` until it holds: tests wait for what they need, never a fixed time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


PORT_BLOCK_SIZE = 1000
PORT_BLOCKS_START = 10_000


def _port_block() -> range:
    """The loopback ports this test process hands out: below the kernel's ephemeral range (so no
    client connection's source port and no other process's ``bind(0)`` can take one between
    ``free_port`` and the server's bind), one disjoint block per xdist worker (so two workers
    never hand out the same port)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...; unset without xdist
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    low = PORT_BLOCKS_START + index * PORT_BLOCK_SIZE
    if low + PORT_BLOCK_SIZE > ephemeral_low:
        raise RuntimeError(f"no port block for worker {worker!r} below the ephemeral range ({ephemeral_low})")
    return range(low, low + PORT_BLOCK_SIZE)


_PORTS = _port_block()
_port_lock = threading.Lock()
_next_port = random.randrange(len(_PORTS))  # a random start: another suite on this machine likely starts elsewhere


def _bindable(port: int) -> bool:
    """Nothing listens on it and nothing lingers on it (no SO_REUSEADDR: TIME_WAIT refuses too)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing uses, from this process's block, each handed out once per lap of the block."""
    global _next_port
    with _port_lock:
        for _ in range(len(_PORTS)):
            port = _PORTS[_next_port % len(_PORTS)]
            _next_port += 1
            if _bindable(port):
                return port
    raise RuntimeError(f"no free port in {_PORTS}")


BIND_FAILED = ("address already in use", "failed to bind to address", "could not bind")  # uvicorn, grpc, the receiver


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def store(chdb_dir: Path) -> Iterator[Store]:
    """A migrated store in a fresh database of this process's one chDB directory."""
    opened = open_store(StoreConfig(dsn=f"chdb://{chdb_dir}", database=f"t_{uuid.uuid4().hex[:10]}"))
    yield opened
    opened.engine.command("drop_test_database", f"DROP DATABASE IF EXISTS {opened.db}")
    opened.close()


class PortTaken(RuntimeError):
    """The server exited at start because one of its ports was taken."""


class ServerProcess:
    """A ``flightrec serve`` subprocess; restartable on the same data directory."""

    def __init__(self, data: Path, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.data = data
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.log = data / "server.log"
        self._started_once = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 60) -> "ServerProcess":
        self.data.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                return self._start(timeout_s)
            except PortTaken:
                # Another process took a port between free_port and the bind: new ports, before any
                # caller saw this server's URL (a restart keeps its ports, as a restart must).
                if self._started_once or attempt == 2:
                    raise
                self.http_port, self.grpc_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> "ServerProcess":
        command = [
            sys.executable, "-m", "flightrec", "serve", "--data", str(self.data),
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port), "--log-level", "warning",
            *self.args,
        ]
        log_from = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(command, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        headers = self.api_headers()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log, "rb") as log:
                    log.seek(log_from)
                    said = log.read().decode(errors="replace")
                if any(words in said.lower() for words in BIND_FAILED):
                    raise PortTaken(said[-3000:])
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/health/live", headers=headers, timeout=1).status_code == 200:
                    self._started_once = True
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def api_headers(self) -> dict[str, str]:
        token = self.env.get("FLIGHTREC_API_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.api_headers(), timeout=30)

    def wait_drained(self, timeout_s: float = 60) -> None:
        """Until the WAL backlog is empty: everything acknowledged is queryable."""
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while time.monotonic() < deadline:
                if client.get("/api/health").json()["backlog_spans"] == 0:
                    return
                time.sleep(0.05)
        raise AssertionError("backlog did not drain")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator:
    """Factory for servers; every one started is stopped at teardown."""
    started: list[ServerProcess] = []

    def factory(env: dict[str, str] | None = None, args: list[str] | None = None, name: str = "srv") -> ServerProcess:
        server = ServerProcess(tmp_path / name, env, args)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server) -> ServerProcess:
    return make_server()
