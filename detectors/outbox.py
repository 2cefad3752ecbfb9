"""The pager outbox: every alert transition to every destination is stored, then delivered by a loop of its own.

Lifecycle: ``enqueue`` (called by the detector pass) only writes entries and wakes the loop, so a
pass never waits on a destination. ``start`` runs the delivery loop in a thread; each round sends
the due entries (per destination and alert, oldest first, so a resolve never overtakes its
trigger), re-sends firing alerts to Alertmanager every ``alertmanager_resend_s``, and sleeps until
the next entry is due or it is woken. ``shutdown`` stops the loop and is safe to call twice; what
is still pending stays in the store and is sent after the next ``start``.

A failed attempt that is worth retrying (429, 5xx, network) is tried again after an exponential
backoff with jitter (half to all of ``backoff_initial_s * 2**(n-1)``, at most ``backoff_max_s``,
at least any Retry-After). After ``max_attempts``, or at once for an answer that will never
succeed (other 4xx), the entry is marked failed, counted, and a ``pager`` alert fires about it
(to every destination), so a lost resolve never silently leaves an incident open. That alert
resolves when a later delivery for the same alert reaches the same destination.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flightrec.detectors.models import Alert, AlertTransition
from flightrec.detectors.pager import Delivery, PagerRoutes, Router
from flightrec.detectors.pager_core import PagerConfig, truncate
from flightrec.store import Store
from flightrec.store.outbox import OutboxEntry

log = logging.getLogger("detectors.outbox")

FAILURE_DETECTOR = "pager"  # the detector name of alerts about pages that could not be delivered


def failure_key(router: str, dedup_key: str) -> str:
    return f"{FAILURE_DETECTOR}:{router}:{dedup_key}"


def new_entry_id() -> str:
    """Time-ordered (creation order within a process), unique, and free of ``.`` (a webhook id may not have one)."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"


