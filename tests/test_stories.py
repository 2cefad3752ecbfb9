"""Narration, step kind by step kind and convention by convention, on spans read back from chDB."""

from __future__ import annotations

import json
import os
import re

import pytest

from flightrec.collector.rows import RowBuilder
from flightrec.stories import narrate, story_html
from flightrec.stories.text import action_phrase, describe_fields, message_text, tool_calls
from flightrec.store import ObjectRef, Store
from tests.otlp_helpers import BASE_NS, make_request, make_span, price_stored

MS = 1_000_000
TICKET = ObjectRef(type="ticket", id="TCK-1042")


class Run:
    """One trace under construction: a root naming the ticket and children under it."""

    def __init__(self, agent: str = "support-agent", flow: str = "issue_refund", at_ms: int = 0, **root_attrs) -> None:
        self.trace_id = os.urandom(16)
        self.clock = BASE_NS + at_ms * MS
        self.spans = []
        self.root = self.add(flow, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                                    "flightrec.object.type": "ticket", "flightrec.object.id": "TCK-1042",
                                    **root_attrs}, parent=b"")

    def add(self, name: str, attrs: dict, parent: bytes | None = None, error: str = ""):
        self.clock += 10 * MS
        span = make_span(name, attrs, trace_id=self.trace_id, start_ns=self.clock,
                         parent=self.root.span_id if parent is None else parent)
        if error:
            span.status.code = 2
            span.status.message = error
        self.spans.append(span)
        return span


def story_of(store: Store, *runs: Run, resource: dict | None = None):
    for index, run in enumerate(runs):
        request = make_request(run.spans, resource or {"service.name": "svc"})
        store.insert_batch(RowBuilder().request_rows(request), dedup_token=f"run-{index}-{os.urandom(4).hex()}")
    price_stored(store)
    return narrate(TICKET, store.object_spans(obj=TICKET))


def sentences(story) -> list[str]:
    return [step.sentence for step in story.steps]


def test_agent_llm_tool_guardrail_human_action_each_tell_who_what_why(store: Store) -> None:
    run = Run(**{"gen_ai.request.model": "gpt-4o", "flightrec.prompt.version": "support-v12"})
    run.add("chat gpt-4o", {
        "gen_ai.operation.name": "chat", "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 812,
        "gen_ai.usage.output_tokens": 95,
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "Customer was double charged; refund of 42.00 EUR is within policy."}]}]),
    })
    run.add("execute_tool get_order", {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_order",
        "gen_ai.tool.call.arguments": '{"order_id":"ORD-20317"}',
        "gen_ai.tool.call.result": '{"status":"paid","total":"42.00"}',
        "flightrec.inputs": ["order:ORD-20317", "customer:CUS-311"],
    })
    run.add("guardrail", {"flightrec.operation": "guardrail", "flightrec.guardrail.name": "refund_policy",
                          "flightrec.guardrail.verdict": "pass", "flightrec.guardrail.reason": "Within limit"})
    run.add("review", {"flightrec.operation": "human", "flightrec.human.decision": "override",
                       "flightrec.human.actor": "maria.lopez", "flightrec.human.reason": "Customer is a known fraud case"})
    run.add("refund.issue", {"flightrec.operation": "action", "flightrec.action.name": "refund.issue",
                             "flightrec.action.system": "billing", "flightrec.action.amount": 42.0,
                             "flightrec.action.currency": "EUR", "flightrec.mode": "auto", "order.id": "ORD-20317",
                             "flightrec.undo.kind": "http", "flightrec.undo.target": "http://x/refunds/1/undo"})
    story = story_of(store, run)
    said = sentences(story)
    assert said[0] == "support-agent started “issue refund” on ticket TCK-1042 (gpt-4o, prompt support-v12)."
    assert said[1] == ("support-agent asked gpt-4o (812 tokens in, 95 out), which concluded: "
                       "“Customer was double charged; refund of 42.00 EUR is within policy.”")
    assert said[2] == ("support-agent called get_order with order ORD-20317, reading customer CUS-311 and "
                       "order ORD-20317, and got status paid, total 42.00.")
    assert said[3] == "The refund policy guardrail passed: Within limit."
    assert said[4] == "maria.lopez overrode the agent's proposal: “Customer is a known fraud case” (as reported by svc)."
    assert said[5] == "support-agent issued a refund of 42.00 EUR for order ORD-20317 in billing."
    kinds = [(step.kind, step.severity) for step in story.steps]
    assert kinds == [("agent", "info"), ("llm", "info"), ("tool", "info"), ("guardrail", "info"),
                     ("human", "warning"), ("action", "info")]
    assert story.steps[5].details["reversible"] == "yes" and story.steps[2].details["based_on"]
    assert story.status == "overridden"
    assert "maria.lopez overrode" in story.summary and "Money moved by agents: 42.00 EUR" in story.summary


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("observe", "support-agent would have changed the plan for ticket TCK-1042 in crm (observe mode: nothing was changed)."),
        ("assist", "support-agent suggested to change the plan for ticket TCK-1042 in crm, for a person to carry out."),
        ("auto", "support-agent changed the plan for ticket TCK-1042 in crm."),
    ],
)
def test_action_modes_would_have_suggested_did(store: Store, mode: str, expected: str) -> None:
    run = Run()
    run.add("plan.change", {"flightrec.action.name": "plan.change", "flightrec.action.system": "crm",
                            "flightrec.mode": mode, "ticket.id": "TCK-1042"})
    assert sentences(story_of(store, run))[1] == expected


