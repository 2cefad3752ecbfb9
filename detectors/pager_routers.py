"""One router per destination; each turns alert transitions into that destination's HTTP requests.

A router makes one attempt per request and reports it; retries, backoff and giving up belong to the
outbox (:mod:`detectors.outbox`). ``batch_size`` says how many transitions one request may carry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import httpx

from flightrec.detectors.models import AlertTransition
from flightrec.detectors.pager_core import (
    REDACT,
    Delivery,
    PagerConfig,
    alert_links,
    iso,
    post_once,
    triage_link,
    truncate,
)

SUMMARY_MAX = 1024  # PagerDuty's payload.summary limit, used for every destination
DEDUP_KEY_MAX = 255  # PagerDuty's dedup_key limit
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
ALERTMANAGER_ENDS_AFTER = 4  # a firing alert's endsAt is this many re-send intervals ahead, as Prometheus does
SLACK_MAX_BLOCKS = 50
HEADLINE = {"fired": ("🔥", "FIRING"), "resolved": ("✅", "RESOLVED")}


class HttpRouter:
    """Base of the routers: a config, an HTTP client (shared or owned), one attempt per request."""

    name: ClassVar[str]
    batch_size: ClassVar[int] = 1

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.client = client or httpx.Client(timeout=config.timeout_s)
        self.owns_client = client is None

    def send(self, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]:
        """One attempt; ``message_id`` identifies the message across its retries (the outbox entry)."""
        raise NotImplementedError

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    def deliver(
        self, url: str, body: object, transitions: list[AlertTransition], headers: dict[str, str] | None = None
    ) -> list[Delivery]:
        outcome = post_once(self.client, url, body, target=self.name, headers=headers)
        return outcome.deliveries(self.name, transitions)


def pagerduty_dedup_key(key: str) -> str:
    """``key`` if it fits PagerDuty's 255 characters, else a stable prefix + hash (same for trigger and resolve)."""
    if len(key) <= DEDUP_KEY_MAX:
        return key
    return f"{key[: DEDUP_KEY_MAX - 17]}~{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class PagerDutyRouter(HttpRouter):
    """PagerDuty Events API v2: one trigger or resolve event per transition."""

    name = "pagerduty"

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None) -> None:
        if config.pagerduty_routing_key is None:
            raise ValueError("PagerDutyRouter needs pagerduty_routing_key")
        super().__init__(config, client)
        REDACT.add(config.pagerduty_routing_key.get_secret_value())

    def event(self, transition: AlertTransition) -> dict[str, object]:
        """The Events v2 body: a resolve carries only routing_key, event_action and the trigger's dedup_key."""
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
            "source": alert.agent or alert.detector,  # the agent misbehaving (detector-wide alerts: the detector)
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

    def send(self, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]:
        return [d for t in transitions for d in self.deliver(self.config.pagerduty_url, self.event(t), [t])]


