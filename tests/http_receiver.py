"""A real local HTTP receiver for pager tests: records every POST, answers from reply queues."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: object


@dataclass
class Reply:
    status: int = 202
    body: object = field(default_factory=lambda: {"status": "success", "message": "Event processed"})
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1; replies queued for a path win over the default queue (then 202)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: dict[str | None, deque[Reply]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(Recorded(self.path, dict(self.headers), json.loads(raw)))
                    queue = receiver.replies.get(self.path) or receiver.replies.get(None)
                    reply = queue.popleft() if queue else Reply()
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def queue(self, *replies: Reply, path: str | None = None) -> None:
        with self.lock:
            self.replies.setdefault(path, deque()).extend(replies)

    def at(self, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def bodies(self, path: str) -> list:
        return [r.body for r in self.at(path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()
