"""A page survives the server: fired while every destination is down, delivered after a restart,
and resolved later, to PagerDuty, Alertmanager and Slack as their APIs define."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import ServerProcess, wait_for
from tests.http_receiver import Receiver, Reply
from tests.otlp_helpers import make_request, make_span

pytestmark = pytest.mark.slow
ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"
PATHS = ("/v2/enqueue", "/api/v2/alerts", "/slack")


def pager_env(receiver: Receiver, object_budget: str) -> dict[str, str]:
    return {
        "FLIGHTREC_DETECT_INTERVAL_S": "0",
        "FLIGHTREC_OBJECT_BUDGET_USD": object_budget,
        "FLIGHTREC_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "FLIGHTREC_PAGERDUTY_URL": f"{receiver.url}/v2/enqueue",
        "FLIGHTREC_ALERTMANAGER_URL": receiver.url,
        "FLIGHTREC_SLACK_WEBHOOK_URL": f"{receiver.url}/slack",
        "FLIGHTREC_PAGER_BACKOFF_INITIAL_S": "0.2",
        "FLIGHTREC_PAGER_BACKOFF_MAX_S": "1",
    }


def test_a_page_fired_while_destinations_are_down_is_delivered_after_a_restart_and_resolved(
    tmp_path, receiver: Receiver
) -> None:
    for path in PATHS:
        receiver.queue(*[Reply(503) for _ in range(1000)], path=path)
    data = tmp_path / "srv"
    server = ServerProcess(data, env=pager_env(receiver, "5")).start()
    try:
        expensive = make_span("refund", {"ticket.id": "TCK-PAGE", "flightrec.cost.usd": 12.0,
                                         "gen_ai.agent.name": "refund-agent"}, start_ns=time.time_ns() - 10**9)
        httpx.post(f"{server.url}/v1/traces", content=make_request([expensive]).SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"}, timeout=30).raise_for_status()
        server.wait_drained()
        with server.client() as api:
            fired = api.post("/api/detectors/run", timeout=120).raise_for_status().json()["fired"]
        [alert] = [a for a in fired if a["dedup_key"] == "budgets:object:ticket:TCK-PAGE"]
        wait_for(lambda: all(receiver.at(path) for path in PATHS), what="a first, failing attempt per destination")
    finally:
        server.stop()

    with receiver.lock:
        receiver.replies.clear()  # the destinations are back
        receiver.requests.clear()
    server = ServerProcess(data, env=pager_env(receiver, "5")).start()
    try:
        wait_for(lambda: all(receiver.at(path) for path in PATHS), what="the pending pages after the restart")
    finally:
        server.stop()
    [trigger] = [b for b in receiver.bodies("/v2/enqueue") if b["event_action"] == "trigger"][:1]
    assert trigger["routing_key"] == ROUTING_KEY and trigger["dedup_key"] == alert["dedup_key"]
    firing = receiver.bodies("/api/v2/alerts")[0][0]
    assert firing["labels"]["alertname"] and "severity" not in firing["labels"]
    assert "TCK-PAGE" in str(receiver.bodies("/slack")[0])

    with receiver.lock:
        receiver.requests.clear()
    server = ServerProcess(data, env=pager_env(receiver, "1000")).start()  # the budget is raised: healthy
    try:
        with server.client() as api:
            resolved = api.post("/api/detectors/run", timeout=120).raise_for_status().json()["resolved"]
        assert alert["dedup_key"] in [a["dedup_key"] for a in resolved]
        wait_for(lambda: any(b["event_action"] == "resolve" for b in receiver.bodies("/v2/enqueue"))
                 and receiver.at("/api/v2/alerts") and receiver.at("/slack"), what="the resolves")
    finally:
        server.stop()
    resolve = [b for b in receiver.bodies("/v2/enqueue") if b["event_action"] == "resolve"][0]
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": alert["dedup_key"]}
    ended = [a for body in receiver.bodies("/api/v2/alerts") for a in body if a["labels"] == firing["labels"]]
    assert ended and ended[-1]["endsAt"] <= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 5))