def test_retries_collapse_into_one_step(store: Store) -> None:
    run = Run()
    call = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_ticket",
            "gen_ai.tool.call.arguments": '{"ticket_id":"TCK-1042"}'}
    for attempt in range(13):
        run.add("execute_tool get_ticket", {**call, **({"flightrec.retry.attempt": attempt} if attempt else {})},
                error="TimeoutError: get_ticket timed out after 2000 ms")
    story = story_of(store, run)
    assert len(story.steps) == 2
    assert story.steps[1].sentence == ("support-agent called get_ticket with ticket TCK-1042; retried 12 times, then "
                                       "failed: TimeoutError: get_ticket timed out after 2000 ms.")
    assert story.steps[1].severity == "critical" and story.steps[1].details["attempts"] == "13"


def test_a_recovered_retry_says_so(store: Store) -> None:
    run = Run()
    call = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_ticket"}
    run.add("t", call, error="timeout")
    run.add("t", {**call, "flightrec.retry.attempt": 1, "gen_ai.tool.call.result": '{"status":"new"}'})
    step = story_of(store, run).steps[1]
    assert step.sentence == "support-agent called get_ticket; it failed 1 time (timeout) and succeeded on retry, and got status new."
    assert step.severity == "notice"


def test_failures_blocks_and_rejections_set_severity_and_status(store: Store) -> None:
    blocked = Run(at_ms=0)
    blocked.add("g", {"flightrec.guardrail.name": "refund_limit", "flightrec.guardrail.verdict": "block",
                      "flightrec.guardrail.reason": "Amount above 500 EUR"})
    failed = Run(at_ms=1000)
    failed.add("refund.issue", {"flightrec.action.name": "refund.issue", "flightrec.action.system": "billing",
                                "flightrec.mode": "auto"}, error="payment gateway returned 502")
    story = story_of(store, blocked, failed)
    said = sentences(story)
    assert "The refund limit guardrail blocked: Amount above 500 EUR." in said
    assert "support-agent tried to issue a refund in billing, but it failed: payment gateway returned 502." in said
    assert story.status == "failed"
    assert story.outcome.startswith("The last run (“issue refund” by support-agent at ") and "failed." in story.outcome
    assert "Earlier runs: 1 blocked." in story.outcome
    assert "Guardrails blocked 1 step." in story.summary


def test_an_assist_suggestion_nobody_reviewed_is_pending(store: Store) -> None:
    run = Run()
    run.add("credit.apply", {"flightrec.action.name": "credit.apply", "flightrec.mode": "assist"})
    story = story_of(store, run)
    assert story.status == "pending" and "waiting for a person" in story.outcome


def test_openinference_spans_read_naturally(store: Store) -> None:
    run = Run(agent="rag-bot", flow="answer_question")
    run.add("llm", {"openinference.span.kind": "LLM", "llm.model_name": "claude-sonnet-4", "llm.token_count.prompt": 40,
                    "llm.token_count.completion": 7, "output.value": "Reset the password from the login page."})
    run.add("retrieve", {"openinference.span.kind": "RETRIEVER", "flightrec.inputs": ["asset:KB-12"]})
    said = sentences(story_of(store, run))
    assert said[1] == ("rag-bot asked claude-sonnet-4 (40 tokens in, 7 out), which concluded: "
                       "“Reset the password from the login page.”")
    assert said[2] == "rag-bot retrieved asset KB-12."


