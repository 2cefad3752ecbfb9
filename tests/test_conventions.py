"""The convention mapping, attribute by attribute, for each convention.

Every case goes the real way: a span as received into a chDB store, the engine derives the
columns from the built-in rules (store/derive.py), the row and its links are read back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from flightrec.collector.rows import RowBuilder
from flightrec.store import ObjectRef, Store, StoreConfig, open_store
from flightrec.store.rules import RuleSet, alias_rules
from flightrec.store.texts import text_of
from tests.otlp_helpers import make_request, make_span, price_stored

_store: Store | None = None


@pytest.fixture(scope="module", autouse=True)
def conventions_store(chdb_dir) -> Iterator[Store]:
    global _store
    _store = open_store(StoreConfig(dsn=f"chdb://{chdb_dir}", database=f"t_{uuid.uuid4().hex[:10]}"))
    yield _store
    _store.engine.command("drop_test_database", f"DROP DATABASE IF EXISTS {_store.db}")
    _store.close()
    _store = None


def normalized(attrs: dict, resource: dict | None = None, rules: RuleSet | None = None) -> dict:
    """The stored row of one span with these attributes, derived by the engine, and its links."""
    assert _store is not None
    if rules is not None:
        _store.meaning.install(rules, "default")
    try:
        span = make_span("op", attrs)
        _store.insert_batch(RowBuilder().request_rows(make_request([span], resource or {})), os.urandom(8).hex())
        price_stored(_store)
        trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
        row = _store.engine.query_columns(
            "t", f"SELECT *, CostUsd, CostKnown FROM {_store.db}.otel_traces WHERE SpanId = {{id:String}}",
            {"id": span_id})
        out = {name: values[0] for name, values in row.items()}
        [record] = _store.trace_spans(trace_id=trace_id)
        out["InputText"], out["OutputText"] = record.input_text, record.output_text
        out["_links"] = [(ref.split(":", 1)[0], ref.split(":", 1)[1], trace_id, span_id) for ref in out["Objects"]
                         if span_id in {s.span_id for s in _store.object_spans(obj=ObjectRef.parse(ref))}]
        return out
    finally:
        if rules is not None:
            _store.meaning.install(RuleSet(), "default")


def operation_of(attrs: dict) -> str:
    return normalized(attrs)["Operation"]


@pytest.mark.parametrize(
    ("attr", "value", "operation"),
    [
        ("gen_ai.operation.name", "invoke_agent", "agent"),
        ("gen_ai.operation.name", "create_agent", "agent"),
        ("gen_ai.operation.name", "chat", "llm"),
        ("gen_ai.operation.name", "text_completion", "llm"),
        ("gen_ai.operation.name", "generate_content", "llm"),
        ("gen_ai.operation.name", "embeddings", "llm"),
        ("gen_ai.operation.name", "execute_tool", "tool"),
        ("openinference.span.kind", "AGENT", "agent"),
        ("openinference.span.kind", "LLM", "llm"),
        ("openinference.span.kind", "TOOL", "tool"),
        ("openinference.span.kind", "RETRIEVER", "retrieval"),
        ("openinference.span.kind", "GUARDRAIL", "guardrail"),
        ("openinference.span.kind", "CHAIN", "other"),
        ("traceloop.span.kind", "workflow", "other"),
        ("traceloop.span.kind", "agent", "agent"),
        ("traceloop.span.kind", "tool", "tool"),
        ("traceloop.span.kind", "task", "other"),
        ("flightrec.operation", "action", "action"),
        ("flightrec.operation", "human", "human"),
        ("flightrec.operation", "guardrail", "guardrail"),
        ("flightrec.operation", "retrieval", "retrieval"),
    ],
)
def test_operation_from_each_convention(attr: str, value: str, operation: str) -> None:
    assert normalized({attr: value})["Operation"] == operation


def test_operation_first_present_wins_and_unknown_values_fall_through() -> None:
    assert operation_of({"gen_ai.operation.name": "chat", "openinference.span.kind": "TOOL"}) == "llm"
    assert operation_of({"gen_ai.operation.name": "mystery", "openinference.span.kind": "TOOL"}) == "tool"
    assert operation_of({"flightrec.action.name": "refund.issue"}) == "action"
    assert operation_of({"flightrec.guardrail.name": "pii"}) == "guardrail"
    assert operation_of({"flightrec.human.decision": "approve"}) == "human"
    assert operation_of({}) == "other"


@pytest.mark.parametrize(
    ("attrs", "resource", "agent"),
    [
        ({"gen_ai.agent.name": "support-agent", "gen_ai.agent.id": "ag_1"}, {"service.name": "svc"}, "support-agent"),
        ({"gen_ai.agent.id": "ag_1"}, {"service.name": "svc"}, "ag_1"),
        ({"traceloop.entity.name": "planner", "traceloop.span.kind": "agent"}, {"service.name": "svc"}, "planner"),
        ({"traceloop.entity.name": "planner", "traceloop.span.kind": "workflow"}, {"service.name": "svc"}, "svc"),
        ({"traceloop.entity.name": "fetch", "traceloop.span.kind": "task"}, {"service.name": "svc"}, "svc"),
        ({}, {"service.name": "svc"}, "svc"),
    ],
)
def test_agent(attrs: dict, resource: dict, agent: str) -> None:
    assert normalized(attrs, resource)["Agent"] == agent


@pytest.mark.parametrize(
    ("attrs", "model"),
    [
        ({"gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.request.model": "gpt-4o"}, "gpt-4o-2024-08-06"),
        ({"gen_ai.request.model": "gpt-4o"}, "gpt-4o"),
        ({"llm.model_name": "claude-sonnet-4"}, "claude-sonnet-4"),
    ],
)
def test_model(attrs: dict, model: str) -> None:
    assert normalized(attrs)["Model"] == model


@pytest.mark.parametrize(
    ("attrs", "tokens"),
    [
        ({"gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 95}, (812, 95)),
        ({"llm.token_count.prompt": 40, "llm.token_count.completion": 7}, (40, 7)),
        ({"gen_ai.usage.prompt_tokens": 11, "gen_ai.usage.completion_tokens": 3}, (11, 3)),
        ({"gen_ai.usage.input_tokens": 5, "llm.token_count.prompt": 99}, (5, 0)),
        ({"gen_ai.usage.input_tokens": "not a number"}, (0, 0)),
        ({"gen_ai.usage.input_tokens": -4}, (0, 0)),
    ],
)
def test_tokens(attrs: dict, tokens: tuple[int, int]) -> None:
    row = normalized(attrs)
    assert (row["InputTokens"], row["OutputTokens"]) == tokens


@pytest.mark.parametrize(
    ("attrs", "tool"), [({"gen_ai.tool.name": "lookup_order", "tool.name": "x"}, "lookup_order"), ({"tool.name": "search"}, "search")]
)
def test_tool(attrs: dict, tool: str) -> None:
    assert normalized(attrs)["Tool"] == tool


def test_input_output_text_each_convention() -> None:
    assert text_of({"gen_ai.input.messages": '[{"role":"user"}]', "input.value": "x"}, "input_text").startswith("[")
    assert text_of({"input.value": "hello"}, "input_text") == "hello"
    assert text_of({"output.value": "bye"}, "output_text") == "bye"
    assert text_of({"gen_ai.output.messages": "m"}, "output_text") == "m"
    legacy = {"gen_ai.prompt.0.content": "first", "gen_ai.prompt.1.content": "second", "gen_ai.prompt.0.role": "user"}
    assert text_of(legacy, "input_text") == "first\nsecond"
    assert text_of({"gen_ai.completion.0.content": "answer"}, "output_text") == "answer"


@pytest.mark.parametrize(
    ("attrs", "resource", "session", "user"),
    [
        ({"gen_ai.conversation.id": "c1", "session.id": "s1", "user.id": "u1"}, {}, "c1", "u1"),
        ({"session.id": "s1", "enduser.id": "e1"}, {}, "s1", "e1"),
        ({}, {"session.id": "rs"}, "rs", ""),
    ],
)
def test_session_and_user(attrs: dict, resource: dict, session: str, user: str) -> None:
    row = normalized(attrs, resource)
    assert (row["SessionId"], row["UserId"]) == (session, user)


def test_versions() -> None:
    row = normalized({"flightrec.prompt.version": "p7", "flightrec.agent.version": "2.1"}, {"service.version": "9"})
    assert (row["PromptVersion"], row["AgentVersion"]) == ("p7", "2.1")
    assert normalized({}, {"service.version": "9"})["AgentVersion"] == "9"


def test_object_links_from_every_source() -> None:
    row = normalized(
        {
            "flightrec.object.type": "Ticket",
            "flightrec.object.id": "TCK-1042",
            "flightrec.objects": ["customer:CUS-311", "order:ORD-7", "malformed", "ticket:TCK-1042"],
            "invoice.id": "INV-9",
        }
    )
    assert row["Objects"] == ["ticket:TCK-1042", "customer:CUS-311", "order:ORD-7", "invoice:INV-9"]
    assert [(link[0], link[1]) for link in row["_links"]] == [
        ("ticket", "TCK-1042"),
        ("customer", "CUS-311"),
        ("order", "ORD-7"),
        ("invoice", "INV-9"),
    ]
    assert all(link[2] == row["TraceId"] and link[3] == row["SpanId"] for link in row["_links"])


@pytest.mark.parametrize("alias", ["ticket", "order", "invoice", "customer", "account", "asset"])
def test_each_link_alias(alias: str) -> None:
    assert normalized({f"{alias}.id": "X-1"})["Objects"] == [f"{alias}:X-1"]


def test_link_aliases_are_configurable() -> None:
    rules = alias_rules({"case.number": "ticket"})  # added to the built-in aliases, ahead of them
    assert normalized({"case.number": "C-9", "ticket.id": "T-1"}, rules=rules)["Objects"] == ["ticket:C-9", "ticket:T-1"]


def test_action_fields_and_vocabularies() -> None:
    row = normalized(
        {
            "flightrec.action.name": "refund.issue",
            "flightrec.action.system": "billing",
            "flightrec.action.risk": "HIGH",
            "flightrec.action.amount": 42.5,
            "flightrec.action.currency": "eur",
            "flightrec.mode": "auto",
            "flightrec.inputs": ["customer:CUS-1", "order:ORD-2"],
        }
    )
    assert row["Operation"] == "action"
    assert (row["ActionName"], row["ActionSystem"], row["ActionRisk"]) == ("refund.issue", "billing", "high")
    assert (row["ActionAmount"], row["ActionCurrency"], row["Mode"]) == (42.5, "EUR", "auto")
    assert row["Inputs"] == ["customer:CUS-1", "order:ORD-2"]
    odd = normalized({"flightrec.mode": "yolo", "flightrec.action.risk": "extreme"})
    assert (odd["Mode"], odd["ActionRisk"]) == ("", "")
    assert odd["SpanAttributes"]["flightrec.mode"] == "yolo"


def test_guardrail_and_human() -> None:
    guard = normalized({"flightrec.guardrail.name": "refund-limit", "flightrec.guardrail.verdict": "block"})
    assert (guard["Operation"], guard["GuardrailVerdict"]) == ("guardrail", "block")
    human = normalized({"flightrec.human.decision": "override", "flightrec.human.actor": "maria"})
    assert (human["Operation"], human["HumanDecision"]) == ("human", "override")


def test_cost_priced_from_tokens_or_taken_from_span() -> None:
    priced = normalized({"gen_ai.request.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 1_000_000})
    assert priced["CostUsd"] == pytest.approx(2.5) and priced["CostKnown"] == 1
    given = normalized({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10, "flightrec.cost.usd": 0.75})
    assert given["CostUsd"] == 0.75
    unknown = normalized({"gen_ai.request.model": "unknown-model", "gen_ai.usage.input_tokens": 10})
    assert (unknown["CostUsd"], unknown["CostKnown"]) == (0.0, 0)


def test_tenant_default_and_attribute() -> None:
    assert normalized({})["Tenant"] == "default"
    assert normalized({"flightrec.tenant": "acme"})["Tenant"] == "acme"
    assert normalized({}, {"tenant.id": "globex"})["Tenant"] == "globex"


def test_raw_otel_columns_keep_attribute_types_as_strings() -> None:
    row = normalized({"n": 3, "f": 1.5, "b": True, "arr": ["a", "b"]}, {"service.name": "svc"})
    assert row["SpanAttributes"] == {"n": "3", "f": "1.5", "b": "true", "arr": '["a","b"]'}
    assert row["ServiceName"] == "svc" and row["SpanKind"] == "Internal" and row["StatusCode"] == "Unset"
    assert row["ScopeName"] == "tests" and row["Duration"] == 1_000_000


def test_request_rows_fill_a_batch_with_spans_as_received() -> None:
    spans = [make_span("a", {"ticket.id": "T-1"}), make_span("b")]
    batch = RowBuilder().request_rows(make_request(spans))
    assert batch.span_count == 2 and [row[11] for row in batch.span_rows] == [{"ticket.id": "T-1"}, {}]


@pytest.mark.parametrize(
    ("attrs", "texts"),
    [
        ({"gen_ai.input.messages": "[in]", "gen_ai.output.messages": "[out]"}, ("[in]", "[out]")),
        ({"input.value": "question", "output.value": "answer"}, ("question", "answer")),
        ({"gen_ai.prompt.0.content": "a", "gen_ai.prompt.1.content": "b", "gen_ai.completion.0.content": "c"}, ("a\nb", "c")),
        ({}, ("", "")),
    ],
)
def test_input_and_output_text_columns(attrs: dict, texts: tuple[str, str]) -> None:
    row = normalized(attrs)
    assert (row["InputText"], row["OutputText"]) == texts


# -- current conventions (issue 15, deliverable 3), attribute by attribute --------------------------


@pytest.mark.parametrize(
    ("attr", "value", "operation"),
    [
        ("gen_ai.operation.name", "retrieval", "retrieval"),
        ("gen_ai.operation.name", "apply_guardrail", "guardrail"),
        ("gen_ai.operation.name", "invoke_workflow", "other"),
        ("gen_ai.operation.name", "plan", "other"),
        ("llm.request.type", "chat", "llm"),
        ("llm.request.type", "completion", "llm"),
        ("llm.request.type", "embedding", "llm"),
    ],
)
def test_current_operation_values(attr: str, value: str, operation: str) -> None:
    assert normalized({attr: value})["Operation"] == operation


def test_flow_from_workflow_names() -> None:
    def flow_of(attrs: dict) -> str:
        return normalized(attrs)["Flow"]

    assert flow_of({"gen_ai.workflow.name": "refund_flow", "traceloop.workflow.name": "x"}) == "refund_flow"
    assert flow_of({"traceloop.workflow.name": "triage"}) == "triage"
    assert flow_of({"traceloop.span.kind": "workflow", "traceloop.entity.name": "support"}) == "support"
    assert flow_of({"traceloop.span.kind": "task", "traceloop.entity.name": "fetch"}) == ""


@pytest.mark.parametrize(
    ("attrs", "agent"),
    [
        ({"agent.name": "refund_agent"}, "refund_agent"),
        ({"gen_ai.agent.name": "a", "agent.name": "b"}, "a"),
        ({"traceloop.span.kind": "workflow", "traceloop.entity.name": "support_flow"}, "svc"),
    ],
)
def test_agent_from_openinference_and_workflows_are_not_agents(attrs: dict, agent: str) -> None:
    assert normalized(attrs, {"service.name": "svc"})["Agent"] == agent


def test_versions_from_genai_openinference_and_openllmetry() -> None:
    assert normalized({"gen_ai.agent.version": "2.1"}, {"service.version": "9"})["AgentVersion"] == "2.1"
    assert normalized({"llm.prompt_template.version": "p7"})["PromptVersion"] == "p7"
    assert normalized({"traceloop.prompt.version": "3"})["PromptVersion"] == "3"
    assert normalized({"flightrec.prompt.version": "f1", "llm.prompt_template.version": "p7"})["PromptVersion"] == "f1"


@pytest.mark.parametrize(
    ("attrs", "provider"),
    [
        ({"gen_ai.provider.name": "anthropic", "gen_ai.system": "x"}, "anthropic"),
        ({"gen_ai.system": "OpenAI"}, "openai"),
        ({"llm.provider": "google"}, "google"),
        ({"llm.system": "mistralai"}, "mistralai"),
    ],
)
def test_provider(attrs: dict, provider: str) -> None:
    assert normalized(attrs)["Provider"] == provider


@pytest.mark.parametrize(
    ("attrs", "usage"),
    [
        ({"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20, "gen_ai.usage.cache_read.input_tokens": 60,
          "gen_ai.usage.cache_creation.input_tokens": 10, "gen_ai.usage.reasoning.output_tokens": 5}, (100, 20, 60, 10, 5)),
        ({"llm.token_count.prompt": 50, "llm.token_count.completion": 9,
          "llm.token_count.prompt_details.cache_read": 30, "llm.token_count.prompt_details.cache_write": 4,
          "llm.token_count.completion_details.reasoning": 2}, (50, 9, 30, 4, 2)),
        ({"gen_ai.usage.prompt_tokens": 40, "gen_ai.usage.completion_tokens": 8,
          "gen_ai.usage.cache_read_input_tokens": 20, "gen_ai.usage.cache_creation_input_tokens": 3,
          "gen_ai.usage.reasoning_tokens": 1}, (40, 8, 20, 3, 1)),
    ],
)
def test_cache_and_reasoning_tokens(attrs: dict, usage: tuple) -> None:
    row = normalized({"gen_ai.operation.name": "chat", **attrs})
    assert (row["InputTokens"], row["OutputTokens"], row["CacheReadTokens"], row["CacheWriteTokens"]) == usage[:4]


def test_session_and_user_from_openinference_and_openllmetry() -> None:
    row = normalized({"traceloop.association.properties.session_id": "s9",
                      "traceloop.association.properties.user_id": "u9"})
    assert (row["SessionId"], row["UserId"]) == ("s9", "u9")
    row = normalized({"session.id": "s1", "user.id": "u1", "traceloop.association.properties.session_id": "x"})
    assert (row["SessionId"], row["UserId"]) == ("s1", "u1")


OI_LLM = {
    "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
    "input.value": '{"messages": [{"role": "user", "content": "Refund order 7?"}], "model": "gpt-4o"}',
    "output.value": '{"id": "chatcmpl-1", "choices": []}',
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "You are the refund agent.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.content": "Refund order 7?",
    "llm.input_messages.2.message.role": "tool",
    "llm.input_messages.2.message.tool_call_id": "call_0",
    "llm.input_messages.2.message.content": '{"status": "delivered"}',
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "issue_refund",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"order": "7", "amount": 20}',
}


def test_openinference_flattened_messages_read_as_genai_messages() -> None:
    import json

    from flightrec.stories import text as tx

    row = normalized(OI_LLM)
    inputs, outputs = json.loads(row["InputText"]), json.loads(row["OutputText"])
    assert [m["role"] for m in inputs] == ["system", "user", "tool"]
    assert inputs[1]["parts"] == [{"type": "text", "content": "Refund order 7?"}]
    assert inputs[2]["parts"] == [{"type": "tool_call_response", "id": "call_0", "response": '{"status": "delivered"}'}]
    assert outputs == [{"role": "assistant", "parts": [
        {"type": "tool_call", "id": "call_1", "name": "issue_refund", "arguments": {"order": "7", "amount": 20}}]}]
    assert tx.tool_calls(row["OutputText"]) == ["issue_refund"]
    text = normalized({**OI_LLM, "llm.output_messages.0.message.content": "Refunded."})["OutputText"]
    assert tx.message_text(text) == "Refunded."


def test_openinference_message_contents_list() -> None:
    import json

    row = normalized({"llm.input_messages.0.message.role": "user",
                      "llm.input_messages.0.message.contents.0.message_content.type": "text",
                      "llm.input_messages.0.message.contents.0.message_content.text": "hi"})
    assert json.loads(row["InputText"]) == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]


@pytest.mark.parametrize(
    ("attrs", "texts"),
    [
        ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup", "gen_ai.tool.call.id": "c1",
          "gen_ai.tool.call.arguments": '{"id": 7}', "gen_ai.tool.call.result": '{"ok": true}'}, ('{"id": 7}', '{"ok": true}')),
        ({"openinference.span.kind": "TOOL", "tool.name": "lookup", "input.value": '{"id": 8}', "output.value": "found"},
         ('{"id": 8}', "found")),
        ({"traceloop.span.kind": "tool", "traceloop.entity.name": "lookup",
          "traceloop.entity.input": '{"args": [9]}', "traceloop.entity.output": '"done"'}, ('{"args": [9]}', '"done"')),
    ],
)
def test_tool_span_arguments_and_results(attrs: dict, texts: tuple[str, str]) -> None:
    row = normalized(attrs)
    assert (row["Operation"], row["Tool"]) == ("tool", "lookup")
    assert (row["InputText"], row["OutputText"]) == texts


def test_openllmetry_entity_input_output_on_tasks() -> None:
    row = normalized({"traceloop.span.kind": "task", "traceloop.entity.name": "fetch",
                      "traceloop.entity.input": '{"q": 1}', "traceloop.entity.output": '{"r": 2}'})
    assert (row["InputText"], row["OutputText"]) == ('{"q": 1}', '{"r": 2}')


def test_system_instructions_and_tool_call_id_are_mapped() -> None:
    from flightrec.store import conventions as cv

    assert cv.FIELD_SOURCES["system_instructions"] == ("gen_ai.system_instructions",)
    assert cv.FIELD_SOURCES["tool_call_id"][0] == "gen_ai.tool.call.id"


def test_conventions_import_light_and_name_attributes_from_the_constant_packages() -> None:
    import subprocess
    import sys

    code = ("import sys, flightrec.store.conventions as cv; "
            "assert 'openinference.semconv' not in sys.modules; cv.DEFAULT_LINK_ALIASES; "
            "assert 'openinference.semconv' not in sys.modules; cv.FIELD_SOURCES; "
            "assert 'openinference.semconv' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
