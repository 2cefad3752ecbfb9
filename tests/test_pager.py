"""Pager payloads and single attempts, checked on a real local HTTP receiver that records every request.

Retries, backoff, restarts and giving up are the outbox's (tests/test_pager_outbox.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from flightrec.detectors.models import Alert, AlertTransition
from flightrec.detectors.pager import (
    AlertmanagerRouter,
    Delivery,
    PagerConfig,
    PagerDutyRouter,
    PagerRoutes,
    SlackRouter,
    WebhookRouter,
)
from tests.conftest import free_port
from tests.http_receiver import Recorded, Receiver, Reply

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
    assert payload["source"] == "support-agent"  # the agent, not a constant
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


# --- one attempt: what is worth retrying ----------------------------------------------------------------


def test_429_and_5xx_are_retryable_with_retry_after(receiver: Receiver) -> None:
    receiver.queue(Reply(429, {"message": "slow down"}, {"Retry-After": "7"}), Reply(503, "busy"))
    router = PagerDutyRouter(make_config(receiver))
    [limited] = router.send([fired()])
    [busy] = router.send([fired()])

    assert (limited.ok, limited.retryable, limited.retry_after_s, limited.status_code) == (False, True, 7.0, 429)
    assert "slow down" in (limited.error or "")
    assert (busy.ok, busy.retryable, busy.retry_after_s, busy.status_code) == (False, True, None, 503)
    assert len(receiver.requests) == 2  # one attempt each: a router never retries (nor sleeps)


def test_400_is_final_and_says_why(receiver: Receiver) -> None:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.summary' missing"]}
    receiver.queue(Reply(400, body))
    [delivery] = PagerDutyRouter(make_config(receiver)).send([fired()])

    assert len(receiver.requests) == 1
    assert not delivery.ok and not delivery.retryable and delivery.attempts == 1 and delivery.status_code == 400
    assert "Event object is invalid" in delivery.error and "'payload.summary' missing" in delivery.error


def test_network_failure_is_retryable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    config = PagerConfig(pagerduty_routing_key=SecretStr(ROUTING_KEY), pagerduty_url=closed)
    [delivery] = PagerDutyRouter(config).send([fired()])

    assert not delivery.ok and delivery.retryable and delivery.status_code is None
    assert "ConnectError" in (delivery.error or "")


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
    assert firing["labels"] == {  # identity only: nothing that changes between passes (no severity)
        "alertname": "version_regression",
        "agent": "support-agent",
        "group": "support-agent",
        "dedup_key": "version_regression:support-agent:error_rate",
    }
    assert firing["annotations"]["severity"] == "warning"
    assert firing["annotations"]["summary"] == make_alert().summary
    assert firing["annotations"]["p_value"] == "0.001" and firing["annotations"]["_9lives"] == "x"
    assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) for name in firing["annotations"])
    assert "ticket:TCK-1042" in firing["annotations"]["examples"]
    assert firing["startsAt"] == "2025-03-01T12:00:00Z"
    ahead = datetime.fromisoformat(firing["endsAt"]) - datetime.now(UTC)  # 4 re-send intervals, as Prometheus
    assert timedelta(seconds=4 * 60 - 30) < ahead <= timedelta(seconds=4 * 60)
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
    text = request.body["text"]  # the fallback text is mrkdwn too: escaped
    assert "🔥 FIRING [warning] support-agent: cost &lt;budget&gt; &amp; more" in text
    assert "✅ RESOLVED [warning] billing-agent: loop gone" in text
    blocks = request.body["blocks"]
    assert len(blocks) == 2
    assert "cost &lt;budget&gt; &amp; more" in blocks[0]["text"]["text"]
    assert "<http://ui.test/?object=ticket:TCK-1042|Story ticket:TCK-1042>" in blocks[0]["text"]["text"]


def test_slack_429_is_retryable_with_retry_after(receiver: Receiver) -> None:
    receiver.queue(Reply(429, b"rate_limited", {"Retry-After": "3"}))
    config = make_config(receiver, slack_webhook_url=SecretStr(f"{receiver.url}/services/{SLACK_TOKEN}"))
    [delivery] = SlackRouter(config).send([fired()])
    assert not delivery.ok and delivery.retryable and delivery.retry_after_s == 3.0 and len(receiver.requests) == 1


def test_webhook_body_carries_changes_and_alert_json(receiver: Receiver) -> None:
    config = make_config(receiver, webhook_url=f"{receiver.url}/hook")
    transitions = [fired(), resolved()]
    WebhookRouter(config).send(transitions)

    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.body["version"] == "1" and request.body["type"] == "alert.changed"
    assert [t["change"] for t in request.body["transitions"]] == ["fired", "resolved"]
    sent = [Alert.model_validate(t["alert"]) for t in request.body["transitions"]]
    assert sent == [t.alert for t in transitions]


# --- routes ------------------------------------------------------------------------------------------------


class Exploding:
    name = "exploding"

    batch_size = 1

    def send(self, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]:
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
    receiver.queue(Reply(400, echo), Reply(500, echo))  # PagerDuty: 400; Slack: 500
    closed_url = f"http://127.0.0.1:{free_port()}/services/{SLACK_TOKEN}"
    unreachable = make_config(receiver, slack_webhook_url=SecretStr(closed_url))
    with PagerRoutes.from_config(make_config(receiver, slack_webhook_url=SecretStr(slack_url))) as routes:
        routes.routers.append(SlackRouter(unreachable))
        deliveries = routes.notify([fired()])

    assert [(d.router, d.ok) for d in deliveries] == [("pagerduty", False), ("slack", False), ("slack", False)]
    assert "HTTP Request: POST ***" in caplog.text  # httpx logged the Slack request, URL masked
    assert "pager slack: attempt failed" in caplog.text and "pager pagerduty: attempt failed" in caplog.text
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


# --- hostile names: Slack escaping, encoded links ------------------------------------------------------

ODD_AGENT = "ops team/eu?x=1#frag 客服&<b>"


def test_slack_never_lets_an_agent_name_ping_or_link(receiver: Receiver) -> None:
    config = make_config(receiver, slack_webhook_url=SecretStr(f"{receiver.url}/services/{SLACK_TOKEN}"))
    SlackRouter(config).send([fired(agent="<!channel>", summary="<@U123> spent <https://evil.test|your money> & more")])

    [request] = receiver.requests
    texts = [request.body["text"]] + [block["text"]["text"] for block in request.body["blocks"]]
    for text in texts:  # the fallback text and every mrkdwn field
        assert "<!channel>" not in text and "<@U123>" not in text and "<https://evil.test" not in text
        assert "&lt;!channel&gt;" in text and "&lt;@U123&gt;" in text and "&amp; more" in text
        assert re.search(r"&(?!amp;|lt;|gt;)", text) is None  # every & is an entity
    # the only Slack markup left is our own links: <url|text>, the url without spaces, | or >
    markup = re.findall(r"<([^<>]*)>", texts[1])
    assert markup and all(re.fullmatch(r"http://ui\.test/[^\s|<>]*\|[^<>|]*", link) for link in markup)


def test_links_are_url_encoded_in_every_payload(receiver: Receiver) -> None:
    raw_links = {"triage": f"http://ui.test/triage?agent={ODD_AGENT}", "story 1": "http://ui.test/?object=order:ORD 7",
                 "runbook": "http://wiki.test/run book|x>y"}  # as the alert lifecycle stores them: not encoded
    transition = fired(agent=ODD_AGENT, group=ODD_AGENT, objects=["order:ORD 7/8?#", "ticket:Заявка-1"],
                       links=raw_links)
    config = make_config(receiver, alertmanager_url=receiver.url,
                         slack_webhook_url=SecretStr(f"{receiver.url}/services/{SLACK_TOKEN}"))
    PagerDutyRouter(config).send([transition])
    AlertmanagerRouter(config).send([transition])
    SlackRouter(config).send([transition])

    encoded_agent = "ops%20team%2Feu%3Fx%3D1%23frag%20%E5%AE%A2%E6%9C%8D%26%3Cb%3E"
    triage = f"http://ui.test/triage?agent={encoded_agent}&alert=al-1"
    stories = ["http://ui.test/?object=order:ORD%207%2F8%3F%23",
               "http://ui.test/?object=ticket:%D0%97%D0%B0%D1%8F%D0%B2%D0%BA%D0%B0-1"]
    event = receiver.bodies("/v2/enqueue")[0]
    assert [link["href"] for link in event["links"]] == [triage, *stories, "http://wiki.test/run%20book%7Cx%3Ey"]
    assert event["client_url"] == triage
    [am_alert] = receiver.bodies("/api/v2/alerts")[0]
    assert am_alert["generatorURL"] == triage and am_alert["annotations"]["triage_url"] == triage
    assert am_alert["annotations"]["examples"].split(" ") == [*stories, "http://wiki.test/run%20book%7Cx%3Ey"]
    slack = receiver.bodies(f"/services/{SLACK_TOKEN}")[0]["blocks"][0]["text"]["text"]
    assert f"<{triage.replace('&', '&amp;')}|Triage ops team/eu?x=1#frag 客服&amp;&lt;b&gt;>" in slack
    for href in [link["href"] for link in event["links"]]:
        assert re.fullmatch(r"[A-Za-z0-9:/?#\[\]@!$&'()*+,;=%._~-]+", href), href  # nothing left to encode


def test_pagerduty_source_names_the_agent_or_else_the_detector(receiver: Receiver) -> None:
    router = PagerDutyRouter(make_config(receiver))
    router.send([fired(agent="billing-agent"), fired(agent="", dedup_key="budget:object:order:1", detector="budget")])
    assert [r.body["payload"]["source"] for r in receiver.requests] == ["billing-agent", "budget"]


# --- generic webhook: Standard Webhooks signatures ----------------------------------------------------------

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """The receiver's side, written from the Standard Webhooks spec: HMAC-SHA256 over "{id}.{timestamp}.{body}"
    with the base64-decoded key after whsec_, any of the space-delimited "v1,<base64>" signatures, a fresh timestamp."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = (lowered.get(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures) or abs(time.time() - int(stamp)) > tolerance_s:
        return False
    key = base64.b64decode(secret[len("whsec_"):])
    expected = hmac.new(key, msg_id.encode() + b"." + stamp.encode() + b"." + body, hashlib.sha256).digest()
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
            return True
    return False


