"""``/metrics`` from a real server, read by the Prometheus client's own text parser."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.otlp_helpers import make_request, make_span


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.mark.slow
def test_metrics_count_intake_writer_and_latency(server) -> None:
    before = scrape(server.url)
    good = make_span("ok", start_ns=time.time_ns())
    bad = make_span("ahead", start_ns=time.time_ns() + 10 * 86_400 * 10**9)
    headers = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(f"{server.url}/v1/traces", content=make_request([good, bad]).SerializeToString(),
                      headers=headers, timeout=30).status_code == 200
    assert httpx.post(f"{server.url}/v1/traces", content=b"\xff", headers=headers, timeout=30).status_code == 400
    server.wait_drained()
    with server.client() as client:
        client.get(f"/api/controls/agents/{'a b'}")
    after = scrape(server.url)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert delta("flightrec_intake_spans_total", result="accepted") == 1
    assert delta("flightrec_intake_spans_total", result="rejected") == 1
    assert delta("flightrec_intake_requests_total", result="refused") == 1
    assert delta("flightrec_writer_inserted_spans_total") == 1
    assert after[("flightrec_wal_backlog_spans", ())] == 0
    assert after[("flightrec_writer_up", ())] == 1 and after[("flightrec_health", ())] == 0
    assert after[("flightrec_quarantine_segments", ())] == 0
    # One embedded server is always the leader (tests/test_leader.py has contenders); its id names its process.
    assert after[("flightrec_leader", ())] == 1
    leader = httpx.get(f"{server.url}/api/health", timeout=10).json()["leader"]
    assert leader["is_leader"] is True and leader["holder"] == leader["node"] and leader["term"] >= 1
    assert leader["node"].startswith(f"{socket.gethostname()}-{server.proc.pid}-"), leader
    traces = ("flightrec_http_request_duration_seconds_count",
              (("method", "POST"), ("route", "/v1/traces"), ("status", "200")))
    assert after[traces] - before.get(traces, 0) == 1
    routes = {dict(labels).get("route") for name, labels in after if name.startswith("flightrec_http_request")}
    assert "a b" not in str(routes), "raw paths (agent names) must not become label values"
