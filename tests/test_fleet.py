"""The simulated fleet: determinism, trace shape, span conventions, object reuse, the regression, the
labeled injections (each present after regression_at in its agent, absent before and in clean runs),
spacing, and delivery through the real OTLP exporters to stub receivers (HTTP and gRPC)."""

from __future__ import annotations

import gzip
import json
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent import futures
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType, SimpleNamespace
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from pydantic import ValidationError

from flightrec.demo import fleet_catalog as cat
from flightrec.demo.fleet import (
    INJECTION_KINDS,
    FleetConfig,
    FleetReport,
    FleetSimulation,
    build_workflow_spans,
    run_fleet,
)
from tests.conftest import free_port

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SECOND = 1_000_000_000
START_NS = int(START.timestamp()) * SECOND
FLOWS = {flow for agent in cat.AGENTS for flow, _ in agent.flows}
AGENT_NAMES = {agent.name for agent in cat.AGENTS}
UNDO_KEYS = ("flightrec.undo.kind", "flightrec.undo.target", "flightrec.undo.args")

Workflow = list[ReadableSpan]


def build(**overrides: Any) -> list[Workflow]:
    config = FleetConfig(**({"workflows": 120, "start": START} | overrides))
    return list(build_workflow_spans(config))


@pytest.fixture(scope="module")
def fleet() -> list[Workflow]:
    """600 workflows, regression from workflow 300 (the default: workflows // 2)."""
    return build(workflows=600)


@pytest.fixture(scope="module")
def clean_fleet() -> list[Workflow]:
    return build(workflows=600, no_regression=True)


def root_of(workflow: Workflow) -> ReadableSpan:
    roots = [span for span in workflow if span.parent is None]
    assert len(roots) == 1, [span.name for span in roots]
    return roots[0]


def agent_of(workflow: Workflow) -> str:
    return root_of(workflow).attributes["gen_ai.agent.name"]


def op(span: ReadableSpan) -> str | None:
    return span.attributes.get("gen_ai.operation.name") or span.attributes.get("flightrec.operation")


def fingerprint(span: ReadableSpan) -> tuple:
    return (
        span.name,
        span.context.trace_id,
        span.context.span_id,
        span.parent.span_id if span.parent else None,
        span.start_time,
        span.end_time,
        span.kind,
        span.status.status_code,
        span.status.description,
        tuple(sorted(span.attributes.items())),
        tuple((event.name, event.timestamp, tuple(sorted(event.attributes.items()))) for event in span.events),
        span.resource.attributes.get("service.name"),
    )


def object_refs(span: ReadableSpan) -> set[str]:
    """Every business object a span links, in all three convention forms."""
    attrs = span.attributes
    refs = set(attrs.get("flightrec.objects", ()))
    if "flightrec.object.type" in attrs:
        refs.add(f"{attrs['flightrec.object.type']}:{attrs['flightrec.object.id']}")
    refs.update(f"{kind}:{attrs[f'{kind}.id']}" for kind in ("ticket", "order", "invoice", "customer", "account")
                if f"{kind}.id" in attrs)
    return refs


def is_ref(value: str) -> bool:
    kind, _, oid = value.partition(":")
    return kind in {"ticket", "order", "invoice", "customer", "account"} and "-" in oid


def support_rates(workflows: list[Workflow], lo: int, hi: int) -> tuple[float, float, float]:
    """(failed-root rate, override-or-reject rate, either) over the support agent's workflows in [lo, hi)."""
    failed = overridden = either = total = 0
    for workflow in workflows[lo:hi]:
        if agent_of(workflow) != cat.REGRESSION_AGENT:
            continue
        total += 1
        bad_root = root_of(workflow).status.status_code is StatusCode.ERROR
        bad_human = any(s.attributes.get("flightrec.human.decision") in ("override", "reject") for s in workflow)
        failed += bad_root
        overridden += bad_human
        either += bad_root or bad_human
    assert total >= 50
    return failed / total, overridden / total, either / total


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_and_start_give_identical_spans() -> None:
    first, second = build(), build()
    assert [[fingerprint(s) for s in wf] for wf in first] == [[fingerprint(s) for s in wf] for wf in second]


def test_different_seed_gives_different_workflows() -> None:
    seven, eight = build(seed=7), build(seed=8)
    def span_ids(workflows: list[Workflow]) -> set[int]:
        return {span.context.span_id for workflow in workflows for span in workflow}

    assert not span_ids(seven) & span_ids(eight)
    assert [root_of(wf).name for wf in seven] != [root_of(wf).name for wf in eight]


def assert_clock(workflows: list[Workflow], spacing_s: float) -> int:
    """Workflow k starts in its slot [k * spacing, k * spacing + 2/3 spacing) unless moved earlier to end
    inside the window; every span lies in [start, start + workflows * spacing]. Returns how many moved."""
    spacing, end, moved = round(spacing_s * SECOND), START_NS + round(len(workflows) * spacing_s * SECOND), 0
    for index, workflow in enumerate(workflows):
        root = root_of(workflow)
        slot = START_NS + index * spacing
        if not slot <= root.start_time < slot + spacing * 2 // 3:
            moved += 1
            assert START_NS <= root.start_time < slot and end - SECOND < root.end_time <= end
        for span in workflow:
            assert root.start_time <= span.start_time <= span.end_time <= root.end_time
            assert all(span.start_time <= event.timestamp <= span.end_time for event in span.events)
        assert START_NS <= root.start_time and root.end_time <= end
    return moved