def wire_body(recorded: Recorded) -> bytes:
    """The request body as sent: the receiver keeps it parsed; compact JSON re-encodes it to the same bytes,
    which the Content-Length the sender declared confirms."""
    body = json.dumps(recorded.body, separators=(",", ":"), ensure_ascii=False).encode()
    assert int(recorded.headers["Content-Length"]) == len(body)
    return body


def test_webhook_is_signed_per_standard_webhooks_and_a_tampered_body_fails(receiver: Receiver) -> None:
    config = make_config(receiver, webhook_url=f"{receiver.url}/hook", webhook_secret=SecretStr(WEBHOOK_SECRET))
    [delivery] = WebhookRouter(config).send([fired(agent=ODD_AGENT)], "0001entry")

    assert delivery.ok
    [request] = receiver.requests
    headers = request.headers
    assert headers["webhook-id"] == "msg_0001entry" and "." not in headers["webhook-id"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,")
    body = wire_body(request)
    assert request.body["type"] == "alert.fired" and request.body["transitions"][0]["alert"]["agent"] == ODD_AGENT
    assert verify_standard_webhook(WEBHOOK_SECRET, headers, body)

    assert not verify_standard_webhook(WEBHOOK_SECRET, headers, body.replace(b'"fired"', b'"resolved"', 1))
    assert not verify_standard_webhook(WEBHOOK_SECRET, headers | {"webhook-id": "msg_other"}, body)
    assert not verify_standard_webhook(WEBHOOK_SECRET, headers | {"webhook-timestamp": str(int(time.time()) - 3600)},
                                       body)
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    assert not verify_standard_webhook(other, headers, body)


def test_webhook_secret_must_be_whsec_base64(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookRouter(make_config(receiver, webhook_url=f"{receiver.url}/hook", webhook_secret=SecretStr("whsec_%%%")))


def test_unsigned_webhook_without_a_secret(receiver: Receiver) -> None:
    WebhookRouter(make_config(receiver, webhook_url=f"{receiver.url}/hook")).send([fired()])
    assert "webhook-signature" not in receiver.requests[0].headers and receiver.requests[0].headers["webhook-id"]
