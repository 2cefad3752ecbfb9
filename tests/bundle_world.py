"""A small world for evidence-bundle tests: invoices touched by finance-agent inside and outside a window.

Traces (each a root span naming its object, with two children):
    A  finance-agent  invoice:INV-1001  10 days ago   in the acceptance scope
    B  finance-agent  invoice:INV-1002  12 days ago   in the acceptance scope
    C  billing-agent  invoice:INV-1003  10 days ago   another agent
    D  finance-agent  invoice:INV-1004  40 days ago   outside the window
    E  finance-agent  ticket:TCK-1      10 days ago   another object type
    F  bulk-agent     invoice:INV-9000  60 spans       larger than the test server's export limit
The window is [20 days ago, 5 days ago), as ISO dates.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from tests.conftest import ServerProcess
from tests.otlp_helpers import make_request, make_span

ADMIN = "bundle-admin-" + uuid.uuid4().hex[:8]
DAY_NS = 86_400 * 10**9
NOW = datetime.now(tz=timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
SINCE, UNTIL = (NOW - timedelta(days=20)).date().isoformat(), (NOW - timedelta(days=5)).date().isoformat()
SERVER_ENV = {"FLIGHTREC_API_TOKEN": ADMIN, "FLIGHTREC_CHECKPOINT_INTERVAL_S": "0", "FLIGHTREC_EXPORT_MAX_SPANS": "50",
              "FLIGHTREC_BUNDLE_VERIFY_MAX_BYTES": str(2 * 1024 * 1024)}
TRACES = {  # name: (agent, object attribute, object id, days ago, spans)
    "A": ("finance-agent", "invoice.id", "INV-1001", 10, 3),
    "B": ("finance-agent", "invoice.id", "INV-1002", 12, 3),
    "C": ("billing-agent", "invoice.id", "INV-1003", 10, 3),
    "D": ("finance-agent", "invoice.id", "INV-1004", 40, 3),
    "E": ("finance-agent", "ticket.id", "TCK-1", 10, 3),
    "F": ("bulk-agent", "invoice.id", "INV-9000", 10, 60),
}


def _start_ns(days_ago: int) -> int:
    return int((NOW - timedelta(days=days_ago)).timestamp()) * 10**9


def send_world(server: ServerProcess) -> dict[str, list[tuple[str, str]]]:
    """Send the traces; return each one's (trace id, span id) pairs."""
    sent: dict[str, list[tuple[str, str]]] = {}
    for name, (agent, attribute, ident, days_ago, count) in TRACES.items():
        trace = os.urandom(16)
        start = _start_ns(days_ago)
        root = make_span(f"{agent} handles {ident}", {"gen_ai.agent.name": agent, attribute: ident,
                                                       "customer.email": f"{name.lower()}@example.com"},
                         trace_id=trace, start_ns=start, duration_ns=50_000_000)
        children = [make_span(f"step-{index}", {"gen_ai.agent.name": agent, "n": index}, trace_id=trace,
                              parent=root.span_id, start_ns=start + (index + 1) * 1_000_000)
                    for index in range(count - 1)]
        spans = [root, *children]
        body = make_request(spans, {"service.name": agent}).SerializeToString()
        httpx.post(server.url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"},
                   timeout=30).raise_for_status()
        sent[name] = [(trace.hex(), span.span_id.hex()) for span in spans]
    server.wait_drained()
    return sent


def token_for(server: ServerProcess, role: str) -> str:
    created = api(server, "POST", "/api/principals", json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "roles": [role]})
    assert created.status_code == 201, created.text
    return created.json()["token"]


def api(server: ServerProcess, method: str, path: str, token: str = ADMIN, headers: dict | None = None,
        **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                         timeout=120, **kwargs)


def export(server: ServerProcess, token: str = ADMIN, **scope: str) -> httpx.Response:
    return api(server, "POST", "/api/evidence/exports", token, json=scope)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flightrec", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=cwd)