def test_clock_follows_start_and_children_nest_in_time(fleet: list[Workflow]) -> None:
    moved = assert_clock(fleet, cat.WORKFLOW_SPACING_S)
    assert 0 < moved <= 5  # only the last few run past the end and move earlier


def test_regression_leaves_earlier_workflows_unchanged(fleet: list[Workflow], clean_fleet: list[Workflow]) -> None:
    before = [[fingerprint(s) for s in wf] for wf in fleet[:300]]
    assert before == [[fingerprint(s) for s in wf] for wf in clean_fleet[:300]]


# --- trace shape and conventions ---------------------------------------------------------------


def test_each_workflow_is_one_trace_with_an_invoke_agent_root(fleet: list[Workflow]) -> None:
    trace_ids = set()
    for workflow in fleet:
        root = root_of(workflow)
        ids = {span.context.trace_id for span in workflow}
        assert ids == {root.context.trace_id}
        trace_ids |= ids
        span_ids = {span.context.span_id for span in workflow}
        assert len(span_ids) == len(workflow)
        assert all(span.parent.span_id in span_ids for span in workflow if span is not root)
        assert root.name in FLOWS
        attrs = root.attributes
        assert attrs["gen_ai.operation.name"] == "invoke_agent"
        assert attrs["gen_ai.agent.name"] in AGENT_NAMES
        assert isinstance(attrs["flightrec.agent.version"], str) and isinstance(attrs["flightrec.prompt.version"], str)
        resource = root.resource.attributes
        assert resource["service.name"] == attrs["gen_ai.agent.name"]
        assert resource["service.version"] == attrs["flightrec.agent.version"]
        assert resource["deployment.environment"] == cat.ENVIRONMENT
        assert all(span.resource.attributes["service.name"] == resource["service.name"] for span in workflow)
        if root.name in cat.BATCH_FLOWS:
            assert not object_refs(root)
        else:
            assert attrs["flightrec.object.type"] in ("ticket", "order", "invoice", "customer", "account")
            assert is_ref(f"{attrs['flightrec.object.type']}:{attrs['flightrec.object.id']}")
    assert len(trace_ids) == len(fleet)


def test_spans_per_workflow_and_attributes_per_span_are_realistic(fleet: list[Workflow]) -> None:
    sizes = [len(workflow) for workflow in fleet]
    assert 8 <= sum(sizes) / len(sizes) <= 20
    assert max(sizes) <= 20
    ok = [len(wf) for wf in fleet if root_of(wf).status.status_code is not StatusCode.ERROR]
    assert min(ok) >= 7
    attrs = [len(span.attributes) for workflow in fleet for span in workflow]
    assert 7 <= sum(attrs) / len(attrs) <= 15


def test_llm_spans_follow_gen_ai_conventions(fleet: list[Workflow]) -> None:
    chats = [span for workflow in fleet for span in workflow if op(span) == "chat"]
    assert len(chats) > 1000
    for span in chats:
        attrs = span.attributes
        assert span.name == f"chat {attrs['gen_ai.request.model']}"
        assert isinstance(attrs["gen_ai.response.model"], str)
        for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
            assert type(attrs[key]) is int and attrs[key] > 0
        messages = json.loads(attrs["gen_ai.input.messages"])
        assert messages[0]["role"] in ("user", "tool") and messages[0]["parts"]
        if span.status.status_code is not StatusCode.ERROR:
            output = json.loads(attrs["gen_ai.output.messages"])
            assert output[0]["role"] == "assistant"
            assert len(attrs["gen_ai.output.messages"]) <= 220
    decisions = [json.loads(s.attributes["gen_ai.output.messages"])[0]["parts"][0] for s in chats
                 if s.attributes.get("gen_ai.response.finish_reasons") == ("stop",)]
    assert decisions and all(part["type"] == "text" and 30 <= len(part["content"]) <= 150 for part in decisions)


def test_tool_spans_record_arguments_results_and_inputs(fleet: list[Workflow]) -> None:
    tools = [span for workflow in fleet for span in workflow if op(span) == "execute_tool"]
    assert len(tools) > 1000
    with_inputs = 0
    for span in tools:
        attrs = span.attributes
        assert span.name == f"execute_tool {attrs['gen_ai.tool.name']}"
        assert isinstance(json.loads(attrs["gen_ai.tool.call.arguments"]), dict)
        if span.status.status_code is not StatusCode.ERROR:
            assert isinstance(json.loads(attrs["gen_ai.tool.call.result"]), dict)
        if "flightrec.inputs" in attrs:
            with_inputs += 1
            assert isinstance(attrs["flightrec.inputs"], tuple)
            assert all(is_ref(ref) for ref in attrs["flightrec.inputs"])
    assert with_inputs > len(tools) * 0.6


def test_guardrail_and_human_spans(fleet: list[Workflow]) -> None:
    verdicts, decisions = Counter(), Counter()
    for span in (span for workflow in fleet for span in workflow):
        attrs = span.attributes
        if op(span) == "guardrail":
            assert attrs["flightrec.guardrail.name"] in cat.GUARDRAIL_REASONS
            assert attrs["flightrec.guardrail.reason"]
            verdicts[attrs["flightrec.guardrail.verdict"]] += 1
        elif op(span) == "human":
            assert attrs["flightrec.human.actor"] in {actor for agent in cat.AGENTS for actor in agent.actors}
            assert attrs["flightrec.human.reason"]
            decisions[attrs["flightrec.human.decision"]] += 1
    assert set(verdicts) == {"pass", "warn", "block"}
    assert set(decisions) == {"approve", "edit", "reject", "override"}


