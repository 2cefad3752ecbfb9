"""The convention mapping: which span attribute feeds which canonical field.

One table, read top to bottom; for every field the first attribute present wins
(DESIGN.md, "Conventions"). Span attributes are looked up before resource ones.

Attribute names come from the published constant packages where they exist:
``opentelemetry-semantic-conventions`` (GenAI, incubating) and
``openinference-semantic-conventions``. OpenLLMetry's names (``traceloop.*`` and its
``gen_ai.usage.*`` variants) are typed here: their constants live in a package we do not
depend on (``opentelemetry-semantic-conventions-ai``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flightrec.store.rules import RuleSet

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


# The tables below name attributes by the constant packages' names. Those packages come with the
# server extra, while settings (the cli extra) import this module for the link aliases: the tables
# are built on first use (PEP 562), so importing this module stays light.
_TABLES = (
    "FIELD_SOURCES", "COST_PARTS", "TOOL_TEXT_SOURCES", "OI_MESSAGE_PREFIXES", "TEXT_PREFIXES", "METADATA_ATTR",
    "TAGS_ATTR", "TRACELOOP_AGENT_KINDS", "TRACELOOP_TOOL_KINDS", "TRACELOOP_FLOW_KINDS", "OPERATION_SOURCES",
    "OPERATION_VALUES", "OPERATION_FROM_PRESENCE", "AGGREGATE_KINDS", "OI_ROLE", "OI_CONTENT", "OI_CONTENTS",
    "OI_TOOL_CALLS", "OI_TOOL_CALL_ID", "OI_NAME", "OI_CALL_ID", "OI_CALL_NAME", "OI_CALL_ARGUMENTS",
    "TRACELOOP_SPAN_KIND", "TRACELOOP_ENTITY_NAME", "TRACELOOP_ENTITY_INPUT", "TRACELOOP_ENTITY_OUTPUT",
    "TRACELOOP_WORKFLOW_NAME", "TRACELOOP_PROMPT_VERSION", "TRACELOOP_ASSOCIATION", "LLM_REQUEST_TYPE",
    "LLM_USAGE_CACHE_READ", "LLM_USAGE_CACHE_CREATION", "LLM_USAGE_REASONING", "ENDUSER_ID", "OI_INVOCATION_PARAMETERS",
)


def _build_tables() -> dict[str, Any]:
    from openinference.semconv.trace import MessageAttributes as OIMessage
    from openinference.semconv.trace import OpenInferenceSpanKindValues as _KIND
    from openinference.semconv.trace import SpanAttributes as OI
    from openinference.semconv.trace import ToolCallAttributes as OIToolCall
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as GA
    from opentelemetry.semconv._incubating.attributes import service_attributes as SVC
    from opentelemetry.semconv._incubating.attributes import user_attributes as USER

    # OpenLLMetry (traceloop-sdk, opentelemetry-instrumentation-*)
    TRACELOOP_SPAN_KIND = "traceloop.span.kind"
    TRACELOOP_ENTITY_NAME = "traceloop.entity.name"
    TRACELOOP_ENTITY_INPUT = "traceloop.entity.input"
    TRACELOOP_ENTITY_OUTPUT = "traceloop.entity.output"
    TRACELOOP_WORKFLOW_NAME = "traceloop.workflow.name"
    TRACELOOP_PROMPT_VERSION = "traceloop.prompt.version"
    TRACELOOP_ASSOCIATION = "traceloop.association.properties."
    LLM_REQUEST_TYPE = "llm.request.type"
    LLM_USAGE_CACHE_READ = "gen_ai.usage.cache_read_input_tokens"
    LLM_USAGE_CACHE_CREATION = "gen_ai.usage.cache_creation_input_tokens"
    LLM_USAGE_REASONING = "gen_ai.usage.reasoning_tokens"
    ENDUSER_ID = "enduser.id"  # deprecated in OTel (user.id), still sent

    # canonical field -> attribute keys, first present wins
    FIELD_SOURCES: dict[str, tuple[str, ...]] = {
        "agent": (GA.GEN_AI_AGENT_NAME, OI.AGENT_NAME, GA.GEN_AI_AGENT_ID, TRACELOOP_ENTITY_NAME, SVC.SERVICE_NAME),
        "flow": (GA.GEN_AI_WORKFLOW_NAME, TRACELOOP_WORKFLOW_NAME),
        "model": (GA.GEN_AI_RESPONSE_MODEL, GA.GEN_AI_REQUEST_MODEL, OI.LLM_RESPONSE_MODEL_NAME, OI.LLM_MODEL_NAME,
                  OI.LLM_REQUEST_MODEL_NAME, OI.EMBEDDING_MODEL_NAME),
        "provider": (GA.GEN_AI_PROVIDER_NAME, GA.GEN_AI_SYSTEM, OI.LLM_PROVIDER, OI.LLM_SYSTEM),
        "input_tokens": (GA.GEN_AI_USAGE_INPUT_TOKENS, OI.LLM_TOKEN_COUNT_PROMPT, GA.GEN_AI_USAGE_PROMPT_TOKENS),
        "output_tokens": (GA.GEN_AI_USAGE_OUTPUT_TOKENS, OI.LLM_TOKEN_COUNT_COMPLETION, GA.GEN_AI_USAGE_COMPLETION_TOKENS),
        "cache_read_tokens": (GA.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ,
                              LLM_USAGE_CACHE_READ),
        "cache_write_tokens": (GA.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE,
                               LLM_USAGE_CACHE_CREATION),
        "reasoning_tokens": (GA.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, OI.LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING,
                             LLM_USAGE_REASONING),
        "tool": (GA.GEN_AI_TOOL_NAME, OI.TOOL_NAME),
        "tool_call_id": (GA.GEN_AI_TOOL_CALL_ID, OI.TOOL_ID),
        "input_text": (GA.GEN_AI_INPUT_MESSAGES, OI.INPUT_VALUE, TRACELOOP_ENTITY_INPUT),
        "output_text": (GA.GEN_AI_OUTPUT_MESSAGES, OI.OUTPUT_VALUE, TRACELOOP_ENTITY_OUTPUT),
        "system_instructions": (GA.GEN_AI_SYSTEM_INSTRUCTIONS,),
        "session_id": (GA.GEN_AI_CONVERSATION_ID, OI.SESSION_ID, TRACELOOP_ASSOCIATION + "session_id"),
        "user_id": (OI.USER_ID, USER.USER_ID, ENDUSER_ID, TRACELOOP_ASSOCIATION + "user_id"),
        "prompt_version": ("flightrec.prompt.version", OI.LLM_PROMPT_TEMPLATE_VERSION, TRACELOOP_PROMPT_VERSION),
        "agent_version": ("flightrec.agent.version", GA.GEN_AI_AGENT_VERSION, SVC.SERVICE_VERSION),
        "tenant": ("flightrec.tenant", "tenant.id"),
        "action_name": ("flightrec.action.name",),
        "action_system": ("flightrec.action.system",),
        "action_risk": ("flightrec.action.risk",),
        "action_amount": ("flightrec.action.amount",),
        "action_currency": ("flightrec.action.currency",),
        "mode": ("flightrec.mode",),
        "guardrail_verdict": ("flightrec.guardrail.verdict",),
        "human_decision": ("flightrec.human.decision",),
        # a cost the instrumentation reports, in USD; wins over pricing from tokens
        "cost_usd": ("flightrec.cost.usd", OI.LLM_COST_TOTAL, "gen_ai.usage.cost"),
    }
    # Reported cost parts summed when no total is reported (OpenInference).
    COST_PARTS: tuple[str, ...] = (OI.LLM_COST_PROMPT, OI.LLM_COST_COMPLETION)

    # On a tool span, the call's arguments and result are its input and output text.
    TOOL_TEXT_SOURCES: dict[str, tuple[str, ...]] = {
        "input_text": (GA.GEN_AI_TOOL_CALL_ARGUMENTS, OI.INPUT_VALUE, TRACELOOP_ENTITY_INPUT),
        "output_text": (GA.GEN_AI_TOOL_CALL_RESULT, OI.OUTPUT_VALUE, TRACELOOP_ENTITY_OUTPUT),
    }

    # Flattened messages, read as GenAI message JSON (role + parts) when no structured attribute is present:
    # OpenInference ``llm.input_messages.N.message.*`` and legacy ``gen_ai.prompt.N.*`` (OpenLLMetry).
    OI_MESSAGE_PREFIXES: dict[str, str] = {"input_text": OI.LLM_INPUT_MESSAGES + ".", "output_text": OI.LLM_OUTPUT_MESSAGES + "."}
    OI_ROLE, OI_CONTENT, OI_CONTENTS = OIMessage.MESSAGE_ROLE, OIMessage.MESSAGE_CONTENT, OIMessage.MESSAGE_CONTENTS
    OI_TOOL_CALLS, OI_TOOL_CALL_ID, OI_NAME = OIMessage.MESSAGE_TOOL_CALLS, OIMessage.MESSAGE_TOOL_CALL_ID, OIMessage.MESSAGE_NAME
    OI_CALL_ID, OI_CALL_NAME = OIToolCall.TOOL_CALL_ID, OIToolCall.TOOL_CALL_FUNCTION_NAME
    OI_CALL_ARGUMENTS = OIToolCall.TOOL_CALL_FUNCTION_ARGUMENTS_JSON
    TEXT_PREFIXES: dict[str, str] = {"input_text": GA.GEN_AI_PROMPT + ".", "output_text": GA.GEN_AI_COMPLETION + "."}

    METADATA_ATTR = OI.METADATA  # a JSON object as a string
    OI_INVOCATION_PARAMETERS = OI.LLM_INVOCATION_PARAMETERS  # the request's parameters as JSON (its "model")
    TAGS_ATTR = OI.TAG_TAGS  # a string array

    # traceloop.entity.name names the agent only on agent spans (workflow spans are flows),
    # the tool on tool spans, the flow on workflow spans.
    TRACELOOP_AGENT_KINDS = frozenset({"agent"})
    TRACELOOP_TOOL_KINDS = frozenset({"tool"})
    TRACELOOP_FLOW_KINDS = frozenset({"workflow"})

    # operation: (attribute, value) -> canonical operation, sources in order.
    OPERATION_SOURCES: tuple[str, ...] = (
        GA.GEN_AI_OPERATION_NAME,
        OI.OPENINFERENCE_SPAN_KIND,
        TRACELOOP_SPAN_KIND,
        LLM_REQUEST_TYPE,
        "flightrec.operation",
    )
    _OP = GA.GenAiOperationNameValues
    OPERATION_VALUES: dict[str, dict[str, str]] = {
        GA.GEN_AI_OPERATION_NAME: {
            _OP.INVOKE_AGENT.value: "agent",
            _OP.CREATE_AGENT.value: "agent",
            _OP.CHAT.value: "llm",
            _OP.TEXT_COMPLETION.value: "llm",
            _OP.GENERATE_CONTENT.value: "llm",
            _OP.EMBEDDINGS.value: "llm",
            _OP.EXECUTE_TOOL.value: "tool",
            _OP.RETRIEVAL.value: "retrieval",
            _OP.INVOKE_WORKFLOW.value: "other",  # a flow, not an agent
            "apply_guardrail": "guardrail",
            "plan": "other",  # an agent's planning step (not an agent of its own)
        },
        OI.OPENINFERENCE_SPAN_KIND: {
            _KIND.AGENT.value: "agent",
            _KIND.CHAIN.value: "other",
            _KIND.LLM.value: "llm",
            _KIND.EMBEDDING.value: "llm",
            _KIND.TOOL.value: "tool",
            _KIND.RETRIEVER.value: "retrieval",
            _KIND.RERANKER.value: "retrieval",
            _KIND.GUARDRAIL.value: "guardrail",
            _KIND.EVALUATOR.value: "other",
            _KIND.PROMPT.value: "other",
        },
        TRACELOOP_SPAN_KIND: {
            "workflow": "other",  # a flow, not an agent
            "agent": "agent",
            "task": "other",
            "tool": "tool",
            "unknown": "other",
        },
        LLM_REQUEST_TYPE: {"chat": "llm", "completion": "llm", "embedding": "llm", "rerank": "retrieval"},
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

    # Spans whose token counts and cost are totals over their children (agents, chains, workflows):
    # their usage stays in their attributes and is not counted again (tokens and cost count on LLM calls).
    AGGREGATE_KINDS: dict[str, frozenset[str]] = {
        GA.GEN_AI_OPERATION_NAME: frozenset({_OP.INVOKE_AGENT.value, _OP.CREATE_AGENT.value, _OP.INVOKE_WORKFLOW.value}),
        OI.OPENINFERENCE_SPAN_KIND: frozenset({_KIND.AGENT.value, _KIND.CHAIN.value}),
        TRACELOOP_SPAN_KIND: frozenset({"workflow", "agent", "task"}),
        "flightrec.operation": frozenset({"agent"}),
    }
    return {name: value for name, value in locals().items() if name in _TABLES}


def __getattr__(name: str) -> Any:
    if name in _TABLES:
        globals().update(_build_tables())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What a span did (its action, mode, verdict, a person's decision, its reported cost) is the span's
# own: a resource attribute must not stamp it on every span of the service.
SPAN_ONLY_FIELDS = frozenset({"action_name", "action_system", "action_risk", "action_amount", "action_currency", "mode",
                              "guardrail_verdict", "human_decision", "cost_usd"})


def builtin_rules() -> "RuleSet":
    """The conventions above as rules (origin ``builtin``): what every deployment derives.

    Order matters: for a field the first rule with a value wins, span attributes before
    resource ones. Link rules all apply.
    """
    from flightrec.store.rules import FieldRule, LinkRule, RuleSet

    t = globals() if "FIELD_SOURCES" in globals() else {**globals(), **_build_tables()}
    links = [
        LinkRule(attribute=OBJECT_ID_ATTR, type_from=OBJECT_TYPE_ATTR, source="span", origin="builtin"),
        LinkRule(attribute=OBJECTS_ATTR, split=True, pattern=r"(?s)^(?P<type>[^:]+):(?P<id>.+)$", source="span",
                 origin="builtin"),
        *(LinkRule(attribute=key, type=kind, source="span", origin="builtin")
          for key, kind in DEFAULT_LINK_ALIASES.items()),
    ]
    fields: list[FieldRule] = []
    for key in t["OPERATION_SOURCES"]:
        fields.append(FieldRule(field="operation", attribute=key, values=t["OPERATION_VALUES"][key], source="span",
                                origin="builtin"))
    for key, operation in t["OPERATION_FROM_PRESENCE"]:
        fields.append(FieldRule(field="operation", attribute=key, value=operation, source="span", origin="builtin"))
    entity, kind = t["TRACELOOP_ENTITY_NAME"], t["TRACELOOP_SPAN_KIND"]
    # traceloop.entity.name names the agent on agent spans, the tool on tool spans, the flow on workflow spans
    conditional = {"agent": "agent", "tool": "tool", "flow": "workflow"}
    for field, sources in t["FIELD_SOURCES"].items():
        if field in ("input_text", "output_text", "system_instructions", "tool_call_id", "reasoning_tokens"):
            continue  # narrated from the attributes when read, not columns
        keys = list(sources) if entity in sources or field not in conditional else [*sources, entity]
        for key in keys:
            if key == entity and field in conditional:
                fields.append(FieldRule(field=field, attribute=entity, when={kind: conditional[field]},
                                        source="span", origin="builtin"))
            elif key != entity:
                fields.append(FieldRule(field=field, attribute=key, origin="builtin",
                                        source="span" if field in SPAN_ONLY_FIELDS else "any"))
    # The model a call asked for, when the response named none (a failed OpenInference call).
    fields.append(FieldRule(field="model", attribute=t["OI_INVOCATION_PARAMETERS"], json_path="model", source="span",
                            origin="builtin"))
    fields.append(FieldRule(field="inputs", attribute=INPUTS_ATTR, source="span", origin="builtin"))
    return RuleSet(links=links, fields=fields)
