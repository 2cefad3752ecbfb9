"""Detectors on small hand-built runs through the real store; the alert lifecycle; the API and pager end to end.

Runs are OTLP spans built here (a root per run, LLM, tool, guardrail and human child spans),
normalized by the collector's ``RowBuilder`` and inserted with ``Store.insert_batch``, then read
back by the store's per-run features query, as every pass reads them.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from flightrec.collector.rows import RowBuilder
from flightrec.detectors.alerts import AlertBook
from flightrec.detectors.budgets import BudgetConfig, BudgetDetector
from flightrec.detectors.context import PassContext, Runs
from flightrec.detectors.drift import BaselineDriftDetector
from flightrec.detectors.loops import LoopDetector
from flightrec.detectors.models import Finding
from flightrec.detectors.outliers import UnusualTraceDetector
from flightrec.detectors.runner import DetectorRunner, DetectorsConfig
from flightrec.detectors.version import VersionRegressionDetector
from flightrec.demo.fleet import FleetConfig, run_fleet
from flightrec.store import SpanBatch, Store
from tests.http_receiver import Receiver, Reply
from tests.otlp_helpers import make_request, make_span, price_stored

NOW = datetime.now(tz=timezone.utc).replace(microsecond=0)
ROUTING_KEY = "R0UT1NG-KEY-for-detector-tests-0001"


# --- hand-built runs -------------------------------------------------------------------------------


@dataclass
class Run:
    """One agent run (trace) to build: a root span and the children that carry its signals."""

    agent: str
    start: datetime
    duration_s: float = 1.0
    model: str = "model-a"
    prompt: str = "p1"
    failed: bool = False
    tools: list[tuple[str, str]] = field(default_factory=list)  # (tool, arguments) per call
    retries: list[tuple[str, str]] = field(default_factory=list)  # calls marked as retry attempts
    tokens: tuple[int, int] = (100, 20)
    cost_usd: float = 0.001
    blocks: int = 0
    override: bool = False
    obj: str | None = None
    errors: int = 0

    def spans(self) -> list[Span]:
        trace_id = os.urandom(16)
        root_id = os.urandom(8)
        start_ns = int(self.start.timestamp() * 1e9)
        total_ns = int(self.duration_s * 1e9)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.agent,
            "gen_ai.request.model": self.model, "flightrec.prompt.version": self.prompt,
            "flightrec.agent.version": "1.0",
        }
        if self.obj:
            kind, ident = self.obj.split(":", 1)
            attrs |= {"flightrec.object.type": kind, "flightrec.object.id": ident}
        root = make_span("handle_work", attrs, trace_id=trace_id, span_id=root_id, start_ns=start_ns,
                         duration_ns=total_ns)
        if self.failed:
            root.status.code = Status.STATUS_CODE_ERROR
        children = [
            ("chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": self.model,
                      "gen_ai.usage.input_tokens": self.tokens[0], "gen_ai.usage.output_tokens": self.tokens[1],
                      "flightrec.cost.usd": self.cost_usd}, False),
        ]
        for tool, arguments in self.tools:
            children.append((f"execute_tool {tool}", {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                "gen_ai.tool.call.arguments": arguments}, False))
        for attempt, (tool, arguments) in enumerate(self.retries, start=1):
            children.append((f"execute_tool {tool}", {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                "gen_ai.tool.call.arguments": arguments, "flightrec.retry.attempt": attempt}, False))
        for index in range(self.blocks):
            children.append((f"guardrail g{index}", {
                "flightrec.operation": "guardrail", "flightrec.guardrail.name": f"g{index}",
                "flightrec.guardrail.verdict": "block"}, False))
        if self.override:
            children.append(("review", {"flightrec.operation": "human", "flightrec.human.decision": "override",
                                        "flightrec.human.actor": "maria"}, False))
        children += [(f"step {index}", {"flightrec.operation": "other"}, True) for index in range(self.errors)]
        step_ns = max(1, total_ns // (len(children) + 1))
        spans = [root]
        for index, (name, child_attrs, error) in enumerate(children):
            child = make_span(name, child_attrs, trace_id=trace_id, parent=root_id,
                              start_ns=start_ns + index * step_ns, duration_ns=step_ns)
            if error:
                child.status.code = Status.STATUS_CODE_ERROR
            spans.append(child)
        return spans


def insert(store: Store, runs: list[Run]) -> None:
    """The runs' spans through the normalizer into the store, one request per agent."""
    normalizer = RowBuilder()
    batch = SpanBatch()
    for agent in sorted({run.agent for run in runs}):
        spans = [span for run in runs if run.agent == agent for span in run.spans()]
        normalizer.request_rows(make_request(spans, {"service.name": agent}), batch)
    store.insert_batch(batch, dedup_token=os.urandom(8).hex())
    price_stored(store)