class PagerOutbox:
    """Stores deliveries, sends them from a background thread, retries with backoff and jitter, gives up visibly."""

    def __init__(self, store: Store, routes: PagerRoutes, *, rng: random.Random | None = None,
                 leader: Callable[[], bool] | None = None) -> None:
        self.store = store
        self.routes = routes
        self.leads = leader or (lambda: True)  # asked before each round: only the leader delivers
        self.rng = rng or random.Random()
        self.counts: Counter[tuple[str, str]] = Counter()  # (destination, result): delivered, retried, failed, ...
        self._round = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_resend = 0.0  # time.monotonic() of the next Alertmanager re-send; 0: at the first round
        self._failing: set[str] | None = None  # failure alerts firing now, loaded at the first round

    @property
    def config(self) -> PagerConfig:
        return self.routes.config

    @property
    def router_names(self) -> list[str]:
        return [router.name for router in self.routes.routers]

    # -- intake (the detector pass) -------------------------------------------------------------------

    def enqueue(self, transitions: list[AlertTransition]) -> list[OutboxEntry]:
        """One pending entry per transition and destination, stored before this returns; wakes the loop."""
        now = datetime.now(UTC)
        entries = [
            OutboxEntry(
                entry_id=new_entry_id(), router=router.name, dedup_key=t.alert.dedup_key, change=t.change,
                next_attempt_at=now, created_at=now, updated_at=now, body=t.model_dump_json(),
            )
            for t in transitions
            for router in self.routes.routers
        ]
        self.store.outbox.save(entries=entries)
        if entries:
            self.wake()
        return entries

    # -- one round ------------------------------------------------------------------------------------

    def backoff(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones: equal jitter over an exponential
        ceiling (so waits grow yet never line up), never less than what Retry-After asked (both capped)."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** min(attempts - 1, 60))
        wait = ceiling * (0.5 + 0.5 * self.rng.random())
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.config.backoff_max_s))
        return wait

    def deliver_due(self) -> list[Delivery]:
        """Send every entry due now, batched per destination where it takes batches; record each attempt."""
        with self._round:
            if not self.routes.routers:
                return []
            self._load_failing()
            due = self.store.outbox.due(routers=self.router_names, now=datetime.now(UTC))
            deliveries: list[Delivery] = []
            for router in self.routes.routers:
                mine = [entry for entry in due if entry.router == router.name]
                size = max(1, int(getattr(router, "batch_size", 1)))
                for start in range(0, len(mine), size):
                    if self._stop.is_set():
                        return deliveries  # the rest stays pending, for the next start
                    deliveries += self._attempt(router, mine[start : start + size])
            return deliveries

    def _attempt(self, router: Router, batch: list[OutboxEntry]) -> list[Delivery]:
        transitions = [AlertTransition.model_validate_json(entry.body) for entry in batch]
        results = self.routes.send(router, transitions, batch[0].entry_id if len(batch) == 1 else "")
        if len(results) != len(batch):  # a router bug: count it as a failed attempt of every entry
            results = [
                Delivery(router=router.name, dedup_key=t.alert.dedup_key, change=t.change, ok=False, retryable=True,
                         error=f"router answered {len(results)} deliveries for {len(batch)} transitions")
                for t in transitions
            ]
        now = datetime.now(UTC)
        wait: float | None = None  # one wait per request, so a batch stays together
        saved: list[OutboxEntry] = []
        done: list[tuple[OutboxEntry, AlertTransition]] = []
        given_up: list[tuple[OutboxEntry, AlertTransition]] = []
        deliveries: list[Delivery] = []
        for entry, transition, result in zip(batch, transitions, results):
            attempts = entry.attempts + 1
            update: dict[str, object] = {
                "version": entry.version + 1, "attempts": attempts, "updated_at": now,
                "status_code": result.status_code or 0, "last_error": result.error or "",
            }
            if result.ok:
                update["status"] = "delivered"
                done.append((entry, transition))
                outcome = "delivered"
            elif result.retryable and attempts < self.config.max_attempts:
                wait = self.backoff(attempts, result.retry_after_s) if wait is None else wait
                update |= {"status": "pending", "next_attempt_at": now + timedelta(seconds=wait)}
                outcome = "retried"
            else:
                update["status"] = "failed"
                outcome = "failed"
            self.counts[(router.name, outcome)] += 1
            saved.append(entry.model_copy(update=update))
            if outcome == "failed":
                given_up.append((saved[-1], transition))
            deliveries.append(result.model_copy(update={"attempts": attempts, "entry_id": entry.entry_id}))
        self.store.outbox.save(entries=saved)
        if wait is not None:
            log.info("pager %s: %d entr(ies) retried in %.2fs", router.name, len(batch), wait)
        for entry, transition in done:
            self._delivered(entry.router, transition)
        for entry, transition in given_up:
            self._gave_up(entry, transition)
        return deliveries

    def resend_firing(self) -> list[Delivery]:
        """Every firing alert once more to Alertmanager (its endsAt moved ahead), as Prometheus re-sends."""
        with self._round:
            router = self.routes.router("alertmanager")
            if router is None:
                return []
            firing = [Alert.model_validate_json(body) for _, body in self.store.alerts.latest(status="firing",
                                                                                              limit=100_000)]
            transitions = [AlertTransition(alert=alert, change="fired") for alert in firing]
            deliveries: list[Delivery] = []
            size = max(1, int(getattr(router, "batch_size", 1)))
            for start in range(0, len(transitions), size):
                deliveries += self.routes.send(router, transitions[start : start + size])
            for delivery in deliveries:
                self.counts[(router.name, "resent" if delivery.ok else "resend_failed")] += 1
            return deliveries

    def run_once(self) -> float:
        """One round (due entries, then any re-send that is due); answers the seconds until the next round."""
        self.deliver_due()
        resends = self.routes.router("alertmanager") is not None
        if resends and time.monotonic() >= self._next_resend:
            self._next_resend = time.monotonic() + self.config.alertmanager_resend_s
            self.resend_firing()
        wait = self.config.poll_s
        upcoming = self.store.outbox.next_attempt_at(routers=self.router_names) if self.routes.routers else None
        if upcoming is not None:
            wait = min(wait, (upcoming - datetime.now(UTC)).total_seconds())
        if resends:
            wait = min(wait, self._next_resend - time.monotonic())
        return max(wait, 0.005)

    # -- failures made visible ----------------------------------------------------------------------------

    def _load_failing(self) -> None:
        if self._failing is None:
            self._failing = {
                key for key, (_, alert) in self._alerts(status="firing").items() if alert.detector == FAILURE_DETECTOR
            }

    def _alerts(self, status: str = "") -> dict[str, tuple[int, Alert]]:
        """dedup key -> (newest version, alert) of every alert (or of those in ``status``)."""
        found: dict[str, tuple[int, Alert]] = {}
        for version, body in self.store.alerts.latest(status=status, limit=100_000):
            alert = Alert.model_validate_json(body)
            found[alert.dedup_key] = (version, alert)
        return found

    def _save_alert(self, version: int, alert: Alert) -> None:
        self.store.alerts.save(dedup_key=alert.dedup_key, version=version, status=alert.status,
                               detector=alert.detector, agent=alert.agent, body=alert.model_dump_json())

    def _gave_up(self, entry: OutboxEntry, transition: AlertTransition) -> None:
        """The entry is failed: say so in the log, and fire (or refresh) the alert about it."""
        alert = transition.alert
        log.error("pager %s: gave up on the %s of %s after %d attempt(s): %s", entry.router, entry.change,
                  entry.dedup_key, entry.attempts, entry.last_error)
        if alert.detector == FAILURE_DETECTOR:
            return  # a page about a failed page that fails too is logged and counted, never paged about again
        key = failure_key(entry.router, alert.dedup_key)
        version, current = self._alerts().get(key, (0, None))
        now = datetime.now(UTC)
        open_hint = " Its incident may still be open there." if entry.change == "resolved" else ""
        what = f"{alert.agent}'s {alert.detector}" if alert.agent else alert.detector
        failure = Alert(
            id=current.id if current is not None and current.status == "firing" else uuid.uuid4().hex[:12],
            detector=FAILURE_DETECTOR, agent=alert.agent, status="firing", severity="error",
            summary=truncate(
                f"Page not delivered: {entry.router} never got the {entry.change} of {what} alert after "
                f"{entry.attempts} attempt(s) ({entry.last_error or 'no answer'}).{open_hint}", 1024,
            ),
            dedup_key=key, group=alert.group,
            started_at=current.started_at if current is not None and current.status == "firing" else now,
            updated_at=now,
            details={
                "destination": entry.router, "change": entry.change, "alert_id": alert.id,
                "alert_dedup_key": alert.dedup_key, "alert_summary": alert.summary[:500],
                "attempts": str(entry.attempts), "error": entry.last_error[:500], "entry_id": entry.entry_id,
            },
            traces=alert.traces, objects=alert.objects,
        )
        self._save_alert(version + 1, failure)
        self.counts[(entry.router, "failure_alerts")] += 1
        assert self._failing is not None
        if current is None or current.status != "firing":
            self._failing.add(key)
            self.enqueue([AlertTransition(alert=failure, change="fired")])

    def _delivered(self, router: str, transition: AlertTransition) -> None:
        """A delivery got through: the failure alert for this destination and alert, if any, resolves."""
        key = failure_key(router, transition.alert.dedup_key)
        if transition.alert.detector == FAILURE_DETECTOR or self._failing is None or key not in self._failing:
            return
        self._failing.discard(key)
        version, current = self._alerts().get(key, (0, None))
        if current is None or current.status != "firing":
            return
        now = datetime.now(UTC)
        resolved = current.model_copy(update={"status": "resolved", "resolved_at": now, "updated_at": now})
        self._save_alert(version + 1, resolved)
        self.enqueue([AlertTransition(alert=resolved, change="resolved")])

    def stats(self) -> dict[str, int]:
        """``destination/result`` -> count since start (delivered, retried, failed, failure_alerts, resent, ...)."""
        return {f"{router}/{result}": count for (router, result), count in sorted(self.counts.items())}

    # -- lifecycle ----------------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        """Run the delivery loop in a background thread (nothing to do without destinations); returns at once."""
        if self._thread is not None or not self.routes.routers:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    wait = self.run_once() if self.leads() else self.config.poll_s
                except Exception:  # the store or a destination broke this round; the next one tries again
                    log.exception("pager outbox round failed")
                    wait = self.config.poll_s
                self._wake.wait(wait)

        self._thread = threading.Thread(target=loop, name="flightrec-pager-outbox", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the loop (an attempt under way finishes) and close the HTTP client; safe to call twice.
        Entries still pending stay in the store."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout_s * 4 + 5)
            self._thread = None
        self.routes.close()