def test_actions_carry_undo_descriptors_or_are_irreversible(fleet: list[Workflow]) -> None:
    actions = [span for workflow in fleet for span in workflow if op(span) == "action"]
    names, modes, kinds = Counter(), Counter(), Counter()
    for span in actions:
        attrs = span.attributes
        name = attrs["flightrec.action.name"]
        names[name] += 1
        modes[attrs["flightrec.mode"]] += 1
        assert span.name == name
        assert attrs["flightrec.action.system"] == cat.ACTION_SYSTEMS[name]
        assert attrs["flightrec.action.risk"] in ("low", "medium", "high")
        assert is_ref(f"{attrs['flightrec.object.type']}:{attrs['flightrec.object.id']}")
        if name in cat.IRREVERSIBLE_ACTIONS:
            assert not any(key in attrs for key in UNDO_KEYS)
            continue
        kinds[attrs["flightrec.undo.kind"]] += 1
        args = json.loads(attrs["flightrec.undo.args"])
        assert isinstance(args, dict) and args
        assert attrs["flightrec.undo.system"] == cat.RECORDS_SYSTEM  # a registered system, never a URL
        if attrs["flightrec.undo.kind"] == "http":
            assert attrs["flightrec.undo.target"].startswith("/") and attrs["flightrec.undo.target"].endswith("/undo")
        else:
            assert attrs["flightrec.undo.target"] == cat.HANDLER_UNDO[name]
        if name in ("refund.issue", "credit.apply"):
            assert type(attrs["flightrec.action.amount"]) is float and attrs["flightrec.action.amount"] > 0
            assert attrs["flightrec.action.currency"] in ("EUR", "USD")
            assert args["amount"] == attrs["flightrec.action.amount"]
    assert set(names) == set(cat.ACTION_SYSTEMS)
    assert set(modes) == {"observe", "assist", "auto"}
    assert set(kinds) == {"http", "handler"}


def actions_of(workflows: list[Workflow]) -> list[ReadableSpan]:
    return [span for workflow in workflows for span in workflow if op(span) == "action"]


def test_without_records_url_no_call_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the fleet called a records service without records_url")

    monkeypatch.setattr(httpx.Client, "send", refuse)
    actions = actions_of(build())
    assert actions and not any(span.status.status_code is StatusCode.ERROR for span in actions)


def test_records_url_is_carried_into_undo_targets_and_only_auto_actions_call_it() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    actions = actions_of(build(records_url=base + "/"))
    for span in actions:
        attrs = span.attributes
        called = attrs["flightrec.mode"] == "auto" and attrs["flightrec.action.name"] not in cat.IRREVERSIBLE_ACTIONS
        assert (span.status.status_code is StatusCode.ERROR) == called
        if called:
            assert span.events[0].attributes["exception.type"] == "ConnectError"
            assert not any(key in attrs for key in UNDO_KEYS)
        elif attrs.get("flightrec.undo.kind") == "http":
            target = attrs["flightrec.undo.target"]
            assert target.startswith("/") and "//" not in target and base not in target
    assert any(span.status.status_code is StatusCode.ERROR for span in actions)
    assert any("flightrec.undo.target" in span.attributes for span in actions)


class FakeControls:
    """Stands in for flightrec.sdk.ControlClient (the real one is tested against a server in
    test_rollback.py): agents in `paused` are refused actions, as when a pause lands mid-workflow;
    agents in `draining` may not start new work."""

    paused: set[str] = set()
    draining: set[str] = set()
    made: list[FakeControls] = []

    def __init__(self, api_url: str) -> None:
        self.api_url, self.checks, self.starts = api_url, [], []
        FakeControls.made.append(self)

    def check(self, agent: str, flow: str, starting: bool = False) -> SimpleNamespace:
        if starting:
            self.starts.append((agent, flow))
            return SimpleNamespace(allowed=agent not in self.draining, state="draining")
        self.checks.append((agent, flow))
        paused = agent in self.paused
        return SimpleNamespace(allowed=not paused, state="paused" if paused else "running")


@pytest.fixture
def controls(monkeypatch: pytest.MonkeyPatch) -> type[FakeControls]:
    sdk = ModuleType("flightrec.sdk")
    sdk.ControlClient = FakeControls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flightrec.sdk", sdk)
    monkeypatch.setattr(FakeControls, "paused", set())
    monkeypatch.setattr(FakeControls, "draining", set())
    monkeypatch.setattr(FakeControls, "made", [])
    return FakeControls


def test_controls_are_checked_before_each_action(controls: type[FakeControls]) -> None:
    checked = build(check_controls=True, endpoint="http://api.example:4318")
    assert [[fingerprint(s) for s in wf] for wf in checked] == [[fingerprint(s) for s in wf] for wf in build()]
    (client,) = controls.made
    assert client.api_url == "http://api.example:4318"
    expected = [(agent_of(wf), root_of(wf).name) for wf in checked
                for span in sorted(wf, key=lambda s: s.start_time) if op(span) == "action"]
    assert client.checks == expected


