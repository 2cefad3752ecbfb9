"""Pager routing: tell PagerDuty, Alertmanager, Slack and a generic webhook about alert transitions.

``PagerRoutes.from_config(config)`` holds one router per configured destination. Deliveries go
through the outbox (:class:`detectors.outbox.PagerOutbox`): every transition to every destination
is stored first, then sent, retried and given up on outside the detector pass. ``notify`` is the
direct path (one attempt to each destination, no retries). Nothing here raises for a destination's
failure, and no secret (PagerDuty routing key, Slack webhook URL, webhook secret) reaches a log line
or a ``Delivery``.
"""

from __future__ import annotations

import logging
from typing import Protocol

import httpx

from flightrec.detectors.models import AlertTransition
from flightrec.detectors.pager_core import REDACT, Delivery, PagerConfig
from flightrec.detectors.pager_routers import (
    AlertmanagerRouter,
    HttpRouter,
    PagerDutyRouter,
    SlackRouter,
    WebhookRouter,
    sign_webhook,
)

__all__ = [
    "AlertmanagerRouter",
    "Delivery",
    "PagerConfig",
    "PagerDutyRouter",
    "PagerRoutes",
    "Router",
    "SlackRouter",
    "WebhookRouter",
    "sign_webhook",
]

log = logging.getLogger("flightrec.detectors.pager")


class Router(Protocol):
    """A destination: one attempt for some transitions, one Delivery per transition."""

    name: str
    batch_size: int

    def send(self, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]: ...


class PagerRoutes:
    """The configured routers; a failing destination never stops the others."""

    def __init__(
        self, routers: list[Router], client: httpx.Client | None = None, config: PagerConfig | None = None
    ) -> None:
        self.routers = routers
        self.client = client
        self.config = config or PagerConfig()

    @classmethod
    def from_config(cls, config: PagerConfig) -> PagerRoutes:
        """One router per destination set in ``config``, sharing one HTTP client."""
        client = httpx.Client(timeout=config.timeout_s)
        wanted: list[tuple[object, type[HttpRouter]]] = [
            (config.pagerduty_routing_key, PagerDutyRouter),
            (config.alertmanager_url, AlertmanagerRouter),
            (config.slack_webhook_url, SlackRouter),
            (config.webhook_url, WebhookRouter),
        ]
        routers: list[Router] = [kind(config, client) for setting, kind in wanted if setting]
        return cls(routers, client, config)

    def router(self, name: str) -> Router | None:
        return next((router for router in self.routers if router.name == name), None)

    def send(self, router: Router, transitions: list[AlertTransition], message_id: str = "") -> list[Delivery]:
        """One attempt through one router; a router that raises yields failed (retryable) deliveries, no secrets."""
        try:
            return router.send(transitions, message_id)
        except Exception as exc:  # noqa: BLE001 - one destination's bug must not silence the others
            error = REDACT(f"{type(exc).__name__}: {exc}")
            log.error("pager %s: failed to send %d transition(s): %s", router.name, len(transitions), error)
            return [
                Delivery(router=router.name, dedup_key=t.alert.dedup_key, change=t.change, ok=False, attempts=1,
                         error=error, retryable=True)
                for t in transitions
            ]

    def notify(self, transitions: list[AlertTransition]) -> list[Delivery]:
        """One attempt to every router, no retries (the outbox is the path that retries)."""
        if not transitions:
            return []
        return [d for router in self.routers for d in self.send(router, transitions)]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def __enter__(self) -> PagerRoutes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
