"""One router per destination; each turns alert transitions into that destination's HTTP requests."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import httpx

from detectors.models import AlertTransition
from detectors.pager_core import (
    REDACT,
    Delivery,
    PagerConfig,
    Sleep,
    alert_links,
    iso,
    post_with_retry,
    triage_link,
    truncate,
)

SUMMARY_MAX = 1024  # PagerDuty's payload.summary limit, used for every destination
DEDUP_KEY_MAX = 255  # PagerDuty's dedup_key limit
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
ALERTMANAGER_FIRING_TTL = timedelta(hours=24)  # endsAt of a firing alert, so Alertmanager keeps it until resolved
SLACK_MAX_BLOCKS = 50
HEADLINE = {"fired": ("🔥", "FIRING"), "resolved": ("✅", "RESOLVED")}


class HttpRouter:
    """Base of the routers: a config, an HTTP client (shared or owned) and delivery through the retry loop."""

    name: ClassVar[str]

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None, sleep: Sleep = time.sleep) -> None:
        self.config = config
        self.client = client or httpx.Client(timeout=config.timeout_s)
        self.owns_client = client is None
        self.sleep = sleep

    def send(self, transitions: list[AlertTransition]) -> list[Delivery]:
        raise NotImplementedError

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    def deliver(self, url: str, body: object, transitions: list[AlertTransition]) -> list[Delivery]:
        outcome = post_with_retry(self.client, url, body, self.config, target=self.name, sleep=self.sleep)
        return outcome.deliveries(self.name, transitions)


def pagerduty_dedup_key(key: str) -> str:
    """``key`` if it fits PagerDuty's 255 characters, else a stable prefix + hash (same for trigger and resolve)."""
    if len(key) <= DEDUP_KEY_MAX:
        return key
    return f"{key[: DEDUP_KEY_MAX - 17]}~{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class PagerDutyRouter(HttpRouter):
    """PagerDuty Events API v2: one trigger or resolve event per transition."""

    name = "pagerduty"

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None, sleep: Sleep = time.sleep) -> None:
        if config.pagerduty_routing_key is None:
            raise ValueError("PagerDutyRouter needs pagerduty_routing_key")
        super().__init__(config, client, sleep)
        REDACT.add(config.pagerduty_routing_key.get_secret_value())

    def event(self, transition: AlertTransition) -> dict[str, object]:
        """The Events v2 body: a resolve carries only routing_key, event_action and dedup_key."""
        alert = transition.alert
        assert self.config.pagerduty_routing_key is not None
        event: dict[str, object] = {
            "routing_key": self.config.pagerduty_routing_key.get_secret_value(),
            "event_action": "trigger" if transition.change == "fired" else "resolve",
            "dedup_key": pagerduty_dedup_key(alert.dedup_key),
        }
        if transition.change == "resolved":
            return event
        payload = {
            "summary": truncate(alert.summary, SUMMARY_MAX),
            "source": "flightrec",
            "severity": alert.severity if alert.severity in PAGERDUTY_SEVERITIES else "error",
            "timestamp": iso(alert.started_at),
            "component": alert.agent,
            "group": alert.group,
            "class": alert.detector,
            "custom_details": {
                **alert.details,
                "alert_id": alert.id,
                "example_objects": alert.objects,
                "example_traces": alert.traces,
            },
        }
        event["payload"] = {key: value for key, value in payload.items() if value != ""}
        event["links"] = alert_links(self.config, alert)
        event["client"] = "Flight Recorder"
        event["client_url"] = triage_link(self.config, alert)
        return event

    def send(self, transitions: list[AlertTransition]) -> list[Delivery]:
        return [d for t in transitions for d in self.deliver(self.config.pagerduty_url, self.event(t), [t])]