def test_a_paused_agent_acts_no_more(controls: type[FakeControls]) -> None:
    controls.paused = {"finance-agent"}
    workflows = build(check_controls=True, records_url=f"http://127.0.0.1:{free_port()}")
    finance = [wf for wf in workflows if agent_of(wf) == "finance-agent"]
    blocked = actions_of(finance)
    assert blocked and len(blocked) <= len(finance)
    for span in blocked:
        attrs = span.attributes
        assert attrs["flightrec.action.status"] == "blocked" and attrs["flightrec.control.state"] == "paused"
        assert span.status.status_code is StatusCode.UNSET
        assert not any(key in attrs for key in UNDO_KEYS)
        assert root_of(next(wf for wf in finance if span in wf)).status.status_code is StatusCode.UNSET
    others = actions_of([wf for wf in workflows if agent_of(wf) != "finance-agent"])
    assert not any("flightrec.action.status" in span.attributes for span in others)
    assert any(span.status.status_code is StatusCode.ERROR for span in others)


def test_a_draining_agent_starts_no_new_work(controls: type[FakeControls]) -> None:
    controls.draining = {"ops-agent"}
    workflows = [wf for wf in build(check_controls=True) if wf]
    assert workflows and not any(agent_of(wf) == "ops-agent" for wf in workflows)
    (client,) = controls.made
    assert sum(1 for agent, _ in client.starts if agent == "ops-agent") > 0


def test_errors_and_retries(fleet: list[Workflow]) -> None:
    retries = 0
    for workflow in fleet:
        spans = sorted(workflow, key=lambda span: span.start_time)
        for index, span in enumerate(spans):
            if span.status.status_code is StatusCode.ERROR and span.parent is not None:
                event = span.events[0]
                assert event.name == "exception"
                assert event.attributes["exception.type"] and event.attributes["exception.message"]
                assert span.status.description.startswith(event.attributes["exception.type"])
            attempt = span.attributes.get("flightrec.retry.attempt")
            if attempt:
                retries += 1
                previous = spans[index - 1]
                assert previous.status.status_code is StatusCode.ERROR
                assert previous.attributes["gen_ai.tool.call.id"] == span.attributes["gen_ai.tool.call.id"]
                assert previous.attributes.get("flightrec.retry.attempt", 0) == attempt - 1
        root = root_of(workflow)
        if root.status.status_code is StatusCode.ERROR:
            assert root.status.description.startswith("workflow failed: ")
            assert any(span.status.status_code is StatusCode.ERROR for span in workflow if span is not root)
    assert retries >= 10


def test_batch_flow_links_each_item_not_the_root(fleet: list[Workflow]) -> None:
    batches = [wf for wf in fleet if root_of(wf).name in cat.BATCH_FLOWS]
    assert batches
    for workflow in batches:
        root = root_of(workflow)
        items = [span for span in workflow if span.parent and span.parent.span_id == root.context.span_id
                 and span.name == "route_ticket"]
        assert len(items) >= 1
        for item in items:
            assert item.attributes["flightrec.object.type"] == "ticket"
            children = [span for span in workflow if span.parent and span.parent.span_id == item.context.span_id]
            assert any(op(child) == "chat" for child in children)


# --- business objects --------------------------------------------------------------------------


def test_objects_recur_across_workflows_and_agents(fleet: list[Workflow]) -> None:
    workflows_of: dict[str, int] = Counter()
    agents_of: dict[str, set[str]] = defaultdict(set)
    for workflow in fleet:
        refs = set().union(*(object_refs(span) for span in workflow))
        workflows_of.update(refs)
        for ref in refs:
            agents_of[ref].add(agent_of(workflow))
    by_kind = Counter(ref.split(":")[0] for ref in workflows_of)
    assert set(by_kind) == {"ticket", "order", "invoice", "customer", "account"}
    assert by_kind["ticket"] <= 600 // 3
    assert sum(1 for count in workflows_of.values() if count >= 3) >= 50
    assert max(workflows_of.values()) >= 10
    tickets_both = [ref for ref, agents in agents_of.items()
                    if ref.startswith("ticket:") and {"support-agent", "ops-agent"} <= agents]
    assert len(tickets_both) >= 10
    assert any(ref.startswith("account:") and {"ops-agent", "finance-agent"} <= agents
               for ref, agents in agents_of.items())


# --- the regression ----------------------------------------------------------------------------


def test_regression_raises_support_error_and_override_rates(fleet: list[Workflow]) -> None:
    failed_before, overridden_before, either_before = support_rates(fleet, 0, 300)
    failed_after, overridden_after, either_after = support_rates(fleet, 300, 600)
    assert failed_after >= failed_before + 0.12
    assert overridden_after >= overridden_before + 0.08
    assert either_after >= max(0.25, 3 * either_before)


def test_regression_only_hits_the_support_agent(fleet: list[Workflow]) -> None:
    def failure_rate(lo: int, hi: int) -> float:
        others = [wf for wf in fleet[lo:hi] if agent_of(wf) != cat.REGRESSION_AGENT]
        return sum(root_of(wf).status.status_code is StatusCode.ERROR for wf in others) / len(others)

    assert failure_rate(300, 600) < 0.08
    assert abs(failure_rate(300, 600) - failure_rate(0, 300)) < 0.05


