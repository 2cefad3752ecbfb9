"""Pager deliveries, checked on a real local HTTP receiver that records every request."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from detectors.models import Alert, AlertTransition
from detectors.pager import (
    AlertmanagerRouter,
    Delivery,
    PagerConfig,
    PagerDutyRouter,
    PagerRoutes,
    SlackRouter,
    WebhookRouter,
)
from tests.conftest import free_port
from tests.http_receiver import Receiver, Reply

ROUTING_KEY = "R0UT1NGKEY-0123456789abcdef0123"
SLACK_TOKEN = "T0000/B0000/XXXXSECRETSLACKTOKEN"
STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RESOLVED = STARTED + timedelta(minutes=30)


def make_config(receiver: Receiver, **overrides: object) -> PagerConfig:
    values: dict[str, object] = {
        "pagerduty_routing_key": SecretStr(ROUTING_KEY),
        "pagerduty_url": f"{receiver.url}/v2/enqueue",
        "ui_url": "http://ui.test",
        "timeout_s": 2,
        "max_attempts": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return PagerConfig(**(values | overrides))


def make_alert(**overrides: object) -> Alert:
    values: dict[str, object] = {
        "id": "al-1",
        "detector": "version_regression",
        "agent": "support-agent",
        "status": "firing",
        "severity": "warning",
        "summary": "support-agent error rate 2% -> 19% after model gpt-4o -> gpt-4o-mini",
        "dedup_key": "version_regression:support-agent:error_rate",
        "group": "support-agent",
        "started_at": STARTED,
        "updated_at": STARTED,
        "details": {"metric": "error_rate", "before": "0.02", "after": "0.19"},
        "traces": ["a" * 32],
        "objects": ["ticket:TCK-1042", "order:ORD 7"],
    }
    return Alert(**(values | overrides))


def fired(**overrides: object) -> AlertTransition:
    return AlertTransition(alert=make_alert(**overrides), change="fired")


def resolved(**overrides: object) -> AlertTransition:
    values = {"status": "resolved", "resolved_at": RESOLVED, "updated_at": RESOLVED} | overrides
    return AlertTransition(alert=make_alert(**values), change="resolved")


# --- PagerDuty Events API v2 -------------------------------------------------------------------------


def test_pagerduty_trigger_follows_events_v2_rules(receiver: Receiver) -> None:
    config = make_config(receiver)
    [delivery] = PagerDutyRouter(config).send([fired(summary="x" * 5000, severity="critical")])

    assert delivery == Delivery(
        router="pagerduty", dedup_key=make_alert().dedup_key, change="fired", ok=True, status_code=202, attempts=1
    )
    [request] = receiver.requests
    assert request.path == "/v2/enqueue"
    assert request.headers["Content-Type"] == "application/json"
    event = request.body
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "version_regression:support-agent:error_rate"
    payload = event["payload"]
    assert len(payload["summary"]) == 1024 and payload["summary"].endswith("…")
    assert payload["severity"] == "critical" and payload["severity"] in {"critical", "error", "warning", "info"}
    assert payload["source"] == "flightrec"
    assert payload["component"] == "support-agent"
    assert payload["group"] == "support-agent"
    assert payload["class"] == "version_regression"
    assert payload["timestamp"] == "2025-03-01T12:00:00Z"
    details = payload["custom_details"]
    assert details["after"] == "0.19" and details["example_objects"] == ["ticket:TCK-1042", "order:ORD 7"]
    hrefs = [link["href"] for link in event["links"]]
    assert hrefs[0].startswith("http://ui.test/triage?agent=support-agent")
    assert "http://ui.test/?object=ticket:TCK-1042" in hrefs
    assert "http://ui.test/?object=order:ORD%207" in hrefs
    assert all(link["text"] for link in event["links"])
    assert event["client"] == "Flight Recorder" and event["client_url"] == hrefs[0]


@pytest.mark.parametrize("severity", ["critical", "error", "warning", "info"])
def test_pagerduty_severity_passes_through(receiver: Receiver, severity: str) -> None:
    PagerDutyRouter(make_config(receiver)).send([fired(severity=severity)])
    assert receiver.requests[0].body["payload"]["severity"] == severity


def test_pagerduty_resolve_reuses_trigger_dedup_key_and_has_no_payload(receiver: Receiver) -> None:
    router = PagerDutyRouter(make_config(receiver))
    deliveries = router.send([fired()]) + router.send([resolved()])

    assert [d.ok for d in deliveries] == [True, True]
    trigger, resolve = (r.body for r in receiver.requests)
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}


def test_pagerduty_long_dedup_key_is_capped_and_stable(receiver: Receiver) -> None:
    key = "budget:" + "object:" * 60
    router = PagerDutyRouter(make_config(receiver))
    router.send([fired(dedup_key=key), resolved(dedup_key=key), fired(dedup_key=key + "other")])

    keys = [r.body["dedup_key"] for r in receiver.requests]
    assert all(len(k) <= 255 for k in keys)
    assert keys[0] == keys[1] != keys[2]


# --- retries -------------------------------------------------------------------------------------------


def test_429_and_503_are_retried_until_success(receiver: Receiver) -> None:
    receiver.queue(Reply(429, {"message": "slow down"}, {"Retry-After": "0"}), Reply(503, "busy"), Reply(202))
    [delivery] = PagerDutyRouter(make_config(receiver, max_attempts=5)).send([fired()])

    assert delivery.ok and delivery.attempts == 3 and delivery.status_code == 202 and delivery.error is None
    assert len(receiver.requests) == 3
    assert all(r.body == receiver.requests[0].body for r in receiver.requests)


def test_backoff_doubles_and_retry_after_is_honoured_up_to_the_cap(receiver: Receiver) -> None:
    receiver.queue(
        Reply(429, {}, {"Retry-After": "3"}), Reply(500), Reply(502), Reply(429, {}, {"Retry-After": "60"}), Reply(202)
    )
    waits: list[float] = []
    config = make_config(receiver, max_attempts=5, backoff_initial_s=0.5, backoff_max_s=8)
    [delivery] = PagerDutyRouter(config, sleep=waits.append).send([fired()])

    assert delivery.ok and delivery.attempts == 5
    assert waits == [3.0, 1.0, 2.0, 8.0]


def test_5xx_gives_up_after_max_attempts(receiver: Receiver) -> None:
    receiver.queue(*[Reply(503, {"message": "unavailable"})] * 10)
    [delivery] = PagerDutyRouter(make_config(receiver, max_attempts=3)).send([fired()])

    assert not delivery.ok and delivery.attempts == 3 and delivery.status_code == 503
    assert "unavailable" in (delivery.error or "")
    assert len(receiver.requests) == 3


def test_400_is_not_retried_and_says_why(receiver: Receiver) -> None:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.summary' missing"]}
    receiver.queue(Reply(400, body))
    [delivery] = PagerDutyRouter(make_config(receiver, max_attempts=5)).send([fired()])

    assert len(receiver.requests) == 1
    assert not delivery.ok and delivery.attempts == 1 and delivery.status_code == 400
    assert "Event object is invalid" in delivery.error and "'payload.summary' missing" in delivery.error


def test_network_failure_reports_after_max_attempts() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    config = PagerConfig(pagerduty_routing_key=SecretStr(ROUTING_KEY), pagerduty_url=closed, max_attempts=4)
    [delivery] = PagerDutyRouter(config, sleep=waits.append).send([fired()])

    assert not delivery.ok and delivery.attempts == 4 and delivery.status_code is None
    assert "ConnectError" in (delivery.error or "")
    assert waits == [0.5, 1.0, 2.0]


# --- Alertmanager, Slack, generic webhook ----------------------------------------------------------------


def test_alertmanager_posts_one_batch_with_labels_annotations_and_times(receiver: Receiver) -> None:
    receiver.queue(Reply(200, ""))
    config = make_config(receiver, alertmanager_url=receiver.url + "/")
    transitions = [fired(details={"p-value": "0.001", "9lives": "x"}), resolved(id="al-2", dedup_key="loop:a:b")]
    deliveries = AlertmanagerRouter(config).send(transitions)

    assert [(d.ok, d.dedup_key, d.change) for d in deliveries] == [
        (True, "version_regression:support-agent:error_rate", "fired"),
        (True, "loop:a:b", "resolved"),
    ]
    [request] = receiver.requests
    assert request.path == "/api/v2/alerts"
    firing, done = request.body
    assert firing["labels"] == {
        "alertname": "version_regression",
        "agent": "support-agent",
        "severity": "warning",
        "group": "support-agent",
        "dedup_key": "version_regression:support-agent:error_rate",
    }
    assert firing["annotations"]["summary"] == make_alert().summary
    assert firing["annotations"]["p_value"] == "0.001" and firing["annotations"]["_9lives"] == "x"
    assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) for name in firing["annotations"])
    assert "ticket:TCK-1042" in firing["annotations"]["examples"]
    assert firing["startsAt"] == "2025-03-01T12:00:00Z"
    assert datetime.fromisoformat(firing["endsAt"]) > datetime.now(UTC) + timedelta(hours=1)
    assert firing["generatorURL"].startswith("http://ui.test/triage?")
    assert done["labels"]["dedup_key"] == "loop:a:b"
    assert done["startsAt"] == "2025-03-01T12:00:00Z" and done["endsAt"] == "2025-03-01T12:30:00Z"


def test_slack_message_reads_firing_and_resolved_with_links(receiver: Receiver) -> None:
    receiver.queue(Reply(200, b"ok"))
    config = make_config(receiver, slack_webhook_url=SecretStr(f"{receiver.url}/services/{SLACK_TOKEN}"))
    transitions = [fired(summary="cost <budget> & more"), resolved(agent="billing-agent", summary="loop gone")]
    deliveries = SlackRouter(config).send(transitions)

    assert [d.ok for d in deliveries] == [True, True]
    [request] = receiver.requests
    assert request.path == f"/services/{SLACK_TOKEN}"
    text = request.body["text"]
    assert "🔥 FIRING [warning] support-agent: cost <budget> & more" in text
    assert "✅ RESOLVED [warning] billing-agent: loop gone" in text
    blocks = request.body["blocks"]
    assert len(blocks) == 2
    assert "cost &lt;budget&gt; &amp; more" in blocks[0]["text"]["text"]
    assert "<http://ui.test/?object=ticket:TCK-1042|Story ticket:TCK-1042>" in blocks[0]["text"]["text"]


def test_slack_answers_429_with_retry_after(receiver: Receiver) -> None:
    receiver.queue(Reply(429, b"rate_limited", {"Retry-After": "0"}), Reply(200, b"ok"))
    config = make_config(receiver, slack_webhook_url=SecretStr(f"{receiver.url}/services/{SLACK_TOKEN}"))
    [delivery] = SlackRouter(config).send([fired()])
    assert delivery.ok and delivery.attempts == 2 and len(receiver.requests) == 2


def test_webhook_body_carries_changes_and_alert_json(receiver: Receiver) -> None:
    config = make_config(receiver, webhook_url=f"{receiver.url}/hook")
    transitions = [fired(), resolved()]
    WebhookRouter(config).send(transitions)

    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.body["version"] == "1"
    assert [t["change"] for t in request.body["transitions"]] == ["fired", "resolved"]
    sent = [Alert.model_validate(t["alert"]) for t in request.body["transitions"]]
    assert sent == [t.alert for t in transitions]


# --- routes ------------------------------------------------------------------------------------------------


class Exploding:
    name = "exploding"

    def send(self, transitions: list[AlertTransition]) -> list[Delivery]:
        raise RuntimeError("bug in a router")


def test_from_config_builds_only_configured_routers(receiver: Receiver) -> None:
    assert PagerRoutes.from_config(PagerConfig()).routers == []
    routes = PagerRoutes.from_config(make_config(receiver, webhook_url=f"{receiver.url}/hook"))
    assert [r.name for r in routes.routers] == ["pagerduty", "webhook"]
    assert routes.notify([]) == [] and receiver.requests == []
    routes.close()


def test_notify_goes_on_when_one_destination_fails(receiver: Receiver) -> None:
    config = make_config(
        receiver,
        pagerduty_url=f"http://127.0.0.1:{free_port()}/v2/enqueue",  # nothing listens there
        alertmanager_url=receiver.url,
        slack_webhook_url=SecretStr(f"{receiver.url}/services/{SLACK_TOKEN}"),
        webhook_url=f"{receiver.url}/hook",
    )
    with PagerRoutes.from_config(config) as routes:
        routes.routers.insert(1, Exploding())
        deliveries = routes.notify([fired()])

    outcome = {d.router: d.ok for d in deliveries}
    assert outcome == {"pagerduty": False, "exploding": False, "alertmanager": True, "slack": True, "webhook": True}
    assert sorted(r.path for r in receiver.requests) == ["/api/v2/alerts", "/hook", f"/services/{SLACK_TOKEN}"]
    assert "bug in a router" in next(d.error for d in deliveries if d.router == "exploding")


def test_secrets_never_reach_logs_or_deliveries(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    slack_url = f"{receiver.url}/services/{SLACK_TOKEN}"
    echo = {"message": f"bad routing_key {ROUTING_KEY}", "errors": [f"unknown webhook {slack_url}"]}
    receiver.queue(Reply(400, echo), *[Reply(500, echo)] * 3)  # PagerDuty: 400; Slack: 500 x 3
    closed_url = f"http://127.0.0.1:{free_port()}/services/{SLACK_TOKEN}"
    unreachable = make_config(receiver, slack_webhook_url=SecretStr(closed_url))
    with PagerRoutes.from_config(make_config(receiver, slack_webhook_url=SecretStr(slack_url))) as routes:
        routes.routers.append(SlackRouter(unreachable))
        deliveries = routes.notify([fired()])

    assert [(d.router, d.ok) for d in deliveries] == [("pagerduty", False), ("slack", False), ("slack", False)]
    assert "HTTP Request: POST ***" in caplog.text  # httpx logged the Slack request, URL masked
    assert "pager slack: not delivered" in caplog.text and "pager pagerduty: not delivered" in caplog.text
    shown = caplog.text + "".join(d.model_dump_json() for d in deliveries)
    assert ROUTING_KEY not in shown and SLACK_TOKEN not in shown and "SECRETSLACKTOKEN" not in shown


def test_config_repr_hides_secrets() -> None:
    config = PagerConfig(
        pagerduty_routing_key=ROUTING_KEY, slack_webhook_url=f"https://hooks.slack.com/services/{SLACK_TOKEN}"
    )
    for shown in (repr(config), str(config), config.model_dump_json(), repr(config.model_dump())):
        assert ROUTING_KEY not in shown and SLACK_TOKEN not in shown
    assert config.pagerduty_routing_key.get_secret_value() == ROUTING_KEY
    assert all(field.description for field in PagerConfig.model_fields.values())
