"""The alert lifecycle: pending → firing → resolved, one alert per dedup key, kept in the store."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from flightrec.detectors.models import Alert, AlertTransition, Finding
from flightrec.store import Store


class AlertBook:
    """Turns each pass's findings into alert state changes, saved before anyone is paged."""

    def __init__(self, store: Store, for_s: dict[str, float] | None = None, ui_url: str = "http://127.0.0.1:8501") -> None:
        self.store = store
        self.for_s = for_s or {}
        self.ui_url = ui_url.rstrip("/")

    def active(self) -> dict[str, tuple[int, Alert]]:
        alerts = {}
        for status in ("pending", "firing"):
            for version, body in self.store.alerts.latest(status=status, limit=100_000):
                alert = Alert.model_validate_json(body)
                alerts[alert.dedup_key] = (version, alert)
        return alerts

    def list(self, status: str = "", limit: int = 1000) -> list[Alert]:
        return [Alert.model_validate_json(body) for _, body in self.store.alerts.latest(status=status, limit=limit)]

    def _links(self, finding: Finding) -> dict[str, str]:
        links = {"triage": f"{self.ui_url}/triage" + (f"?agent={finding.agent}" if finding.agent else "")}
        for index, ref in enumerate(finding.objects[:3], start=1):
            links[f"story {index}"] = f"{self.ui_url}/?object={ref}"
        return links

    def _save(self, version: int, alert: Alert) -> None:
        self.store.alerts.save(dedup_key=alert.dedup_key, version=version, status=alert.status,
                               detector=alert.detector, agent=alert.agent, body=alert.model_dump_json())

    def apply(self, findings: list[Finding], now: datetime, judged: set[str]) -> list[AlertTransition]:
        """Fold one pass's findings in. Alerts of detectors in ``judged`` that were not found again resolve."""
        active = self.active()
        # A key that fired and resolved before starts its new alert after its newest version, or
        # the resolved row would stay the newest and the alert would fire again on every pass.
        earlier = self.store.alerts.versions(
            dedup_keys=sorted({f.dedup_key for f in findings if f.dedup_key not in active}))
        transitions: list[AlertTransition] = []
        seen: set[str] = set()
        for finding in findings:
            if finding.dedup_key in seen:
                continue
            seen.add(finding.dedup_key)
            version, alert = active.get(finding.dedup_key, (earlier.get(finding.dedup_key, 0), None))
            if alert is None:
                alert = Alert(
                    id=uuid.uuid4().hex[:12], detector=finding.detector, agent=finding.agent, status="pending",
                    severity=finding.severity, summary=finding.summary[:1024], dedup_key=finding.dedup_key,
                    group=finding.agent or finding.detector, started_at=now, updated_at=now,
                )
            alert = alert.model_copy(update={
                "severity": finding.severity, "summary": finding.summary[:1024], "updated_at": now,
                "details": finding.details, "traces": finding.traces, "objects": finding.objects,
                "links": self._links(finding),
            })
            held = now - alert.started_at >= timedelta(seconds=self.for_s.get(finding.detector, 0))
            if alert.status == "pending" and held:
                alert.status = "firing"
                transitions.append(AlertTransition(alert=alert, change="fired"))
            self._save(version + 1, alert)
        for key, (version, alert) in active.items():
            if key in seen or alert.detector not in judged:
                continue
            was_firing = alert.status == "firing"
            alert = alert.model_copy(update={"status": "resolved", "resolved_at": now, "updated_at": now})
            self._save(version + 1, alert)
            if was_firing:
                transitions.append(AlertTransition(alert=alert, change="resolved"))
        return transitions