def test_no_regression_keeps_support_rates_flat(clean_fleet: list[Workflow]) -> None:
    before, after = support_rates(clean_fleet, 0, 300), support_rates(clean_fleet, 300, 600)
    assert after[2] < 0.15 and abs(after[2] - before[2]) < 0.08
    models = {s.attributes["gen_ai.request.model"] for wf in clean_fleet for s in wf if op(s) == "chat"}
    assert cat.REGRESSED_BEHAVIOUR.model not in models


@pytest.mark.parametrize("regression_at", [37, None])
def test_model_and_prompt_switch_at_regression_at(regression_at: int | None) -> None:
    workflows = build(workflows=90, regression_at=regression_at)
    switch = 45 if regression_at is None else regression_at
    base = next(agent for agent in cat.AGENTS if agent.name == cat.REGRESSION_AGENT).behaviour
    seen_after = False
    for index, workflow in enumerate(workflows):
        root = root_of(workflow)
        models = {s.attributes["gen_ai.request.model"] for s in workflow if op(s) == "chat"}
        if agent_of(workflow) != cat.REGRESSION_AGENT:
            assert cat.REGRESSED_BEHAVIOUR.model not in models
            continue
        expected = cat.REGRESSED_BEHAVIOUR if index >= switch else base
        seen_after |= index >= switch
        assert models == {expected.model}
        assert root.attributes["flightrec.prompt.version"] == expected.prompt_version
        assert root.attributes["gen_ai.request.model"] == expected.model
    assert seen_after


def test_config_validation_and_defaults() -> None:
    with pytest.raises(ValidationError):
        FleetConfig(workflows=0)
    assert FleetConfig().endpoint == "http://127.0.0.1:4318"
    assert FleetConfig(protocol="grpc").endpoint == cat.DEFAULT_GRPC_ENDPOINT
    assert FleetConfig(protocol="grpc", endpoint="http://h:1").endpoint == "http://h:1"
    naive = build(workflows=3, start=START.replace(tzinfo=None))
    assert [root_of(wf).start_time for wf in naive] == [root_of(wf).start_time for wf in build(workflows=3)]


# --- labeled injections ------------------------------------------------------------------------

AT = 300  # where the injections of the 600-workflow runs start (the default: workflows // 2)
Simulated = tuple[list[Workflow], FleetReport]


def simulate(**overrides: Any) -> Simulated:
    simulation = FleetSimulation(FleetConfig(**({"workflows": 600, "start": START} | overrides)))
    workflows = list(simulation)
    assert simulation.report is not None
    return workflows, simulation.report


@pytest.fixture(scope="module")
def injected() -> dict[str, Simulated]:
    """One 600-workflow run per kind, each with that injection alone, from workflow 300."""
    return {kind: simulate(inject=[kind]) for kind in INJECTION_KINDS}


def trace_hex(workflow: Workflow) -> str:
    return f"{root_of(workflow).context.trace_id:032x}"


def duration_s(span: ReadableSpan) -> float:
    return (span.end_time - span.start_time) / SECOND


def of_agent(workflows: list[Workflow], agent: str, lo: int = 0, hi: int | None = None) -> list[Workflow]:
    return [wf for wf in workflows[lo:hi] if agent_of(wf) == agent]


def failure_rate(workflows: list[Workflow]) -> float:
    return sum(root_of(wf).status.status_code is StatusCode.ERROR for wf in workflows) / len(workflows)


def identical_calls(workflow: Workflow) -> int:
    """The most requests (distinct call ids; a retry keeps its id) of one tool with the same arguments."""
    calls: dict[tuple[str, str], set[str]] = defaultdict(set)
    for span in workflow:
        if op(span) == "execute_tool":
            key = (span.attributes["gen_ai.tool.name"], span.attributes["gen_ai.tool.call.arguments"])
            calls[key].add(span.attributes["gen_ai.tool.call.id"])
    return max((len(ids) for ids in calls.values()), default=0)


def trace_features(workflow: Workflow) -> dict[str, float]:
    """What an outlier detector sees of a trace."""
    return {
        "spans": len(workflow),
        "tools": len({s.attributes["gen_ai.tool.name"] for s in workflow if op(s) == "execute_tool"}),
        "tokens": sum(s.attributes.get("gen_ai.usage.input_tokens", 0) for s in workflow),
        "duration": duration_s(root_of(workflow)),
        "blocks": sum(s.attributes.get("flightrec.guardrail.verdict") == "block" for s in workflow),
    }


def versions(workflows: list[Workflow]) -> set[tuple[str, str, str]]:
    return {(root_of(wf).attributes["gen_ai.request.model"], root_of(wf).attributes["flightrec.prompt.version"],
             root_of(wf).attributes["flightrec.agent.version"]) for wf in workflows}


def test_the_report_lists_the_injections(injected: dict[str, Simulated]) -> None:
    for kind, (_, report) in injected.items():
        (injection,) = report.injections
        assert injection.kind == kind and injection.agent == cat.INJECTION_AGENTS[kind]
        assert injection.start_index == report.regression_at == AT
        assert injection.agent in injection.description and injection.workflows > 0
        assert report.regression_agent == (cat.REGRESSION_AGENT if kind == "version" else None)
        assert bool(injection.trace_ids) == (kind in ("loop", "outlier"))
    _, default = simulate(workflows=100)
    assert [(i.kind, i.agent, i.start_index) for i in default.injections] == [("version", cat.REGRESSION_AGENT, 50)]
    assert default.regression_agent == cat.REGRESSION_AGENT and default.regression_at == 50
    _, clean = simulate(workflows=100, no_regression=True)
    assert clean.injections == [] and clean.regression_agent is None and clean.regression_at is None
    _, both = simulate(workflows=100, inject=["drift", "version", "drift"])
    assert [i.kind for i in both.injections] == ["version", "drift"]
    _, late = simulate(workflows=100, inject=["loop"], regression_at=100)
    assert late.injections == [] and late.regression_at is None