def context(store: Store, until: datetime = NOW) -> PassContext:
    """What a pass ending at ``until`` sees: the window's runs, read from the store."""
    since = until - timedelta(hours=24)
    return PassContext(since=since, until=until,
                       runs=Runs.from_features(store.signals.run_features(since=since, until=until)))


def series(agent: str, count: int, first: datetime, step: timedelta, **fields: Any) -> list[Run]:
    return [Run(agent=agent, start=first + i * step, **fields) for i in range(count)]


def version_change(agent: str = "support", before: int = 60, after: int = 60, end: datetime = NOW) -> list[Run]:
    """``before`` healthy runs on model-a/p1, then ``after`` runs on model-b/p2 that fail half the time, 3x slower."""
    first = end - timedelta(hours=3)
    runs = [Run(agent=agent, start=first + i * timedelta(minutes=1), failed=i % 30 == 0) for i in range(before)]
    first = end - timedelta(minutes=after + 1)
    runs += [Run(agent=agent, start=first + i * timedelta(minutes=1), model="model-b", prompt="p2",
                 failed=i % 2 == 0, duration_s=3.0) for i in range(after)]
    return runs


# --- guards: too little data, no finding --------------------------------------------------------------


def test_version_regression_needs_enough_runs_on_each_side(store: Store) -> None:
    insert(store, version_change(before=60, after=20))
    assert VersionRegressionDetector().detect(context(store)) == []


def test_version_regression_names_the_change_and_the_worsened_metrics(store: Store) -> None:
    insert(store, version_change() + series("other", 40, NOW - timedelta(hours=2), timedelta(minutes=2)))

    [finding] = VersionRegressionDetector().detect(context(store))

    assert finding.detector == "version_regression" and finding.agent == "support"
    assert finding.dedup_key == "version_regression:support:model-a / p1 / 1.0->model-b / p2 / 1.0"
    assert "model-a / p1 / 1.0 → model-b / p2 / 1.0" in finding.summary
    assert "failed runs 3% → 50%" in finding.summary
    assert "median latency" in finding.summary
    assert "cost" not in finding.summary and "guardrails" not in finding.summary
    assert finding.severity == "error"
    assert finding.details["before"] == "model-a / p1 / 1.0" and finding.details["after"] == "model-b / p2 / 1.0"
    assert finding.details["runs_before"] == "60" and finding.details["runs_after"] == "60"
    assert set(finding.details) >= {"failed runs", "latency"}
    assert len(finding.traces) == 3


def test_version_change_that_is_no_worse_is_not_a_finding(store: Store) -> None:
    first = NOW - timedelta(hours=3)
    insert(store, series("support", 60, first, timedelta(minutes=1))
           + series("support", 60, first + timedelta(hours=1), timedelta(minutes=1), model="model-b"))
    assert VersionRegressionDetector().detect(context(store)) == []


def drifting(agent: str, count: int, hours: float = 16.0) -> list[Run]:
    """``count`` runs evenly over ``hours``; in the last third every other run fails and runs take 3x longer."""
    step = timedelta(hours=hours) / count
    first = NOW - timedelta(hours=hours)
    recent = count * 2 // 3
    return [
        Run(agent=agent, start=first + i * step, failed=(i % 2 == 0) if i >= recent else i % 50 == 0,
            duration_s=3.0 + (i % 7) * 0.1 if i >= recent else 1.0 + (i % 7) * 0.1)
        for i in range(count)
    ]


