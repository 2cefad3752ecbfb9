"""Shared fixtures: an embedded store per test (one chDB directory per test process,
one database per test) and real ``flightrec serve`` processes on free loopback ports.

The suite runs on pytest-xdist workers (``-n 2``): every worker is its own process, with its own
temp dirs (so its own chDB directory) and its own block of ports (``free_port``)."""

from __future__ import annotations

import atexit
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from flightrec.store import Store, StoreConfig, open_store
from flightrec.store.derive import fingerprint
from flightrec.store.engine import StoreError
from flightrec.store.meaning import MeaningRepository
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


def stacks_of(pid: int) -> str:
    """Every thread's stack of a live process, Python and native frames (py-spy), for a failure message:
    a process that does not stop says where it is stuck (a Ctrl-C that never finished hung two CI runs)."""
    try:
        done = subprocess.run([str(Path(sys.executable).parent / "py-spy"), "dump", "--native", "--pid", str(pid)],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(no stacks of {pid}: {exc})"
    return (done.stdout + done.stderr)[-20000:]


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


def _objects(engine, database: str) -> list[tuple[str, str, str, int | None]]:
    """(name, engine, create query, rows) of every table, view and dictionary of a database."""
    return engine.query(
        "test_clone_schema",
        "SELECT name, engine, create_table_query, total_rows FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": database},
    )


def _schema(engine, database: str) -> list[tuple[str, str, str]]:
    """A database's objects with its own name written as ``DB``: two databases compare equal when alike."""
    return [(name, kind, create.replace(database, "DB")) for name, kind, create, _ in _objects(engine, database)]


@pytest.fixture(scope="session")
def template_store(chdb_dir: Path) -> Iterator[Store]:
    """One store migrated once per test process (``open_store``, as every test's store was made before):
    each ``store`` is a copy of it, since a fresh migration costs seconds (most of it one ALTER that adds
    the derived columns) and a copy of the finished schema a fraction of that."""
    opened = open_store(StoreConfig(dsn=f"chdb://{chdb_dir}", database=f"tmpl_{uuid.uuid4().hex[:12]}"))
    yield opened
    opened.engine.command("drop_test_database", f"DROP DATABASE IF EXISTS {opened.db}")
    opened.close()


def clone_store(template: Store, database: str) -> Store:
    """A new database with the template's schema and migration state, opened with ``open_store``
    (which then finds every migration applied, the rules installed and the TTLs set: nothing to do).

    The copy is checked against the template (every create query alike but for the database's
    name) and the derivation state against the rules' own fingerprint for the new database, so a
    test never runs on a schema a migration would not have made."""
    engine, source = template.engine, template.db
    engine.command("test_clone_database", f"CREATE DATABASE {database}")
    objects = _objects(engine, source)
    # Dependencies first (the rates and hold dictionaries before otel_traces; views last); a
    # statement whose dependency is not there yet is tried again in the next round.
    rank = {"Dictionary": 1, "View": 3, "MaterializedView": 3}
    pending = sorted(objects, key=lambda o: (2 if o[0] == "otel_traces" else rank.get(o[1], 0), o[0]))
    while pending:
        failed, reason = [], None
        for item in pending:
            try:
                engine.command("test_clone_object", item[2].replace(source, database),
                               settings={"max_query_size": 16 * 2**20})
            except StoreError as exc:
                failed.append(item)
                reason = exc
        if len(failed) == len(pending):
            raise AssertionError(f"cannot copy {[o[0] for o in failed]} of the template store: {reason}")
        pending = failed
    rules, tenant = template.config.rules, template.config.default_tenant
    theirs = fingerprint(template.meaning.columns(rules, tenant))
    ours = fingerprint(MeaningRepository(engine, database).columns(rules, tenant))  # the same rules, for the copy
    for name, _, _, rows in objects:
        if not rows:
            continue
        if name == "derivations":  # the rules' fingerprint names the database (its columns read db.model_rates_dict)
            engine.command("test_clone_rows",
                           f"INSERT INTO {database}.derivations SELECT AppliedAt, Kind, "
                           f"replaceAll(Fingerprint, {{theirs:String}}, {{ours:String}}), Version, Rules, Spans "
                           f"FROM {source}.derivations", {"theirs": theirs, "ours": ours})
        else:
            engine.command("test_clone_rows", f"INSERT INTO {database}.{name} SELECT * FROM {source}.{name}")
    opened = open_store(StoreConfig(dsn=template.config.dsn, database=database))
    assert _schema(engine, database) == _schema(engine, source), "the copied store differs from the template"
    state = opened.meaning.state()
    assert state is not None and state.version == 1 and state.installed == state.history == ours, state
    return opened