def test_an_injection_changes_only_its_agent_from_regression_at(
    injected: dict[str, Simulated], clean_fleet: list[Workflow]
) -> None:
    def shape(workflow: Workflow) -> tuple:
        """What the shared world's changed state cannot change in another agent's workflow (it may change
        tool results, and whether route_ticket still sets the status of a ticket that is no longer new)."""
        root = root_of(workflow)
        return root.name, root.context.trace_id, root.start_time, root.status.status_code, root.attributes

    clean = [[fingerprint(s) for s in wf] for wf in clean_fleet]
    for kind, (workflows, _) in injected.items():
        target = cat.INJECTION_AGENTS[kind]
        assert [[fingerprint(s) for s in wf] for wf in workflows[:AT]] == clean[:AT], kind
        assert [(agent_of(wf), root_of(wf).name) for wf in workflows] == [
            (agent_of(wf), root_of(wf).name) for wf in clean_fleet
        ]
        changed = 0
        for workflow, control in zip(workflows[AT:], clean_fleet[AT:]):
            if agent_of(workflow) != target:
                assert shape(workflow) == shape(control), kind
            else:
                changed += [fingerprint(s) for s in workflow] != [fingerprint(s) for s in control]
        assert changed >= 5, kind


def test_loop_repeats_one_call_in_a_share_of_the_agents_workflows(
    injected: dict[str, Simulated], clean_fleet: list[Workflow]
) -> None:
    workflows, report = injected["loop"]
    agent = cat.INJECTION_AGENTS["loop"]
    looped = {index: identical_calls(wf) for index, wf in enumerate(workflows) if identical_calls(wf) > 1}
    assert all(index >= AT and agent_of(workflows[index]) == agent for index in looped)
    assert all(8 <= count <= cat.LOOP_REPEATS[1] + 1 for count in looped.values())
    share = len(looped) / len(of_agent(workflows, agent, AT))
    assert 0.18 <= share <= 0.45
    assert max(identical_calls(wf) for wf in clean_fleet) == 1
    (injection,) = report.injections
    assert injection.workflows == len(looped)
    assert sorted(injection.trace_ids) == sorted(trace_hex(workflows[index]) for index in looped)
    for index in looped:
        tools = sorted((s for s in workflows[index] if op(s) == "execute_tool"), key=lambda s: s.start_time)
        first = tools[0]
        same = [s for s in tools if s.name == first.name and s.attributes["gen_ai.tool.call.arguments"]
                == first.attributes["gen_ai.tool.call.arguments"]]
        assert len(same) >= looped[index]
        own = same[-1].attributes["gen_ai.tool.call.id"]  # the workflow's own call: it may fail or retry as usual
        repeats = [s for s in same if s.attributes["gen_ai.tool.call.id"] != own]
        assert len(repeats) >= cat.LOOP_REPEATS[0]
        assert all(s.status.status_code is StatusCode.UNSET and "flightrec.retry.attempt" not in s.attributes
                   for s in repeats)
        assert len({s.attributes["gen_ai.tool.call.result"] for s in repeats}) == 1
        assert root_of(workflows[index]).attributes["flightrec.prompt.version"] == "ops-v7"


def test_cost_multiplies_the_agents_input_tokens(injected: dict[str, Simulated], clean_fleet: list[Workflow]) -> None:
    workflows, report = injected["cost"]
    agent = cat.INJECTION_AGENTS["cost"]

    def tokens(workflow: Workflow) -> list[int]:
        return [s.attributes["gen_ai.usage.input_tokens"] for s in workflow if op(s) == "chat"]

    changed = 0
    for index, (workflow, control) in enumerate(zip(workflows, clean_fleet)):
        factor = cat.COST_TOKEN_FACTOR if index >= AT and agent_of(workflow) == agent else 1
        assert tokens(workflow) == [factor * count for count in tokens(control)]
        assert [s.attributes.get("gen_ai.usage.output_tokens") for s in workflow] == [
            s.attributes.get("gen_ai.usage.output_tokens") for s in control
        ]
        changed += factor > 1
    assert report.injections[0].workflows == changed > 50
    assert versions(of_agent(workflows, agent, AT)) == versions(of_agent(workflows, agent, 0, AT))

    def median_tokens(runs: list[Workflow]) -> float:
        return statistics.median(sum(tokens(wf)) for wf in runs)

    before, after = median_tokens(of_agent(workflows, agent, 0, AT)), median_tokens(of_agent(workflows, agent, AT))
    assert after >= 6 * before
    clean_after = median_tokens(of_agent(clean_fleet, agent, AT))
    assert 0.8 <= clean_after / before <= 1.25