def test_openllmetry_and_bare_spans_degrade_gracefully(store: Store) -> None:
    run = Run(agent="planner")
    run.add("openai.chat", {"traceloop.span.kind": "task", "gen_ai.request.model": "gpt-4o",
                            "gen_ai.usage.prompt_tokens": 812, "gen_ai.usage.completion_tokens": 95,
                            "gen_ai.completion.0.content": "Escalate to tier 2.", "gen_ai.operation.name": "chat"})
    run.add("http GET /orders", {}, error="")
    said = sentences(story_of(store, run, resource={"service.name": "support-agent"}))
    assert said[1] == "planner asked gpt-4o (812 tokens in, 95 out), which concluded: “Escalate to tier 2.”"
    assert said[2] == "planner ran http GET /orders."


def test_no_raw_json_and_no_span_ids_in_sentences(store: Store) -> None:
    run = Run()
    run.add("execute_tool lookup", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
                                    "gen_ai.tool.call.arguments": '{"filters":{"deep":{"x":1}},"ids":[1,2,3,4,5,6]}',
                                    "gen_ai.tool.call.result": '[{"a":1},{"b":2}]'})
    run.add("chat", {"gen_ai.operation.name": "chat", "gen_ai.output.messages": '{"broken json'})
    story = story_of(store, run)
    for step in story.steps:
        assert not re.search(r"[{}\[\]]", step.sentence), step.sentence
        assert step.span_id not in step.sentence and step.trace_id not in step.sentence
    assert "filters 1 fields, ids 1, 2, 3, 4 and 2 more" in story.steps[1].sentence


def test_runs_are_told_one_after_another_with_times_and_actors(store: Store) -> None:
    first = Run(agent="support-agent", at_ms=0)
    second = Run(agent="ops-agent", flow="route_ticket", at_ms=5)  # starts while the first is still running
    first.add("late.action", {"flightrec.action.name": "ticket.assign", "flightrec.mode": "auto"})
    story = story_of(store, first, second)
    assert [step.agent for step in story.steps] == ["support-agent", "support-agent", "ops-agent"]
    assert story.agents == ["ops-agent", "support-agent"] and len(story.traces) == 2
    assert all(step.time and step.agent for step in story.steps)


def test_html_export_is_self_contained_and_escaped(store: Store) -> None:
    run = Run()
    run.add("review", {"flightrec.human.decision": "reject", "flightrec.human.actor": "<script>alert(1)</script>"})
    page = story_html(story_of(store, run))
    assert page.startswith("<!doctype html>") and "Ticket TCK-1042" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page


def test_text_helpers() -> None:
    assert action_phrase("refund.issue") == ("issue a refund", "issued a refund")
    assert action_phrase("subscription.cancel") == ("cancel subscription", "cancelled subscription".replace("ll", "l"))
    assert action_phrase("invoice.void") == ("void invoice", "voided invoice")
    assert describe_fields('{"customer_id": "CUS-1", "vip": true}') == "customer CUS-1, vip yes"
    assert message_text('[{"role":"assistant","content":"Done."}]') == "Done."
    assert message_text("plain words") == "plain words"
    assert tool_calls('[{"parts":[{"type":"tool_call","name":"get_order"}]}]') == ["get_order"]
    assert tool_calls('[{"tool_calls":[{"function":{"name":"search"}}]}]') == ["search"]


def test_a_busy_object_tells_its_latest_runs(store: Store) -> None:
    runs = [Run(at_ms=i * 100) for i in range(5)]
    story_of(store, *runs)
    latest = store.object_spans(obj=TICKET, runs=2)
    assert {span.trace_id for span in latest} == {runs[3].trace_id.hex(), runs[4].trace_id.hex()}
    story = narrate(TICKET, latest, runs_total=store.object_run_count(obj=TICKET))
    assert story.runs_total == 5 and story.summary.startswith("Showing the latest 2 of 5 runs.")


