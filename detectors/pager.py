"""Pager routing: tell PagerDuty, Alertmanager, Slack and a generic webhook about alert transitions.

``PagerRoutes.from_config(config).notify(transitions)`` sends each batch to every configured
destination and answers one ``Delivery`` per transition and destination; it never raises, and
no secret (PagerDuty routing key, Slack webhook URL) reaches a log line or a ``Delivery``.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import httpx

from detectors.models import AlertTransition
from detectors.pager_core import REDACT, Delivery, PagerConfig, Sleep
from detectors.pager_routers import AlertmanagerRouter, HttpRouter, PagerDutyRouter, SlackRouter, WebhookRouter

__all__ = [
    "AlertmanagerRouter",
    "Delivery",
    "PagerConfig",
    "PagerDutyRouter",
    "PagerRoutes",
    "Router",
    "SlackRouter",
    "WebhookRouter",
]

log = logging.getLogger("detectors.pager")


class Router(Protocol):
    """A destination: sends transitions, answers one Delivery per transition."""

    name: str

    def send(self, transitions: list[AlertTransition]) -> list[Delivery]: ...


class PagerRoutes:
    """The configured routers; a failing destination never stops the others."""

    def __init__(self, routers: list[Router], client: httpx.Client | None = None) -> None:
        self.routers = routers
        self.client = client

    @classmethod
    def from_config(cls, config: PagerConfig, sleep: Sleep = time.sleep) -> PagerRoutes:
        """One router per destination set in ``config``, sharing one HTTP client."""
        client = httpx.Client(timeout=config.timeout_s)
        wanted: list[tuple[object, type[HttpRouter]]] = [
            (config.pagerduty_routing_key, PagerDutyRouter),
            (config.alertmanager_url, AlertmanagerRouter),
            (config.slack_webhook_url, SlackRouter),
            (config.webhook_url, WebhookRouter),
        ]
        routers: list[Router] = [kind(config, client, sleep) for setting, kind in wanted if setting]
        return cls(routers, client)

    def notify(self, transitions: list[AlertTransition]) -> list[Delivery]:
        """Send to every router; a router that raises yields failed deliveries, logged without secrets."""
        if not transitions:
            return []
        deliveries: list[Delivery] = []
        for router in self.routers:
            try:
                deliveries += router.send(transitions)
            except Exception as exc:  # noqa: BLE001 - one destination's bug must not silence the others
                error = REDACT(f"{type(exc).__name__}: {exc}")
                log.error("pager %s: failed to send %d transition(s): %s", router.name, len(transitions), error)
                deliveries += [
                    Delivery(router=router.name, dedup_key=t.alert.dedup_key, change=t.change, ok=False, error=error)
                    for t in transitions
                ]
        return deliveries

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def __enter__(self) -> PagerRoutes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
