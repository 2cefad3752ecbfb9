"""Starting the built apps: in the foreground (``serve``) or in background threads (``demo``, tests)."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import NoReturn

import uvicorn

from flightrec.app import build_app
from flightrec.settings import Settings


def make_server(settings: Settings, log_level: str = "warning") -> uvicorn.Server:
    settings.check_exposure()
    config = uvicorn.Config(
        build_app(settings),
        host=settings.host,
        port=settings.http_port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return uvicorn.Server(config)


def make_records_server(port: int, db_path: Path, host: str = "127.0.0.1") -> uvicorn.Server:
    """The demo system of record as a uvicorn server."""
    from flightrec.demo.records import build_records_app

    config = uvicorn.Config(build_records_app(db_path), host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)


def serve_forever(settings: Settings, log_level: str = "info") -> None:
    """Run until SIGINT/SIGTERM; shutdown flushes the WAL into the store."""
    make_server(settings, log_level).run()


class BackgroundServer:
    """A uvicorn server in a thread of this process (the embedded store stays owned by this process)."""

    def __init__(self, server: uvicorn.Server, name: str = "flightrec-serve") -> None:
        self.server = server
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped while starting (is the port or data directory in use?)")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def wait_until_interrupted() -> NoReturn:
    """Block the main thread until Ctrl-C, which then raises KeyboardInterrupt here.

    The kernel may hand a process's SIGINT to any thread (it skips one that is creating a thread, whose
    signals glibc blocks for that moment, and chDB and uvicorn create threads all the time). Python runs
    its handler only when the main thread next executes bytecode, which a long sleep never lets it do: the
    demo once slept on for good after Ctrl-C. The wakeup fd is written by the C handler on whichever
    thread caught the signal, so this select returns and the handler runs at once.
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous: int | None = None
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        while True:
            select.select([reader], [], [])
            with contextlib.suppress(BlockingIOError):
                reader.recv(4096)
    finally:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