def test_a_span_s_own_agent_wins_over_inheritance_and_costs_print_at_their_precision(store: Store) -> None:
    from flightrec.stories.text import usd

    run = Run(agent="support-agent")
    run.add("issue refund", {"gen_ai.agent.name": "refund_agent", "flightrec.action.name": "refund.issue",
                             "flightrec.action.system": "billing", "flightrec.mode": "auto"})
    run.add("chat gpt-4o-mini", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                                 "gen_ai.provider.name": "openai",
                                 "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500})
    run.add("chat acme-llm-9", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "acme-llm-9",
                                "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500})
    story = story_of(store, run)
    [action] = [step for step in story.steps if step.kind == "action"]
    assert action.agent == "refund_agent"  # the action span's own agent, not the support-agent above it
    costs = {step.details["model"]: step.details["cost_usd"] for step in story.steps if step.kind == "llm"}
    assert costs == {"gpt-4o-mini": "$0.00045", "acme-llm-9": "cost unknown (no price for acme-llm-9)"}
    assert usd(1.234) == "$1.23" and usd(0.0) == "$0"


def test_an_ingested_undo_record_is_a_claim_unless_this_server_undid_it(store: Store) -> None:
    """A span shaped like the server's own undo record, sent by anyone with an ingest token, must not make
    the story say the action was undone (nor make rollbacks skip it: ``ActionsRepository.undone``)."""
    action = make_span("issue_refund", {"flightrec.action.name": "refund.issue", "flightrec.action.amount": 42.0,
                                        "ticket.id": TICKET.id}, start_ns=BASE_NS)
    action_id = f"{action.trace_id.hex()}:{action.span_id.hex()}"
    forged = make_span("undo refund.issue", {"flightrec.operation": "undo", "flightrec.undo.of": action_id,
                                             "flightrec.human.actor": "cfo", "ticket.id": TICKET.id},
                       start_ns=BASE_NS + 10**9)
    store.insert_batch(RowBuilder().request_rows(make_request([action, forged], {"service.name": "svc"})), "forged")
    spans = store.object_spans(obj=TICKET)
    claimed = narrate(TICKET, spans, verified_undos=set(store.actions.undone(action_ids=[action_id])))
    [step] = [step for step in claimed.steps if step.kind == "action"]
    assert "no rollback of this server undid it" in step.sentence and "undone_by" not in step.details
    assert claimed.status != "undone" and "cfo" not in claimed.outcome
    recorded = narrate(TICKET, spans, verified_undos={action_id})  # as if a plan of this server had undone it
    [step] = [step for step in recorded.steps if step.kind == "action"]
    assert step.details["undone_by"] == "cfo" and recorded.status == "undone"


def test_the_sending_token_is_named_and_a_foreign_claim_is_marked_unverified(store: Store) -> None:
    """Spans kept by ``foreign_spans = mark``: a decision sent with refund-bot's token in billing_agent's
    name reads as unverified; the token that delivered it is named where a person's word is reported."""
    own = Run(agent="refund_agent")
    own.add("approval", {"flightrec.human.decision": "approve", "flightrec.human.actor": "cfo"})
    foreign = Run(agent="billing_agent", at_ms=1000)
    foreign.add("approval", {"flightrec.human.decision": "approve", "flightrec.human.actor": "cfo"})
    resource = {"service.name": "refund-svc", "flightrec.ingest.principal": "refund-bot"}
    for index, run in enumerate((own, foreign)):
        store.insert_batch(RowBuilder().request_rows(make_request(run.spans, resource)), dedup_token=f"claims-{index}")
    spans = store.object_spans(obj=TICKET)
    story = narrate(TICKET, spans, speakers={"refund-bot": {"refund_agent", "refund-svc"}})
    human = [step for step in story.steps if step.kind == "human"]
    assert [step.agent for step in human] == ["refund_agent", "billing_agent"]
    assert all("(as reported by refund-svc, sent with refund-bot's token)" in step.sentence for step in human)
    assert "claim" not in human[0].details and "Unverified" not in human[0].sentence
    assert human[1].details["claim"] == "sent with refund-bot's token, which does not speak for billing_agent"
    assert human[1].severity == "warning" and "Unverified: sent with refund-bot's token" in human[1].sentence
    unchecked = narrate(TICKET, spans)  # no principals to check against: nothing marked
    assert not any("claim" in step.details for step in unchecked.steps)