def test_drift_needs_history_before_judging(store: Store) -> None:
    insert(store, drifting("ops", 100))  # ~4 runs per bucket: no baseline bucket has enough runs
    assert BaselineDriftDetector().detect(context(store)) == []


def test_drift_fires_once_per_agent_naming_each_drifted_metric(store: Store) -> None:
    steady = [Run(agent="steady", start=NOW - timedelta(hours=16) + i * timedelta(minutes=2),
                  failed=i % 50 == 0, duration_s=1.0 + (i % 7) * 0.1) for i in range(480)]
    insert(store, drifting("ops", 480) + steady)

    [finding] = BaselineDriftDetector().detect(context(store))

    assert finding.detector == "baseline_drift" and finding.agent == "ops"
    assert finding.dedup_key == "baseline_drift:ops"
    assert "error rate 2.2% → 50.0%" in finding.summary
    assert "median latency 1.3 s → 3.3 s" in finding.summary
    assert "cost" not in finding.summary
    assert finding.severity == "error"
    assert set(finding.details) >= {"error rate", "latency", "period", "runs_baseline", "runs_recent"}


def outlier_fleet(normal: int) -> list[Run]:
    """``normal`` ordinary runs of two agents, and one run of ``support`` that is extreme in every way."""
    rng = random.Random(5)
    runs = [
        Run(agent=rng.choice(["support", "ops"]), start=NOW - timedelta(hours=10) + i * timedelta(minutes=1),
            duration_s=rng.uniform(1, 3), tokens=(rng.randint(800, 1200), rng.randint(50, 150)),
            tools=[(f"tool{j}", json.dumps({"id": i})) for j in range(rng.randint(2, 4))])
        for i in range(normal)
    ]
    runs.append(Run(agent="support", start=NOW - timedelta(minutes=30), duration_s=600, tokens=(200_000, 5_000),
                    tools=[(f"export{j}", json.dumps({"page": j})) for j in range(40)], blocks=4, errors=6))
    return runs


def test_unusual_traces_need_enough_runs(store: Store) -> None:
    insert(store, outlier_fleet(150))
    assert UnusualTraceDetector().detect(context(store)) == []


def test_unusual_trace_is_reported_with_the_features_that_made_it_unusual(store: Store) -> None:
    runs = outlier_fleet(300)
    insert(store, runs)

    [finding] = UnusualTraceDetector().detect(context(store))

    assert finding.agent == "support" and finding.dedup_key == "unusual_traces:support"
    assert "1 unusual trace(s)" in finding.summary
    assert any(feature in finding.summary for feature in ("tool_calls", "distinct_tools", "tokens", "spans"))
    [trace_id] = finding.traces
    spans = store.trace_spans(trace_id=trace_id)
    assert {span.agent for span in spans} == {"support"}
    assert len(spans) == 1 + 1 + 40 + 4 + 6  # root, LLM call, tool calls, guardrail blocks, failed steps


def test_loops_need_enough_identical_calls_and_ignore_retries(store: Store) -> None:
    args = json.dumps({"order_id": "ORD-7"})
    start = NOW - timedelta(hours=1)
    insert(store, [
        Run(agent="ops", start=start, tools=[("get_order", args)] * 5),
        Run(agent="ops", start=start, tools=[("get_order", args)], retries=[("get_order", args)] * 7),
        Run(agent="ops", start=start, tools=[("get_order", json.dumps({"order_id": f"ORD-{i}"})) for i in range(9)]),
    ])
    assert LoopDetector(store).detect(context(store)) == []

    insert(store, [Run(agent="ops", start=start, tools=[("get_order", args)] * 6, obj="order:ORD-7")])
    [finding] = LoopDetector(store).detect(context(store))
    assert finding.agent == "ops" and finding.dedup_key == "loops:ops"
    assert "called get_order with the same arguments 6 times in one run" in finding.summary
    assert finding.details["arguments"] == args and finding.objects == ["order:ORD-7"]