def annotation_name(key: str) -> str:
    """A detail key as a valid Alertmanager label/annotation name."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


class AlertmanagerRouter(HttpRouter):
    """Alertmanager's v2 API (``POST {url}/api/v2/alerts``): labels are the alert's identity, so they hold
    only what never changes between passes; severity and everything else are annotations. A firing alert
    is re-sent while it fires (see the outbox) with ``endsAt`` a few intervals ahead; a resolve is the same
    labels with ``endsAt`` at the resolve time."""

    name = "alertmanager"
    batch_size = 100

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None) -> None:
        if not config.alertmanager_url:
            raise ValueError("AlertmanagerRouter needs alertmanager_url")
        super().__init__(config, client)
        REDACT.add_url(config.alertmanager_url)

    @staticmethod
    def labels(transition: AlertTransition) -> dict[str, str]:
        """The identity: set when the alert is born and never changed (detector, agent, group, dedup key)."""
        alert = transition.alert
        labels = {"alertname": alert.detector, "agent": alert.agent, "group": alert.group, "dedup_key": alert.dedup_key}
        return {key: value for key, value in labels.items() if value}

    def alert(self, transition: AlertTransition, now: datetime | None = None) -> dict[str, object]:
        alert = transition.alert
        details = "\n".join(f"{key}: {value}" for key, value in alert.details.items())
        annotations = {annotation_name(key): value for key, value in alert.details.items()}
        annotations |= {
            "severity": alert.severity,
            "summary": truncate(alert.summary, SUMMARY_MAX),
            "description": f"{alert.summary}\n{details}".strip(),
            "alert_id": alert.id,
            "triage_url": triage_link(self.config, alert),
            "examples": " ".join(link["href"] for link in alert_links(self.config, alert)[1:]),
        }
        if transition.change == "resolved":
            ends_at = alert.resolved_at or alert.updated_at
        else:
            ahead = timedelta(seconds=self.config.alertmanager_resend_s * ALERTMANAGER_ENDS_AFTER)
            ends_at = (now or datetime.now(UTC)) + ahead
        return {
            "labels": self.labels(transition),
            "annotations": {key: value for key, value in annotations.items() if value},
            "startsAt": iso(alert.started_at),
            "endsAt": iso(ends_at),
            "generatorURL": triage_link(self.config, alert),
        }

    def send(self, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]:
        if not transitions:
            return []
        assert self.config.alertmanager_url is not None
        url = f"{self.config.alertmanager_url.rstrip('/')}/api/v2/alerts"
        now = datetime.now(UTC)
        return self.deliver(url, [self.alert(t, now) for t in transitions], transitions)


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities, so no text can mention, link or ping (``<!channel>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackRouter(HttpRouter):
    """A Slack incoming webhook: one message per batch, a line and a block per transition; every text escaped."""

    name = "slack"
    batch_size = SLACK_MAX_BLOCKS - 1

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None) -> None:
        if config.slack_webhook_url is None:
            raise ValueError("SlackRouter needs slack_webhook_url")
        super().__init__(config, client)
        url = config.slack_webhook_url.get_secret_value()
        path = httpx.URL(url).path  # the token part, in case an error message quotes it alone
        REDACT.add(url)
        REDACT.add(path if len(path) > 8 else None)

    @staticmethod
    def headline(transition: AlertTransition) -> str:
        """The transition in one line, escaped for Slack."""
        alert = transition.alert
        emoji, word = HEADLINE[transition.change]
        who = alert.agent or alert.detector
        return slack_escape(f"{emoji} {word} [{alert.severity}] {who}: {truncate(alert.summary, SUMMARY_MAX)}")

    def block(self, transition: AlertTransition) -> dict[str, object]:
        links = " · ".join(
            f"<{slack_escape(link['href'])}|{slack_escape(link['text'])}>"
            for link in alert_links(self.config, transition.alert)
        )
        text = f"{self.headline(transition)}\n{links}"
        return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}

    def message(self, transitions: list[AlertTransition]) -> dict[str, object]:
        blocks = [self.block(t) for t in transitions[: SLACK_MAX_BLOCKS - 1]]
        if len(transitions) > len(blocks):
            more = f"… and {len(transitions) - len(blocks)} more"
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        return {"text": truncate("\n".join(self.headline(t) for t in transitions), 39_000), "blocks": blocks}

    def send(self, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]:
        if not transitions:
            return []
        assert self.config.slack_webhook_url is not None
        return self.deliver(self.config.slack_webhook_url.get_secret_value(), self.message(transitions), transitions)


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_``."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret must be whsec_ followed by base64 (Standard Webhooks)") from exc


def sign_webhook(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` (Standard Webhooks, symmetric)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()).decode()


class WebhookRouter(HttpRouter):
    """A generic webhook, one message per transition, signed per Standard Webhooks when a secret is set:
    ``webhook-id`` (the same on every retry), ``webhook-timestamp`` (this attempt), ``webhook-signature``.
    Body: ``{"type": "alert.fired"|"alert.resolved", "timestamp", "version": "1", "transitions": [{change, alert}]}``."""

    name = "webhook"

    def __init__(self, config: PagerConfig, client: httpx.Client | None = None) -> None:
        if not config.webhook_url:
            raise ValueError("WebhookRouter needs webhook_url")
        if config.webhook_secret is not None:
            webhook_key(config.webhook_secret.get_secret_value())  # refuse a malformed secret now, not per send
            REDACT.add(config.webhook_secret.get_secret_value())
        super().__init__(config, client)
        REDACT.add_url(config.webhook_url)

    @staticmethod
    def body(transitions: list[AlertTransition]) -> bytes:
        changes = {t.change for t in transitions}
        last = transitions[-1].alert
        payload = {
            "type": f"alert.{changes.pop()}" if len(changes) == 1 else "alert.changed",
            "timestamp": iso(last.resolved_at or last.updated_at),
            "version": "1",
            "transitions": [{"change": t.change, "alert": t.alert.model_dump(mode="json")} for t in transitions],
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def send(self, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]:
        if not transitions:
            return []
        assert self.config.webhook_url is not None
        body = self.body(transitions)
        message_id = "msg_" + re.sub(r"[^A-Za-z0-9_-]", "_", message_id or uuid.uuid4().hex)  # never a "."
        timestamp = int(time.time())
        headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
        if self.config.webhook_secret is not None:
            headers["webhook-signature"] = sign_webhook(
                self.config.webhook_secret.get_secret_value(), message_id, timestamp, body
            )
        return self.deliver(self.config.webhook_url, body, transitions, headers)
