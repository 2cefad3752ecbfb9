"""Pager plumbing shared by every router: config, delivery reports, secret redaction, the retry loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, Field, SecretStr

from detectors.models import Alert, AlertTransition

log = logging.getLogger("detectors.pager")

Sleep = Callable[[float], None]


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
    ui_url: str = Field(default="http://127.0.0.1:8501", description="dashboard base URL used to build links")
    timeout_s: float = Field(default=5, gt=0, description="timeout of one HTTP request, seconds")
    max_attempts: int = Field(default=5, ge=1, description="attempts per delivery, the first included")
    backoff_initial_s: float = Field(default=0.5, ge=0, description="wait before the first retry; doubles each retry")
    backoff_max_s: float = Field(default=8, ge=0, description="longest wait between attempts (Retry-After included)")


class Delivery(BaseModel):
    """What became of one transition at one destination."""

    router: str
    dedup_key: str
    change: Literal["fired", "resolved"]
    ok: bool
    status_code: int | None = None
    attempts: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of one POST after retries."""

    ok: bool
    status_code: int | None
    attempts: int
    error: str | None = None

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


def triage_link(config: PagerConfig, alert: Alert) -> str:
    """The alert's triage view: the lifecycle's own link if it set one."""
    return alert.links.get("triage") or (
        f"{config.ui_url.rstrip('/')}/triage?agent={quote(alert.agent, safe='')}&alert={quote(alert.id, safe='')}"
    )


def alert_links(config: PagerConfig, alert: Alert, limit: int = 5) -> list[dict[str, str]]:
    """[{href, text}]: the triage view, then example stories, then any other links the alert carries."""
    base = config.ui_url.rstrip("/")
    links = [{"href": triage_link(config, alert), "text": f"Triage {alert.agent or alert.detector}"}]
    stories = alert.objects[:limit]
    links += [{"href": f"{base}/?object={quote(ref, safe=':')}", "text": f"Story {ref}"} for ref in stories]
    known = {link["href"] for link in links}
    links += [{"href": href, "text": name} for name, href in alert.links.items() if href not in known]
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


def post_with_retry(
    client: httpx.Client, url: str, body: object, config: PagerConfig, *, target: str, sleep: Sleep = time.sleep
) -> Outcome:
    """POST ``body`` as JSON; 429, 5xx and network errors are retried with exponential backoff
    (Retry-After honoured, both capped by ``backoff_max_s``) up to ``max_attempts``; other
    non-2xx answers are final. ``target`` names the destination in logs, never the URL."""
    outcome = Outcome(ok=False, status_code=None, attempts=0, error="not attempted")
    for attempt in range(1, config.max_attempts + 1):
        wait: float | None = None
        try:
            response = client.post(url, json=body)
        except httpx.TransportError as exc:
            outcome = Outcome(False, None, attempt, REDACT(f"{type(exc).__name__}: {exc}"))
        else:
            if response.is_success:
                return Outcome(True, response.status_code, attempt)
            outcome = Outcome(False, response.status_code, attempt, response_reason(response))
            if response.status_code != 429 and response.status_code < 500:
                break
            wait = retry_after_s(response)
        if attempt == config.max_attempts:
            break
        if wait is None:
            wait = config.backoff_initial_s * 2 ** (attempt - 1)
        wait = min(wait, config.backoff_max_s)
        log.info("pager %s: attempt %d failed (%s); retrying in %.2fs", target, attempt, outcome.error, wait)
        sleep(wait)
    log.warning("pager %s: not delivered after %d attempt(s): %s", target, outcome.attempts, outcome.error)
    return outcome