def test_budgets_need_enough_runs_for_the_per_run_mean(store: Store) -> None:
    detector = BudgetDetector(store, BudgetConfig(run_usd=0.05, recent_runs=50, object_usd=None))
    insert(store, series("finance", 49, NOW - timedelta(hours=2), timedelta(minutes=1), cost_usd=1.0))
    assert detector.detect(context(store)) == []

    insert(store, series("finance", 1, NOW - timedelta(minutes=5), timedelta(minutes=1), cost_usd=1.0))
    [finding] = detector.detect(context(store))
    assert finding.dedup_key == "budgets:run:finance" and finding.agent == "finance"
    assert "last 50 runs cost 1.000 USD each on average" in finding.summary


def test_budgets_per_agent_and_per_object(store: Store) -> None:
    detector = BudgetDetector(store, BudgetConfig(run_usd=None, object_usd=5.0, agent_usd={"finance": 10.0}))
    start = NOW - timedelta(hours=2)
    invoices = [Run(agent="finance", start=start + i * timedelta(minutes=1), cost_usd=1.0, obj=f"invoice:INV-{i}")
                for i in range(11)]
    insert(store, invoices[:9] + series("ops", 4, start, timedelta(minutes=1), cost_usd=1.0, obj="ticket:TCK-4"))
    assert detector.detect(context(store)) == []  # 9 USD < 10 for the agent; 4 USD < 5 for the ticket

    insert(store, invoices[9:] + series("ops", 2, start + timedelta(hours=1), timedelta(minutes=1), cost_usd=1.0,
                                        obj="ticket:TCK-4"))
    findings = {f.dedup_key: f for f in detector.detect(context(store))}
    assert set(findings) == {"budgets:agent:finance", "budgets:object:ticket:TCK-4"}
    assert "spent 11.00 USD in the window, over its budget of 10.00 USD" in findings["budgets:agent:finance"].summary
    assert findings["budgets:object:ticket:TCK-4"].summary.startswith("ticket TCK-4 cost 6.00 USD over 6 runs")
    assert findings["budgets:object:ticket:TCK-4"].objects == ["ticket:TCK-4"]


def test_a_pass_over_an_empty_store_finds_nothing(store: Store) -> None:
    result = DetectorRunner(store).run_pass(until=NOW)
    assert (result.runs, result.findings, result.fired, result.resolved) == (0, 0, [], [])


# --- the alert lifecycle --------------------------------------------------------------------------------


def lifecycle_runner(store: Store) -> DetectorRunner:
    """A runner whose version regressions pend 10 minutes before firing, with that detector alone.

    The others would judge these few hand-built runs too; the lifecycle is the same for all.
    """
    runner = DetectorRunner(store, DetectorsConfig(for_s={"version_regression": 600}))
    runner.detectors = [detector for detector in runner.detectors if detector.name == "version_regression"]
    return runner