def annotation_name(key: str) -> str:
    """A detail key as a valid Alertmanager label/annotation name."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


class AlertmanagerRouter(HttpRouter):
    """Alertmanager's v2 API: one POST of all transitions to ``{url}/api/v2/alerts``."""

    name = "alertmanager"

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None, sleep: Sleep = time.sleep) -> None:
        if not config.alertmanager_url:
            raise ValueError("AlertmanagerRouter needs alertmanager_url")
        super().__init__(config, client, sleep)
        REDACT.add_url(config.alertmanager_url)

    def alert(self, transition: AlertTransition) -> dict[str, object]:
        alert = transition.alert
        labels = {
            "alertname": alert.detector,
            "agent": alert.agent,
            "severity": alert.severity,
            "group": alert.group,
            "dedup_key": alert.dedup_key,
        }
        details = "\n".join(f"{key}: {value}" for key, value in alert.details.items())
        annotations = {annotation_name(key): value for key, value in alert.details.items()}
        annotations |= {
            "summary": truncate(alert.summary, SUMMARY_MAX),
            "description": f"{alert.summary}\n{details}".strip(),
            "alert_id": alert.id,
            "triage_url": triage_link(self.config, alert),
            "examples": " ".join(link["href"] for link in alert_links(self.config, alert)[1:]),
        }
        if transition.change == "resolved":
            ends_at = alert.resolved_at or alert.updated_at
        else:
            ends_at = datetime.now(UTC) + ALERTMANAGER_FIRING_TTL
        return {
            "labels": {key: value for key, value in labels.items() if value},
            "annotations": {key: value for key, value in annotations.items() if value},
            "startsAt": iso(alert.started_at),
            "endsAt": iso(ends_at),
            "generatorURL": triage_link(self.config, alert),
        }

    def send(self, transitions: list[AlertTransition]) -> list[Delivery]:
        if not transitions:
            return []
        assert self.config.alertmanager_url is not None
        url = f"{self.config.alertmanager_url.rstrip('/')}/api/v2/alerts"
        return self.deliver(url, [self.alert(t) for t in transitions], transitions)


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackRouter(HttpRouter):
    """A Slack incoming webhook: one message per batch, a line and a block per transition."""

    name = "slack"

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None, sleep: Sleep = time.sleep) -> None:
        if config.slack_webhook_url is None:
            raise ValueError("SlackRouter needs slack_webhook_url")
        super().__init__(config, client, sleep)
        url = config.slack_webhook_url.get_secret_value()
        path = httpx.URL(url).path  # the token part, in case an error message quotes it alone
        REDACT.add(url)
        REDACT.add(path if len(path) > 8 else None)

    @staticmethod
    def headline(transition: AlertTransition) -> str:
        alert = transition.alert
        emoji, word = HEADLINE[transition.change]
        who = alert.agent or alert.detector
        return f"{emoji} {word} [{alert.severity}] {who}: {truncate(alert.summary, SUMMARY_MAX)}"

    def block(self, transition: AlertTransition) -> dict[str, object]:
        links = " · ".join(
            f"<{link['href']}|{slack_escape(link['text'])}>" for link in alert_links(self.config, transition.alert)
        )
        text = f"{slack_escape(self.headline(transition))}\n{links}"
        return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}

    def message(self, transitions: list[AlertTransition]) -> dict[str, object]:
        blocks = [self.block(t) for t in transitions[: SLACK_MAX_BLOCKS - 1]]
        if len(transitions) > len(blocks):
            more = f"… and {len(transitions) - len(blocks)} more"
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        return {"text": truncate("\n".join(self.headline(t) for t in transitions), 39_000), "blocks": blocks}

    def send(self, transitions: list[AlertTransition]) -> list[Delivery]:
        if not transitions:
            return []
        assert self.config.slack_webhook_url is not None
        return self.deliver(self.config.slack_webhook_url.get_secret_value(), self.message(transitions), transitions)


class WebhookRouter(HttpRouter):
    """A generic webhook: ``{"version": "1", "transitions": [{"change", "alert"}]}`` per batch."""

    name = "webhook"

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None, sleep: Sleep = time.sleep) -> None:
        if not config.webhook_url:
            raise ValueError("WebhookRouter needs webhook_url")
        super().__init__(config, client, sleep)
        REDACT.add_url(config.webhook_url)

    def send(self, transitions: list[AlertTransition]) -> list[Delivery]:
        if not transitions:
            return []
        assert self.config.webhook_url is not None
        body = {
            "version": "1",
            "transitions": [{"change": t.change, "alert": t.alert.model_dump(mode="json")} for t in transitions],
        }
        return self.deliver(self.config.webhook_url, body, transitions)