@pytest.fixture
def store(template_store: Store) -> Iterator[Store]:
    """A migrated store in a fresh database of this process's one chDB directory (a copy of the template)."""
    opened = clone_store(template_store, f"t_{uuid.uuid4().hex[:10]}")
    yield opened
    opened.engine.command("drop_test_database", f"DROP DATABASE IF EXISTS {opened.db}")
    opened.close()


class PortTaken(RuntimeError):
    """The server exited at start because one of its ports was taken."""


# Settings that change what a server's first start makes of its store (StoreConfig): a server given one of
# these migrates its own fresh store; every other server starts on a copy of one migrated per test process.
STORE_SETTINGS = re.compile(r"^FLIGHTREC_(STORE|DATA|DATABASE|CLUSTER|CONFIG|RULES|LINK_ALIASES|DEFAULT_TENANT"
                            r"|RETENTION_.*|.*_RETENTION_DAYS)$")
_store_templates: dict[str, Path] = {}
_template_lock = threading.Lock()
TEMPLATE_SCRIPT = """
import sys
from flightrec.settings import Settings
from flightrec.store import open_store
open_store(Settings(data=sys.argv[1]).store_config()).close()
"""


def server_store_template() -> Path:
    """The embedded store (``DATA/data``) a ``flightrec serve`` with default store settings makes at its first
    start: migrated once per test process, in a process of its own (this one holds its own chDB directory),
    by the same ``open_store`` the server calls. Copies of it let a server skip the migration."""
    with _template_lock:
        if "default" not in _store_templates:
            base = Path(tempfile.mkdtemp(prefix="flightrec-store-template-"))
            atexit.register(shutil.rmtree, base, True)
            target = base / "srv"
            env = {key: value for key, value in os.environ.items() if not key.startswith("FLIGHTREC_")}
            done = subprocess.run([sys.executable, "-c", TEMPLATE_SCRIPT, str(target)], env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0 and (target / "data").is_dir(), done.stdout + done.stderr
            _store_templates["default"] = target / "data"
        return _store_templates["default"]


class ServerProcess:
    """A ``flightrec serve`` subprocess; restartable on the same data directory.

    Its first start copies a migrated store into a data directory that has none (``fresh_store=False``,
    the default, and no store setting given); ``fresh_store=True`` makes the server migrate its own."""

    def __init__(self, data: Path, env: dict[str, str] | None = None, args: list[str] | None = None,
                 fresh_store: bool = False) -> None:
        self.data = data
        self.fresh_store = fresh_store or bool(args) or any(STORE_SETTINGS.match(key) for key in (env or {}))
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

    def start(self, timeout_s: float = 120) -> "ServerProcess":
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

    def _seed_store(self) -> None:
        """Copy the migrated template store in, before the first start of a server that has no store yet."""
        if self.fresh_store or self._started_once or (self.data / "data").exists():
            return
        if any(STORE_SETTINGS.match(key) for key in self.env):  # set for the whole test run: the server decides
            return
        shutil.copytree(server_store_template(), self.data / "data", symlinks=True)

    def _start(self, timeout_s: float) -> "ServerProcess":
        self._seed_store()
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
            time.sleep(0.02)
        self.proc.kill()  # not left running behind the failure
        self.proc.wait()
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