def test_lifecycle_pending_firing_resolved_one_alert_per_dedup_key(store: Store, monkeypatch) -> None:
    insert(store, version_change(end=NOW - timedelta(hours=1)))
    runner = lifecycle_runner(store)

    first = runner.run_pass(until=NOW)
    assert first.fired == [] and first.resolved == []
    [pending] = runner.book.list(status="pending")
    assert pending.detector == "version_regression" and pending.started_at == NOW

    assert runner.run_pass(until=NOW + timedelta(minutes=5)).fired == []  # held 5 of the 10 minutes

    fired = runner.run_pass(until=NOW + timedelta(minutes=11)).fired
    assert [(a.id, a.dedup_key, a.status) for a in fired] == [(pending.id, pending.dedup_key, "firing")]
    assert fired[0].started_at == NOW and fired[0].links["triage"].endswith("/triage?agent=support")

    again = runner.run_pass(until=NOW + timedelta(minutes=12))
    assert again.fired == [] and again.resolved == []
    [alert] = runner.book.list()
    assert (alert.id, alert.status) == (pending.id, "firing")

    # The data turns healthy (a fixed version), but the detector cannot judge: nothing resolves.
    first_fixed = NOW - timedelta(minutes=50)
    insert(store, series("support", 40, first_fixed, timedelta(minutes=1), model="model-c", prompt="p3"))

    def broken(ctx: PassContext) -> list[Finding]:
        raise RuntimeError("detector bug")

    version_detector = runner.detectors[0]
    monkeypatch.setattr(version_detector, "detect", broken)
    blind = runner.run_pass(until=NOW + timedelta(minutes=13))
    assert blind.resolved == [] and [a.status for a in runner.book.list()] == ["firing"]

    monkeypatch.undo()
    healed = runner.run_pass(until=NOW + timedelta(minutes=14))
    assert [(a.id, a.dedup_key, a.status) for a in healed.resolved] == [(pending.id, pending.dedup_key, "resolved")]
    assert healed.resolved[0].resolved_at == NOW + timedelta(minutes=14)

    later = runner.run_pass(until=NOW + timedelta(minutes=15))
    assert later.fired == [] and later.resolved == []
    assert [(a.id, a.status) for a in runner.book.list()] == [(pending.id, "resolved")]


def test_a_finding_gone_before_its_for_resolves_without_a_page(store: Store) -> None:
    insert(store, version_change(end=NOW - timedelta(hours=1)))
    runner = lifecycle_runner(store)
    assert runner.run_pass(until=NOW).fired == []
    insert(store, series("support", 40, NOW - timedelta(minutes=50), timedelta(minutes=1), model="model-c"))

    result = runner.run_pass(until=NOW + timedelta(minutes=1))
    assert result.fired == [] and result.resolved == []  # never fired, so nobody is told
    assert [a.status for a in runner.book.list()] == ["resolved"]


# --- through a real server: API and pager ---------------------------------------------------------------


