"""The pager outbox on the real embedded store and a real local HTTP receiver: the detector pass only queues,
the delivery loop retries with growing, jittered waits, pending pages survive a close and reopen of the
store, giving up is visible (failed, counted, alerted), a resolve never overtakes its trigger, and
Alertmanager keeps one identity while it re-sends. Every wait is on a condition, never a fixed sleep."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from flightrec.detectors.models import Alert, AlertTransition
from flightrec.detectors.outbox import FAILURE_DETECTOR, PagerOutbox, failure_key
from flightrec.detectors.pager import PagerConfig, PagerRoutes
from flightrec.detectors.runner import DetectorRunner, DetectorsConfig
from flightrec.store import Store, StoreConfig, open_store
from flightrec.store.outbox import OutboxEntry
from tests.conftest import free_port
from tests.http_receiver import Receiver, Reply
from tests.test_detectors import NOW, insert, version_change
from tests.test_pager import ROUTING_KEY, SLACK_TOKEN, WEBHOOK_SECRET, fired, resolved, verify_standard_webhook, wire_body

PD = "/v2/enqueue"
AM = "/api/v2/alerts"
SLACK = f"/services/{SLACK_TOKEN}"


def wait_for(condition: Callable[[], object], timeout_s: float = 20, what: str = "condition") -> object:
    """Poll ``condition`` until it is truthy (answering its value) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def config_for(receiver: Receiver, **overrides: object) -> PagerConfig:
    values: dict[str, object] = {
        "pagerduty_routing_key": SecretStr(ROUTING_KEY),
        "pagerduty_url": f"{receiver.url}{PD}",
        "ui_url": "http://ui.test",
        "timeout_s": 2,
        "max_attempts": 5,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.1,
        "poll_s": 0.5,
    }
    return PagerConfig(**(values | overrides))


@pytest.fixture
def outboxes() -> Iterator[Callable[..., PagerOutbox]]:
    """Factory for started outboxes; every one is shut down at teardown."""
    made: list[PagerOutbox] = []

    def factory(store: Store, config: PagerConfig, start: bool = True) -> PagerOutbox:
        outbox = PagerOutbox(store, PagerRoutes.from_config(config))
        made.append(outbox)
        if start:
            outbox.start()
        return outbox

    yield factory
    for outbox in made:
        outbox.shutdown()


def only_entry(store: Store, router: str, dedup_key: str) -> OutboxEntry:
    [entry] = store.outbox.entries(router=router, dedup_key=dedup_key)
    return entry


def settled(store: Store, router: str, dedup_key: str) -> OutboxEntry | None:
    """The one entry of this destination and alert once it is delivered or failed."""
    entries = store.outbox.entries(router=router, dedup_key=dedup_key)
    return entries[0] if len(entries) == 1 and entries[0].status != "pending" else None


# --- the pass queues; the loop retries, with backoff and jitter ----------------------------------------------


def test_the_pass_only_queues_and_the_loop_retries_with_growing_jittered_waits(
    store: Store, receiver: Receiver
) -> None:
    insert(store, version_change(end=NOW - timedelta(hours=1)))
    receiver.queue(*[Reply(503, {"message": "unavailable"})] * 3, path=PD)  # down for 3 attempts, then up
    config = config_for(receiver, max_attempts=6, backoff_initial_s=0.2, backoff_max_s=5)
    runner = DetectorRunner(store, DetectorsConfig(), PagerRoutes.from_config(config))
    runner.detectors = [detector for detector in runner.detectors if detector.name == "version_regression"]
    runner.start(0)  # no timed passes; the outbox's delivery loop runs
    try:
        result = runner.run_pass(until=NOW)
        # The pass is back before a second attempt could have been made: it waited on no retry.
        assert len(receiver.at(PD)) <= 1
        [alert] = result.fired
        assert result.queued == 1 and result.deliveries == []

        entry = wait_for(lambda: settled(store, "pagerduty", alert.dedup_key), what="the trigger delivered")
        assert entry.status == "delivered" and entry.attempts == 4 and entry.status_code == 202
        requests = receiver.at(PD)
        assert len(requests) == 4 and all(r.body == requests[0].body for r in requests)
        assert requests[0].body["event_action"] == "trigger" and requests[0].body["dedup_key"] == alert.dedup_key
        assert requests[0].body["payload"]["source"] == "support"

        history = store.outbox.history(entry_id=entry.entry_id)
        assert [(v.status, v.attempts) for v in history] == [
            ("pending", 0), ("pending", 1), ("pending", 2), ("pending", 3), ("delivered", 4)]
        failed = history[1:4]
        waits = [(v.next_attempt_at - v.updated_at).total_seconds() for v in failed]
        ceilings = [0.2, 0.4, 0.8]
        assert all(0.5 * c - 1e-3 <= w <= c + 1e-3 for w, c in zip(waits, ceilings)), waits
        assert waits[0] < waits[1] < waits[2]  # growing
        assert len({round(w / c, 6) for w, c in zip(waits, ceilings)}) == 3  # jittered: no common fraction
        gaps = [(later.updated_at - earlier.updated_at).total_seconds() for earlier, later in zip(history[1:], history[2:])]
        assert all(gap >= wait - 1e-3 for gap, wait in zip(gaps, waits))  # never early
        assert gaps[2] > gaps[0]
        assert runner.outbox is not None and runner.outbox.counts[("pagerduty", "retried")] == 3
        assert runner.outbox.counts[("pagerduty", "delivered")] == 1
    finally:
        runner.shutdown()
        runner.shutdown()  # safe twice


