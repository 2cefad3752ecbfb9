"""Pager plumbing shared by every router: config, delivery reports, secret redaction, links, one attempt.

Routers make single attempts; retries with backoff and jitter belong to the outbox
(:mod:`detectors.outbox`), which runs outside the detector pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, Field, SecretStr

from flightrec.detectors.models import Alert, AlertTransition

log = logging.getLogger("flightrec.detectors.pager")

class PagerConfig(BaseModel):
    """Where alerts go and how hard to try. A destination left unset is not used."""

    pagerduty_routing_key: SecretStr | None = Field(
        default=None, description="PagerDuty Events API v2 integration (routing) key; secret"
    )
    pagerduty_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events API v2 enqueue endpoint"
    )
    alertmanager_url: str | None = Field(
        default=None, description="Alertmanager base URL; alerts are POSTed to {url}/api/v2/alerts"
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming webhook URL (the URL itself is the credential); secret"
    )
    webhook_url: str | None = Field(default=None, description="generic webhook receiving transitions as JSON")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Standard Webhooks signing secret (whsec_<base64>) for the generic webhook; unset: unsigned; secret",
    )
    ui_url: str = Field(default="http://127.0.0.1:8501", description="dashboard base URL used to build links")
    timeout_s: float = Field(default=5, gt=0, description="timeout of one HTTP request, seconds")
    max_attempts: int = Field(
        default=20, ge=1, description="attempts per outbox entry, the first included, before it is marked failed"
    )
    backoff_initial_s: float = Field(
        default=1, ge=0, description="wait before the first retry; doubles each retry, with jitter (half to all of it)"
    )
    backoff_max_s: float = Field(default=300, ge=0, description="longest wait between attempts (Retry-After included)")
    alertmanager_resend_s: float = Field(
        default=60, gt=0, description="firing alerts are re-sent to Alertmanager this often; endsAt is 4 intervals ahead"
    )
    poll_s: float = Field(default=5, gt=0, description="longest sleep of the delivery loop between looks at the outbox")


class Delivery(BaseModel):
    """What became of one transition at one destination."""

    router: str
    dedup_key: str
    change: Literal["fired", "resolved"]
    ok: bool
    status_code: int | None = None
    attempts: int = 0
    error: str | None = None
    retryable: bool = Field(default=False, description="a failure worth another attempt (429, 5xx, network)")
    retry_after_s: float | None = Field(default=None, description="what the destination asked to wait, if it did")
    entry_id: str = Field(default="", description="the outbox entry this attempt was for")


@dataclass(frozen=True)
class Outcome:
    """The result of one POST."""

    ok: bool
    status_code: int | None
    attempts: int
    error: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None

    def deliveries(self, router: str, transitions: Iterable[AlertTransition]) -> list[Delivery]:
        return [
            Delivery(
                router=router,
                dedup_key=t.alert.dedup_key,
                change=t.change,
                ok=self.ok,
                status_code=self.status_code,
                attempts=self.attempts,
                error=self.error,
                retryable=self.retryable,
                retry_after_s=self.retry_after_s,
            )
            for t in transitions
        ]


class Redactor(logging.Filter):
    """Replaces known secrets in text; as a logging filter, in every record of the HTTP client's loggers."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self.secrets.add(secret)

    def add_url(self, url: str | None) -> None:
        """A URL's password, if it carries one."""
        if url:
            self.add(urlsplit(url).password)

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self(record.getMessage()), None
        return True


REDACT = Redactor()
# httpx logs each request's full URL at INFO, and a Slack webhook URL is a secret (httpcore logs no paths).
logging.getLogger("httpx").addFilter(REDACT)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Characters a URL may keep as they are; everything else (spaces, non-Latin, |, <, >, ", `) is percent-encoded.
URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


def safe_href(href: str) -> str:
    """``href`` with every character a URL may not carry percent-encoded (existing %XX escapes kept),
    so it is one link in any payload (a Slack ``<url|text>`` cannot be broken by ``|`` or ``>``)."""
    return quote(href, safe=URL_SAFE)


def query_value(value: str) -> str:
    """A query parameter value, fully encoded (``/``, ``?``, ``#``, ``&``, spaces, non-Latin)."""
    return quote(value, safe="")


def triage_link(config: PagerConfig, alert: Alert) -> str:
    """The alert's triage view, built from its agent and id (every value encoded)."""
    base = config.ui_url.rstrip("/")
    return f"{base}/triage?agent={query_value(alert.agent)}&alert={query_value(alert.id)}"


def story_link(config: PagerConfig, ref: str) -> str:
    """An object's story (``type:id``; the colon kept readable, everything else in the id encoded)."""
    return f"{config.ui_url.rstrip('/')}/?object={quote(ref, safe=':')}"


# Links the alert lifecycle adds for the triage view and example stories; the pager builds those itself.
BUILT_LINKS = ("triage", "story ")


def alert_links(config: PagerConfig, alert: Alert, limit: int = 5) -> list[dict[str, str]]:
    """[{href, text}]: the triage view, then example stories, then any other links the alert carries."""
    links = [{"href": triage_link(config, alert), "text": f"Triage {alert.agent or alert.detector}"}]
    links += [{"href": story_link(config, ref), "text": f"Story {ref}"} for ref in alert.objects[:limit]]
    known = {link["href"] for link in links}
    for name, href in alert.links.items():
        if not name.startswith(BUILT_LINKS) and safe_href(href) not in known:
            links.append({"href": safe_href(href), "text": name})
    return links


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), if any."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def response_reason(response: httpx.Response) -> str:
    """``HTTP <code>: <message>`` from a JSON body's message/errors, or its text."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        parts = [str(body[key]) for key in ("message", "status", "error") if body.get(key)][:1]
        errors = body.get("errors")
        if errors:
            parts.append("; ".join(map(str, errors)) if isinstance(errors, list) else str(errors))
        message = ": ".join(parts) or str(body)
    else:
        message = str(body).strip()
    return f"HTTP {response.status_code}: {truncate(REDACT(message or response.reason_phrase), 500)}"


def post_once(
    client: httpx.Client, url: str, body: object, *, target: str, headers: dict[str, str] | None = None
) -> Outcome:
    """One POST of ``body`` (JSON, or bytes sent as they are); ``target`` names the destination in logs,
    never the URL. 429, 5xx and network errors are retryable (with any Retry-After); other answers are final."""
    try:
        if isinstance(body, bytes):
            response = client.post(url, content=body, headers={"Content-Type": "application/json", **(headers or {})})
        else:
            response = client.post(url, json=body, headers=headers)
    except httpx.TransportError as exc:
        outcome = Outcome(False, None, 1, REDACT(f"{type(exc).__name__}: {exc}"), retryable=True)
    else:
        if response.is_success:
            return Outcome(True, response.status_code, 1)
        retryable = response.status_code == 429 or response.status_code >= 500
        outcome = Outcome(False, response.status_code, 1, response_reason(response), retryable=retryable,
                          retry_after_s=retry_after_s(response) if retryable else None)
    log.info("pager %s: attempt failed (%s)%s", target, outcome.error, "" if outcome.retryable else "; not retryable")
    return outcome