def wait_until(condition, timeout_s: float = 30):
    """Poll until ``condition()`` is truthy (answering it): the pager outbox delivers after the pass returns."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


ALERT_FIELDS = {"id", "detector", "agent", "status", "severity", "summary", "dedup_key", "started_at"}


@pytest.mark.slow
def test_api_pass_fires_the_fleet_regression_and_pages_then_resolves(make_server, receiver: Receiver) -> None:
    server = make_server(env={
        "FLIGHTREC_DETECT_INTERVAL_S": "0",
        "FLIGHTREC_WEBHOOK_URL": f"{receiver.url}/hook",
        "FLIGHTREC_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "FLIGHTREC_PAGERDUTY_URL": f"{receiver.url}/v2/enqueue",
    })
    workflows, spacing = 400, 30.0
    fleet_end = datetime.now(tz=timezone.utc) - timedelta(seconds=5)
    report = run_fleet(FleetConfig(endpoint=server.url, workflows=workflows, seed=3, spacing_s=spacing,
                                   start=fleet_end - timedelta(seconds=workflows * spacing)))
    assert report.regression_agent == "support-agent"
    server.wait_drained()
    receiver.queue(Reply(503), path="/v2/enqueue")  # PagerDuty is briefly unavailable: the trigger is retried

    with server.client() as api:
        passed = api.post("/api/detectors/run", timeout=120).raise_for_status().json()
        [fired] = [a for a in passed["fired"] if a["detector"] == "version_regression"]
        assert fired["agent"] == "support-agent" and fired["status"] == "firing"
        assert "gpt-4o-mini-2026" in fired["summary"] and "failed runs" in fired["summary"]

        listed = api.get("/api/alerts", params={"status": "firing"}).raise_for_status().json()["alerts"]
        [alert] = [a for a in listed if a["dedup_key"] == fired["dedup_key"]]
        assert set(alert) >= ALERT_FIELDS
        assert {key: alert[key] for key in ALERT_FIELDS} == {key: fired[key] for key in ALERT_FIELDS}
        assert all(a["status"] == "firing" for a in listed)
        assert api.post("/api/detectors/run", timeout=120).json()["fired"] == []  # firing already: no page

        def triggers_sent() -> list[dict]:
            return [e for e in receiver.bodies("/v2/enqueue") if e["dedup_key"] == fired["dedup_key"]]

        triggers = wait_until(lambda: len(triggers_sent()) >= 2 and triggers_sent())  # the outbox retries the 503
        assert len(triggers) == 2 and triggers[0] == triggers[1]  # the 503, then the retry that got through
        trigger = triggers[-1]
        assert trigger["routing_key"] == ROUTING_KEY and trigger["event_action"] == "trigger"
        payload = trigger["payload"]
        assert payload["summary"] == fired["summary"][:1024] and payload["severity"] in {"critical", "error",
                                                                                          "warning", "info"}
        assert payload["source"] == "support-agent" and payload["component"] == "support-agent"
        hooks = wait_until(lambda: [t for body in receiver.bodies("/hook") for t in body["transitions"]
                                    if t["alert"]["dedup_key"] == fired["dedup_key"]])
        assert [(t["change"], t["alert"]["id"]) for t in hooks] == [("fired", fired["id"])]

        # Healthy again: support-agent ships a fixed version that does as well as before the regression.
        first = max(fleet_end, datetime.now(tz=timezone.utc) - timedelta(seconds=4))
        fixed = series("support-agent", 40, first, timedelta(milliseconds=50), model="gpt-4o-2026-fix",
                       prompt="support-v14")
        spans = [span for run in fixed for span in run.spans()]
        body = make_request(spans, {"service.name": "support-agent"}).SerializeToString()
        api.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}).raise_for_status()
        server.wait_drained()
        time.sleep(max(0.0, (first + timedelta(seconds=2.5) - datetime.now(tz=timezone.utc)).total_seconds()))

        healed = api.post("/api/detectors/run", timeout=120).raise_for_status().json()
        [resolved] = [a for a in healed["resolved"] if a["dedup_key"] == fired["dedup_key"]]
        assert resolved["id"] == fired["id"] and resolved["status"] == "resolved"
        assert [a["dedup_key"] for a in api.get("/api/alerts", params={"status": "resolved"}).json()["alerts"]
                if a["id"] == fired["id"]] == [fired["dedup_key"]]
        assert all(a["dedup_key"] != fired["dedup_key"]
                   for a in api.get("/api/alerts", params={"status": "firing"}).json()["alerts"])

    resolves = wait_until(lambda: [e for e in receiver.bodies("/v2/enqueue")
                                   if e["event_action"] == "resolve" and e["dedup_key"] == trigger["dedup_key"]])
    assert resolves == [{"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}]
    hooks = wait_until(lambda: len(sent := [t for body in receiver.bodies("/hook") for t in body["transitions"]
                                            if t["alert"]["dedup_key"] == fired["dedup_key"]]) >= 2 and sent)
    assert [t["change"] for t in hooks] == ["fired", "resolved"]
    assert hooks[1]["alert"]["status"] == "resolved" and hooks[1]["alert"]["resolved_at"]
    assert ROUTING_KEY not in server.log.read_text()


def test_an_alert_that_fires_again_after_resolving_fires_once_and_stays_firing(store: Store) -> None:
    """Regression: the new alert took version 1 under the resolved row's version 2, so it stayed
    listed as resolved and fired (paged) again on every pass."""
    book = AlertBook(store)
    finding = Finding(detector="loop", agent="ops", severity="warning", summary="loops", dedup_key="loop:ops")
    assert [t.change for t in book.apply([finding], NOW, {"loop"})] == ["fired"]
    assert [t.change for t in book.apply([], NOW + timedelta(minutes=1), {"loop"})] == ["resolved"]
    assert [t.change for t in book.apply([finding], NOW + timedelta(minutes=2), {"loop"})] == ["fired"]
    assert book.apply([finding], NOW + timedelta(minutes=3), {"loop"}) == []
    [alert] = book.list()
    assert alert.status == "firing" and alert.started_at == NOW + timedelta(minutes=2)