def test_drift_slows_the_agent_down_and_raises_its_errors_gradually(
    injected: dict[str, Simulated], clean_fleet: list[Workflow]
) -> None:
    workflows, report = injected["drift"]
    agent = cat.INJECTION_AGENTS["drift"]
    low, high = cat.DRIFT_SLOWDOWN
    ratios: list[tuple[int, float]] = []
    for index in range(AT, 600):
        workflow, control = workflows[index], clean_fleet[index]
        if agent_of(workflow) != agent:
            continue
        failed = {root_of(wf).status.status_code is StatusCode.ERROR for wf in (workflow, control)}
        if failed == {False}:  # same draws in both runs: every duration stretched by the slowdown
            expected = low + (high - low) * (index - AT + 1) / (600 - AT)
            for span, twin in zip(workflow, control):
                assert duration_s(span) == pytest.approx(expected * duration_s(twin), rel=1e-6, abs=1e-6)
            ratios.append((index, duration_s(root_of(workflow)) / duration_s(root_of(control))))
    assert len(ratios) > 50
    assert ratios[0][1] < 1.1 and ratios[-1][1] > 2.8
    assert [r for _, r in ratios] == sorted(r for _, r in ratios)
    assert report.injections[0].workflows == len(of_agent(workflows, agent, AT))

    # a workflow that fails in the clean run fails in the drifted one too (same draw, higher rate), and more fail
    failed = [index for index, wf in enumerate(workflows) if root_of(wf).status.status_code is StatusCode.ERROR]
    failed_clean = [index for index, wf in enumerate(clean_fleet) if root_of(wf).status.status_code is StatusCode.ERROR]
    assert set(failed_clean) <= set(failed)
    assert all(index >= AT and agent_of(workflows[index]) == agent for index in set(failed) - set(failed_clean))
    before = failure_rate(of_agent(workflows, agent, 0, AT))
    after, clean_after = failure_rate(of_agent(workflows, agent, AT)), failure_rate(of_agent(clean_fleet, agent, AT))
    last_half = failure_rate(of_agent(workflows, agent, (AT + 600) // 2))
    assert before < 0.06 and clean_after < 0.08
    assert after >= clean_after + 0.03 and last_half >= max(0.05, 2 * before)
    assert versions(of_agent(workflows, agent, AT)) == versions(of_agent(workflows, agent, 0, AT))

    def median_latency(runs: list[Workflow]) -> float:
        return statistics.median(duration_s(s) for wf in runs for s in wf if op(s) in ("chat", "execute_tool"))

    clean_before, clean_last = median_latency(of_agent(clean_fleet, agent, 0, AT)), median_latency(
        of_agent(clean_fleet, agent, 500)
    )
    assert 0.8 <= clean_last / clean_before <= 1.25
    assert median_latency(of_agent(workflows, agent, 500)) >= 2.2 * clean_before


def test_outliers_are_a_handful_of_very_unusual_traces(
    injected: dict[str, Simulated], clean_fleet: list[Workflow]
) -> None:
    workflows, report = injected["outlier"]
    agent = cat.INJECTION_AGENTS["outlier"]
    outliers = [index for index, wf in enumerate(workflows) if len(wf) >= 60]
    assert cat.OUTLIER_TRACES[0] <= len(outliers) <= cat.OUTLIER_TRACES[1]
    assert all(index >= AT and agent_of(workflows[index]) == agent for index in outliers)
    (injection,) = report.injections
    assert sorted(injection.trace_ids) == sorted(trace_hex(workflows[index]) for index in outliers)
    assert injection.workflows == len(outliers)
    normal = [trace_features(wf) for index, wf in enumerate(workflows) if index not in outliers]
    normal += [trace_features(wf) for wf in clean_fleet]
    assert max(f["spans"] for f in normal) <= 20 and max(f["tools"] for f in normal) <= 3
    assert max(f["tokens"] for f in normal) < 20_000 and max(f["blocks"] for f in normal) <= 2
    durations = []
    for index in outliers:
        features = trace_features(workflows[index])
        assert features["tools"] >= cat.OUTLIER_TOOL_CALLS[0] and features["tokens"] >= 100_000
        assert features["blocks"] >= cat.OUTLIER_BLOCKS[0] and features["duration"] >= 240
        assert root_of(workflows[index]).status.status_code is not StatusCode.ERROR
        assert not any(op(s) == "action" for s in workflows[index])
        durations.append(features["duration"])
    assert statistics.median(durations) > max(f["duration"] for f in normal)
    assert identical_calls(workflows[outliers[0]]) == 1


def test_injected_runs_are_deterministic_per_seed() -> None:
    everything = list(INJECTION_KINDS)
    first, first_report = simulate(workflows=200, inject=everything)
    second, second_report = simulate(workflows=200, inject=everything)
    assert [[fingerprint(s) for s in wf] for wf in first] == [[fingerprint(s) for s in wf] for wf in second]
    assert first_report == second_report
    assert {i.kind for i in first_report.injections} == set(INJECTION_KINDS)
    _, other = simulate(workflows=200, inject=everything, seed=8)
    outliers = {i.kind: i.trace_ids for i in other.injections}["outlier"]
    assert outliers and not set(outliers) & {t for i in first_report.injections for t in i.trace_ids}


def test_spacing_packs_a_dense_day_inside_its_window() -> None:
    workflows = build(workflows=2000, spacing_s=0.9, inject=list(INJECTION_KINDS))
    moved = assert_clock(workflows, 0.9)
    assert moved < len(workflows) // 10
    assert FleetConfig().spacing == cat.WORKFLOW_SPACING_S and FleetConfig(spacing_s=0.9).spacing == 0.9


def test_default_start_ends_the_window_now() -> None:
    before = time.time_ns()
    workflows = list(build_workflow_spans(FleetConfig(workflows=200, spacing_s=5)))
    after = time.time_ns()
    spans = [span for workflow in workflows for span in workflow]
    assert min(s.start_time for s in spans) >= before - 200 * 5 * SECOND
    assert max(s.end_time for s in spans) <= after


def test_injection_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="no_regression"):
        FleetConfig(no_regression=True, inject=["loop"])
    with pytest.raises(ValidationError):
        FleetConfig(inject=["meltdown"])
    with pytest.raises(ValidationError):
        FleetConfig(spacing_s=0)
    assert FleetConfig(inject=["cost", "cost", "loop"]).inject == ["cost", "loop"]


def test_cli_fleet_passes_injections_and_spacing(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flightrec import cli

    seen: list[FleetConfig] = []

    def fake_run(config: FleetConfig) -> FleetReport:
        seen.append(config)
        return FleetReport(workflows=1, spans=1, traces=1, agents=[], example_objects=[], regression_agent=None,
                           regression_at=None)

    monkeypatch.setattr(cli, "_run_fleet_with_progress", fake_run)
    runner = CliRunner()
    args = ["fleet", "--workflows", "50", "--inject", "loop", "--inject", "drift", "--spacing", "0.9",
            "--regression-at", "10"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config.inject == ["loop", "drift"] and config.spacing_s == 0.9 and config.regression_at == 10
    assert runner.invoke(cli.app, ["fleet", "--workflows", "5"]).exit_code == 0
    assert seen[-1].inject == [] and seen[-1].spacing == cat.WORKFLOW_SPACING_S and not seen[-1].no_regression
    assert runner.invoke(cli.app, ["fleet", "--no-regression"]).exit_code == 0 and seen[-1].no_regression
    for bad in (["--inject", "meltdown"], ["--no-regression", "--inject", "loop"], ["--spacing", "0"]):
        result = runner.invoke(cli.app, ["fleet", *bad])
        assert result.exit_code == 1 and "invalid fleet option" in result.output, bad
    assert len(seen) == 3


# --- delivery over real OTLP -------------------------------------------------------------------


class _Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans = 0
        self.traces: set[bytes] = set()
        self.services: set[str] = set()
        self.auth: set[str | None] = set()
        self.encodings: set[str | None] = set()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                for attr in resource_spans.resource.attributes:
                    if attr.key == "service.name":
                        self.services.add(attr.value.string_value)
                for scope_spans in resource_spans.scope_spans:
                    self.spans += len(scope_spans.spans)
                    self.traces.update(span.trace_id for span in scope_spans.spans)


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, _Received]]:
    received = _Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.auth.add(self.headers.get("Authorization"))
            received.encodings.add(self.headers.get("Content-Encoding"))
            if self.path != "/v1/traces" or self.headers.get("Authorization") != "Bearer s3cret":
                self.send_response(401 if self.path == "/v1/traces" else 404)
            else:
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_run_fleet_over_otlp_http(http_receiver: tuple[str, _Received]) -> None:
    url, received = http_receiver
    ticks: list[int] = []
    report = run_fleet(FleetConfig(endpoint=url, workflows=700, ingest_token="s3cret", start=START), ticks.append)
    assert ticks == [1] * 700
    assert report.workflows == report.traces == 700
    assert received.spans == report.spans == sum(len(wf) for wf in build(workflows=700))
    assert len(received.traces) == 700
    assert received.auth == {"Bearer s3cret"} and received.encodings == {"gzip"}
    assert received.services == set(report.agents) == AGENT_NAMES
    assert report.regression_agent == cat.REGRESSION_AGENT and report.regression_at == 350
    kinds = [ref.split(":")[0] for ref in report.example_objects]
    assert kinds == ["ticket", "order", "invoice", "customer", "account"]
    assert all(is_ref(ref) for ref in report.example_objects)
    again = run_fleet(FleetConfig(endpoint=url, workflows=700, ingest_token="s3cret", start=START))
    assert again.example_objects == report.example_objects


def test_run_fleet_reports_a_rejected_token(http_receiver: tuple[str, _Received]) -> None:
    url, _ = http_receiver
    with pytest.raises(RuntimeError, match=r"export to .*/v1/traces failed.*401"):
        run_fleet(FleetConfig(endpoint=url, workflows=50, ingest_token="wrong"))


def test_run_fleet_clean_run_reports_no_regression(http_receiver: tuple[str, _Received]) -> None:
    url, _ = http_receiver
    config = FleetConfig(endpoint=url + "/v1/traces", workflows=20, ingest_token="s3cret", no_regression=True)
    report = run_fleet(config)
    assert report.regression_agent is None and report.regression_at is None


def test_run_fleet_over_otlp_grpc() -> None:
    received = _Received()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802
            token = dict(context.invocation_metadata()).get("authorization")
            received.auth.add(token)
            if token != "Bearer g-token":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong ingest token")
            received.add(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        report = run_fleet(FleetConfig(protocol="grpc", endpoint=endpoint, workflows=150, ingest_token="g-token"))
        assert received.spans == report.spans and len(received.traces) == 150
        with pytest.raises(RuntimeError, match="UNAUTHENTICATED"):
            run_fleet(FleetConfig(protocol="grpc", endpoint=f"127.0.0.1:{port}", workflows=10, ingest_token="x"))
    finally:
        server.stop(None)