def test_backoff_is_exponential_with_equal_jitter_capped_and_honours_retry_after(store: Store) -> None:
    outbox = PagerOutbox(store, PagerRoutes([], config=PagerConfig(backoff_initial_s=1, backoff_max_s=30)))
    for attempts in range(1, 12):
        ceiling = min(30.0, 2.0 ** (attempts - 1))
        waits = [outbox.backoff(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 150  # jitter: (almost) never the same wait twice
    assert all(outbox.backoff(1, retry_after_s=7) >= 7 for _ in range(50))
    assert all(outbox.backoff(1, retry_after_s=3600) <= 30 for _ in range(50))  # Retry-After capped too


def test_retry_after_is_honoured_by_the_schedule(store: Store, receiver: Receiver, outboxes) -> None:
    receiver.queue(Reply(429, {"message": "slow down"}, {"Retry-After": "1"}), path=PD)
    outbox = outboxes(store, config_for(receiver, backoff_max_s=5))
    outbox.enqueue([fired()])
    entry = wait_for(lambda: settled(store, "pagerduty", fired().alert.dedup_key), what="delivered after a 429")
    failed = store.outbox.history(entry_id=entry.entry_id)[1]
    assert failed.status_code == 429 and (failed.next_attempt_at - failed.updated_at).total_seconds() >= 1
    assert (entry.updated_at - failed.updated_at).total_seconds() >= 1


# --- survives a restart ---------------------------------------------------------------------------------


def test_a_pending_page_is_delivered_after_the_store_is_closed_and_reopened(
    chdb_dir: Path, receiver: Receiver
) -> None:
    config = StoreConfig(dsn=f"chdb://{chdb_dir}", database=f"t_{uuid.uuid4().hex[:10]}")
    down = config_for(receiver, pagerduty_url=f"http://127.0.0.1:{free_port()}{PD}", backoff_initial_s=0.05)
    transition = resolved()
    first = open_store(config)
    try:
        outbox = PagerOutbox(first, PagerRoutes.from_config(down))
        [queued] = outbox.enqueue([transition])
        outbox.start()
        wait_for(lambda: only_entry(first, "pagerduty", transition.alert.dedup_key).attempts >= 1,
                 what="a failed attempt")
        outbox.shutdown()  # the server stops with the resolve still pending
        pending = only_entry(first, "pagerduty", transition.alert.dedup_key)
        assert pending.status == "pending" and "ConnectError" in pending.last_error
    finally:
        first.close()
    assert receiver.requests == []

    second = open_store(config)  # the next start: same data, a new outbox, PagerDuty reachable again
    try:
        outbox = PagerOutbox(second, PagerRoutes.from_config(config_for(receiver)))
        outbox.start()
        entry = wait_for(lambda: settled(second, "pagerduty", transition.alert.dedup_key), what="delivered")
        outbox.shutdown()
        assert entry.entry_id == queued.entry_id and entry.status == "delivered"
        assert entry.attempts == pending.attempts + 1
        assert receiver.bodies(PD) == [{"routing_key": ROUTING_KEY, "event_action": "resolve",
                                        "dedup_key": transition.alert.dedup_key}]
    finally:
        second.engine.command("drop_test_database", f"DROP DATABASE IF EXISTS {second.db}")
        second.close()


# --- giving up: failed, counted, alerted ---------------------------------------------------------------


def firing_alerts(store: Store) -> dict[str, Alert]:
    return {a.dedup_key: a for a in (Alert.model_validate_json(body) for _, body in store.alerts.latest(status="firing"))}


def test_giving_up_marks_the_entry_failed_counts_it_and_fires_an_alert_that_resolves_later(
    store: Store, receiver: Receiver, outboxes
) -> None:
    receiver.queue(*[Reply(503, {"message": "unavailable"})] * 6, path=PD)  # the lost resolve, then its alert
    config = config_for(receiver, max_attempts=3, slack_webhook_url=SecretStr(f"{receiver.url}{SLACK}"))
    outbox = outboxes(store, config)
    lost = resolved()
    key = lost.alert.dedup_key
    outbox.enqueue([lost])

    entry = wait_for(lambda: settled(store, "pagerduty", key), what="the resolve given up")
    assert entry.status == "failed" and entry.attempts == 3 and entry.status_code == 503
    assert "unavailable" in entry.last_error
    assert settled(store, "slack", key) is not None  # the other destination got it

    alarm = wait_for(lambda: firing_alerts(store).get(failure_key("pagerduty", key)), what="the failure alert")
    assert alarm.detector == FAILURE_DETECTOR and alarm.severity == "error" and alarm.agent == lost.alert.agent
    assert "pagerduty never got the resolved" in alarm.summary and "may still be open" in alarm.summary
    assert alarm.details["alert_dedup_key"] == key and alarm.details["attempts"] == "3"
    slack_texts = lambda: [body["text"] for body in receiver.bodies(SLACK)]  # noqa: E731
    wait_for(lambda: any("Page not delivered" in text for text in slack_texts()), what="the failure alert on Slack")

    # PagerDuty is still down for the failure alert itself: it fails too, and is not alerted about again.
    wait_for(lambda: outbox.counts[("pagerduty", "failed")] == 2, what="the failure alert given up on PagerDuty")
    assert outbox.counts[("pagerduty", "retried")] == 4 and outbox.counts[("pagerduty", "failure_alerts")] == 1
    assert [k for k in firing_alerts(store) if k.startswith(FAILURE_DETECTOR)] == [failure_key("pagerduty", key)]
    # the store's record of it is written after the in-memory count: wait for it, not for the clock
    wait_for(lambda: store.outbox.counts()[("pagerduty", "failed")] == 2, what="the second failure stored")

    # PagerDuty is back: the next page of the same alert gets through, and the failure alert resolves.
    outbox.enqueue([fired()])
    wait_for(lambda: failure_key("pagerduty", key) not in firing_alerts(store), what="the failure alert resolved")
    wait_for(lambda: any("RESOLVED" in text and "Page not delivered" in text for text in slack_texts()),
             what="its resolve on Slack")
    assert [b["event_action"] for b in receiver.bodies(PD) if b["dedup_key"] == key] == ["resolve"] * 3 + ["trigger"]


def test_an_answer_that_will_never_succeed_gives_up_at_once(store: Store, receiver: Receiver, outboxes) -> None:
    receiver.queue(Reply(400, {"message": "Event object is invalid"}), path=PD)
    outbox = outboxes(store, config_for(receiver, max_attempts=10))
    outbox.enqueue([fired()])
    entry = wait_for(lambda: settled(store, "pagerduty", fired().alert.dedup_key), what="given up")
    assert entry.status == "failed" and entry.attempts == 1 and "Event object is invalid" in entry.last_error
    assert failure_key("pagerduty", entry.dedup_key) in wait_for(lambda: firing_alerts(store), what="an alert")


# --- order: a resolve never overtakes its trigger ----------------------------------------------------------


def test_a_resolve_waits_for_its_trigger(store: Store, receiver: Receiver, outboxes) -> None:
    receiver.queue(Reply(503), Reply(503), path=PD)
    outbox = outboxes(store, config_for(receiver, backoff_initial_s=0.1), start=False)
    outbox.enqueue([fired()])
    outbox.enqueue([resolved()])
    outbox.start()
    wait_for(lambda: {e.status for e in store.outbox.entries(router="pagerduty")} == {"delivered"}, what="both sent")
    assert [b["event_action"] for b in receiver.bodies(PD)] == ["trigger", "trigger", "trigger", "resolve"]


# --- generic webhook: one id across retries -----------------------------------------------------------------


def test_webhook_retries_keep_the_message_id_and_sign_each_attempt(store: Store, receiver: Receiver, outboxes) -> None:
    receiver.queue(Reply(503), path="/hook")
    config = config_for(receiver, pagerduty_routing_key=None, webhook_url=f"{receiver.url}/hook",
                        webhook_secret=SecretStr(WEBHOOK_SECRET))
    outbox = outboxes(store, config)
    [entry] = outbox.enqueue([fired()])
    wait_for(lambda: settled(store, "webhook", entry.dedup_key), what="the webhook delivered")
    first, second = receiver.at("/hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{entry.entry_id}"
    assert all(verify_standard_webhook(WEBHOOK_SECRET, r.headers, wire_body(r)) for r in (first, second))


# --- Alertmanager: one identity while firing, re-sent, resolved ---------------------------------------------------


def save_alert(store: Store, version: int, alert: Alert) -> None:
    store.alerts.save(dedup_key=alert.dedup_key, version=version, status=alert.status, detector=alert.detector,
                      agent=alert.agent, body=alert.model_dump_json())


def test_alertmanager_labels_stay_the_same_through_firing_resends_and_resolve(
    store: Store, receiver: Receiver, outboxes
) -> None:
    resend_s = 0.3
    config = config_for(receiver, pagerduty_routing_key=None, alertmanager_url=receiver.url,
                        alertmanager_resend_s=resend_s)
    watched = fired().alert
    other = fired(id="al-2", dedup_key="loop:billing:refund", agent="billing", group="billing",
                  detector="loop").alert
    save_alert(store, 1, watched)
    save_alert(store, 1, other)
    outbox = outboxes(store, config)
    outbox.enqueue([AlertTransition(alert=watched, change="fired"), AlertTransition(alert=other, change="fired")])

    def posts(key: str) -> list[dict]:
        return [a for body in receiver.bodies(AM) for a in body if a["labels"]["dedup_key"] == key]

    wait_for(lambda: len(posts(watched.dedup_key)) >= 3, what="re-sends while firing")
    assert outbox.counts[("alertmanager", "resent")] >= 2
    latest = posts(watched.dedup_key)[-1]
    ahead = datetime.fromisoformat(latest["endsAt"]) - datetime.now(UTC)
    assert timedelta(seconds=-5) < ahead <= timedelta(seconds=4 * resend_s)  # a few intervals ahead, no more

    # The next pass raises its severity: a new version of the same alert, same identity.
    save_alert(store, 2, watched.model_copy(update={"severity": "critical"}))
    wait_for(lambda: posts(watched.dedup_key)[-1]["annotations"]["severity"] == "critical", what="a critical re-send")

    done_at = datetime.now(UTC).replace(microsecond=0)
    done = watched.model_copy(update={"severity": "critical", "status": "resolved", "resolved_at": done_at,
                                      "updated_at": done_at})
    save_alert(store, 3, done)
    outbox.enqueue([AlertTransition(alert=done, change="resolved")])
    wait_for(lambda: posts(watched.dedup_key)[-1]["endsAt"] == done_at.isoformat().replace("+00:00", "Z"),
             what="the resolve")
    sent_before = len(receiver.bodies(AM))
    wait_for(lambda: len([b for b in receiver.bodies(AM)[sent_before:]
                          if any(a["labels"]["dedup_key"] == other.dedup_key for a in b)]) >= 2,
             what="two more re-sends of the other alert")

    history = posts(watched.dedup_key)
    assert history[-1]["endsAt"] == done_at.isoformat().replace("+00:00", "Z")  # not re-sent once resolved
    assert len({tuple(sorted(a["labels"].items())) for a in history}) == 1  # one identity throughout
    assert "severity" not in history[0]["labels"]
    assert {a["annotations"]["severity"] for a in history} == {"warning", "critical"}
    assert {a["startsAt"] for a in history} == {"2025-03-01T12:00:00Z"}
