"""The convention mapping: which span attribute feeds which canonical field.

One table, read top to bottom; for every field the first attribute present wins
(DESIGN.md, "Conventions"). Span attributes are looked up before resource ones.
"""

from __future__ import annotations

# canonical field -> attribute keys, first present wins
FIELD_SOURCES: dict[str, tuple[str, ...]] = {
    "agent": ("gen_ai.agent.name", "gen_ai.agent.id", "traceloop.entity.name", "service.name"),
    "model": ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
    "input_tokens": ("gen_ai.usage.input_tokens", "llm.token_count.prompt", "gen_ai.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "llm.token_count.completion", "gen_ai.usage.completion_tokens"),
    "tool": ("gen_ai.tool.name", "tool.name"),
    "input_text": ("gen_ai.input.messages", "input.value"),
    "output_text": ("gen_ai.output.messages", "output.value"),
    "session_id": ("gen_ai.conversation.id", "session.id"),
    "user_id": ("user.id", "enduser.id"),
    "prompt_version": ("flightrec.prompt.version",),
    "agent_version": ("flightrec.agent.version", "service.version"),
    "tenant": ("flightrec.tenant", "tenant.id"),
    "action_name": ("flightrec.action.name",),
    "action_system": ("flightrec.action.system",),
    "action_risk": ("flightrec.action.risk",),
    "action_amount": ("flightrec.action.amount",),
    "action_currency": ("flightrec.action.currency",),
    "mode": ("flightrec.mode",),
    "guardrail_verdict": ("flightrec.guardrail.verdict",),
    "human_decision": ("flightrec.human.decision",),
    "cost_usd": ("flightrec.cost.usd",),
}

# Legacy flattened prompt/completion attributes (gen_ai.prompt.0.content, ...):
# read when no structured message attribute is present.
TEXT_PREFIXES: dict[str, str] = {"input_text": "gen_ai.prompt.", "output_text": "gen_ai.completion."}

# traceloop.entity.name names the agent only on agent-like spans.
TRACELOOP_AGENT_KINDS = frozenset({"agent", "workflow"})

# operation: (attribute, value) -> canonical operation, sources in order.
OPERATION_SOURCES: tuple[str, ...] = (
    "gen_ai.operation.name",
    "openinference.span.kind",
    "traceloop.span.kind",
    "flightrec.operation",
)
OPERATION_VALUES: dict[str, dict[str, str]] = {
    "gen_ai.operation.name": {
        "invoke_agent": "agent",
        "create_agent": "agent",
        "chat": "llm",
        "text_completion": "llm",
        "generate_content": "llm",
        "embeddings": "llm",
        "execute_tool": "tool",
    },
    "openinference.span.kind": {
        "AGENT": "agent",
        "CHAIN": "other",
        "LLM": "llm",
        "EMBEDDING": "llm",
        "TOOL": "tool",
        "RETRIEVER": "retrieval",
        "RERANKER": "retrieval",
        "GUARDRAIL": "guardrail",
        "EVALUATOR": "other",
        "PROMPT": "other",
    },
    "traceloop.span.kind": {
        "workflow": "agent",
        "agent": "agent",
        "task": "other",
        "tool": "tool",
        "unknown": "other",
    },
    "flightrec.operation": {
        name: name
        for name in ("agent", "llm", "tool", "retrieval", "guardrail", "action", "human", "undo", "other")
    },
}
# Without an operation attribute, Flight Recorder's own attributes still say what a span is.
OPERATION_FROM_PRESENCE: tuple[tuple[str, str], ...] = (
    ("flightrec.action.name", "action"),
    ("flightrec.guardrail.name", "guardrail"),
    ("flightrec.human.decision", "human"),
)

# Business object links.
OBJECT_TYPE_ATTR = "flightrec.object.type"
OBJECT_ID_ATTR = "flightrec.object.id"
OBJECTS_ATTR = "flightrec.objects"
INPUTS_ATTR = "flightrec.inputs"
DEFAULT_LINK_ALIASES: dict[str, str] = {
    "ticket.id": "ticket",
    "order.id": "order",
    "invoice.id": "invoice",
    "customer.id": "customer",
    "account.id": "account",
    "asset.id": "asset",
}

# Closed vocabularies: values outside them are kept raw in attributes, not in the column.
VOCABULARIES: dict[str, frozenset[str]] = {
    "action_risk": frozenset({"low", "medium", "high"}),
    "mode": frozenset({"observe", "assist", "auto"}),
    "guardrail_verdict": frozenset({"pass", "warn", "block"}),
    "human_decision": frozenset({"approve", "edit", "reject", "override"}),
}
