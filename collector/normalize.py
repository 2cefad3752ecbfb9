"""Normalization: an OTLP span (any instrumentation) in, one canonical store row out.

Pure functions over decoded protobuf messages; the mapping itself is the table in
:mod:`collector.conventions`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import BaseModel, Field

from flightrec.collector import conventions as cv
from flightrec.collector.prices import DEFAULT_PRICES, ModelPrice, Pricer
from flightrec.store.models import SpanBatch, SpanRow

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")


class NormalizeConfig(BaseModel):
    """What normalization may be told: link aliases, price overrides, the default tenant."""

    link_aliases: dict[str, str] = Field(default_factory=lambda: dict(cv.DEFAULT_LINK_ALIASES))
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="price overrides by model-name prefix; they win over the genai-prices package",
    )
    package_prices: bool = Field(default=True, description="price models the overrides do not name from genai-prices")
    default_tenant: str = "default"


def any_value_to_python(value: AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value (arrays and maps recursively)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [any_value_to_python(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def any_value_to_str(value: AnyValue) -> str:
    """An AnyValue as the string the otel_traces Map columns hold (JSON for arrays and maps)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return repr(value.double_value)
    if kind is None:
        return ""
    return json.dumps(any_value_to_python(value), separators=(",", ":"), ensure_ascii=False)


def attributes_to_dict(attributes: Any) -> dict[str, str]:
    """Repeated KeyValue as a string map (strings, the common case, read directly: the hot path of ingest)."""
    out: dict[str, str] = {}
    for kv in attributes:
        value = kv.value
        text = value.string_value
        out[kv.key] = text if text else any_value_to_str(value)
    return out


def _first(attrs: dict[str, str], resource_fields: dict[str, str], field: str) -> str:
    """The first source attribute present on the span, else on the resource."""
    for key in cv.FIELD_SOURCES[field]:
        value = attrs.get(key)
        if value:
            return value
    return resource_fields.get(field, "")


def resource_fields(resource: dict[str, str]) -> dict[str, str]:
    """Each canonical field's value from resource attributes alone (computed once per resource)."""
    found: dict[str, str] = {}
    for field, sources in cv.FIELD_SOURCES.items():
        value = next((resource[key] for key in sources if resource.get(key)), "")
        if value:
            found[field] = value
    return found


def _int(text: str) -> int:
    if not text:
        return 0
    if text.isdigit():
        return min(int(text), 2**32 - 1)
    try:
        return max(0, min(int(float(text)), 2**32 - 1)) if text else 0
    except ValueError:
        return 0


def _float(text: str) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def _string_list(text: str) -> list[str]:
    """A string-array attribute (stored as JSON) as a list; a plain string as one item."""
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return [text]
        return [str(item) for item in items if item not in (None, "")]
    return [part.strip() for part in text.split(",") if part.strip()]


def operation_of(attrs: dict[str, str]) -> str:
    """The canonical operation: first convention attribute with a known value wins."""
    for key in cv.OPERATION_SOURCES:
        value = attrs.get(key)
        if value:
            mapped = cv.OPERATION_VALUES[key].get(value) or cv.OPERATION_VALUES[key].get(value.lower())
            if mapped:
                return mapped
    for key, operation in cv.OPERATION_FROM_PRESENCE:
        if key in attrs:
            return operation
    return "other"


def _kind_in(attrs: dict[str, str], kinds: frozenset[str]) -> bool:
    return attrs.get(cv.TRACELOOP_SPAN_KIND, "") in kinds


def agent_of(attrs: dict[str, str], resource_fields: dict[str, str]) -> str:
    """The span's own agent (traceloop.entity.name only on traceloop agent spans), else the resource's."""
    for key in cv.FIELD_SOURCES["agent"]:
        if key == cv.TRACELOOP_ENTITY_NAME and not _kind_in(attrs, cv.TRACELOOP_AGENT_KINDS):
            continue
        value = attrs.get(key)
        if value:
            return value
    return resource_fields.get("agent", "")


def own_agent(attrs: dict[str, str]) -> str:
    """The agent the span names itself ('' when only its service or resource would say)."""
    for key in cv.FIELD_SOURCES["agent"]:
        if key == "service.name" or (key == cv.TRACELOOP_ENTITY_NAME and not _kind_in(attrs, cv.TRACELOOP_AGENT_KINDS)):
            continue
        if attrs.get(key):
            return attrs[key]
    return ""


def tool_of(attrs: dict[str, str], resource_fields: dict[str, str]) -> str:
    value = _first(attrs, resource_fields, "tool")
    if not value and _kind_in(attrs, cv.TRACELOOP_TOOL_KINDS):
        value = attrs.get(cv.TRACELOOP_ENTITY_NAME, "")
    return value


def flow_of(attrs: dict[str, str], resource_fields: dict[str, str]) -> str:
    """The workflow a span belongs to: gen_ai.workflow.name, traceloop.workflow.name, a traceloop workflow span's name."""
    value = _first(attrs, resource_fields, "flow")
    if not value and _kind_in(attrs, cv.TRACELOOP_FLOW_KINDS):
        value = attrs.get(cv.TRACELOOP_ENTITY_NAME, "")
    return value


def provider_of(attrs: dict[str, str], resource_fields: dict[str, str]) -> str:
    return _first(attrs, resource_fields, "provider").lower()


def counts_usage(attrs: dict[str, str], operation: str) -> bool:
    """Whether the span's tokens and cost are its own (LLM calls), not totals over its children.

    Agent, chain and workflow spans often carry the sum of their LLM children; counting them
    again would double a run's tokens and cost. Their figures stay in their attributes.
    """
    if operation == "llm":
        return True
    if operation == "agent":
        return False
    return not any(attrs.get(key, "") in kinds for key, kinds in cv.AGGREGATE_KINDS.items())


def _message_json(attrs: dict[str, str], prefix: str) -> str:
    """Flattened OpenInference messages (``llm.input_messages.N.message.*``) as GenAI message JSON.

    Each message becomes ``{"role", "parts": [...]}`` with text parts, the tool calls the model chose
    (``tool_call`` parts: id, name, arguments) and tool results (``tool_call_response``), the shape of
    ``gen_ai.input.messages`` / ``gen_ai.output.messages``.
    """
    messages: dict[int, dict[str, Any]] = {}
    plen = len(prefix)
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[plen:].partition(".")
        if not index.isdigit() or not rest.startswith("message."):
            continue
        message = messages.setdefault(int(index), {"fields": {}, "calls": {}, "contents": {}})
        if rest.startswith(cv.OI_TOOL_CALLS + "."):
            call, _, field = rest[len(cv.OI_TOOL_CALLS) + 1:].partition(".")
            if call.isdigit():
                message["calls"].setdefault(int(call), {})[field] = value
        elif rest.startswith(cv.OI_CONTENTS + "."):
            part, _, field = rest[len(cv.OI_CONTENTS) + 1:].partition(".")
            if part.isdigit():
                message["contents"].setdefault(int(part), {})[field] = value
        else:
            message["fields"][rest] = value
    out = []
    for index in sorted(messages):
        message = messages[index]
        fields = message["fields"]
        parts: list[dict[str, Any]] = []
        content = fields.get(cv.OI_CONTENT, "")
        call_id = fields.get(cv.OI_TOOL_CALL_ID, "")
        if call_id:
            parts.append({"type": "tool_call_response", "id": call_id, "response": content})
        elif content:
            parts.append({"type": "text", "content": content})
        for part_index in sorted(message["contents"]):
            text = message["contents"][part_index].get("message_content.text", "")
            if text:
                parts.append({"type": "text", "content": text})
        for call_index in sorted(message["calls"]):
            call = message["calls"][call_index]
            name = call.get(cv.OI_CALL_NAME, "")
            if name:
                arguments: Any = call.get(cv.OI_CALL_ARGUMENTS, "")
                try:
                    arguments = json.loads(arguments) if arguments else {}
                except ValueError:
                    pass
                parts.append({"type": "tool_call", "id": call.get(cv.OI_CALL_ID, ""), "name": name,
                              "arguments": arguments})
        entry: dict[str, Any] = {"role": fields.get(cv.OI_ROLE, ""), "parts": parts}
        if fields.get(cv.OI_NAME):
            entry["name"] = fields[cv.OI_NAME]
        out.append(entry)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False) if out else ""


def text_of(attrs: dict[str, str], field: str, operation: str = "") -> str:
    """Input or output text.

    A tool span: the call's arguments / result (``gen_ai.tool.call.*``, ``input.value``,
    ``traceloop.entity.*``). Otherwise: the GenAI message attribute, else OpenInference's
    flattened messages as GenAI message JSON, else ``input.value`` / ``traceloop.entity.*``,
    else the legacy flattened ``gen_ai.prompt.N`` / ``gen_ai.completion.N`` contents joined.
    """
    if operation == "tool":
        for key in cv.TOOL_TEXT_SOURCES[field]:
            if attrs.get(key):
                return attrs[key]
    structured = attrs.get(cv.FIELD_SOURCES[field][0])
    if structured:
        return structured
    prefix = cv.OI_MESSAGE_PREFIXES[field]
    if prefix + "0.message.role" in attrs or prefix + "0.message.content" in attrs:
        messages = _message_json(attrs, prefix)
        if messages:
            return messages
    value = _first(attrs, {}, field)
    if value:
        return value
    prefix = cv.TEXT_PREFIXES[field]
    keys = [key for key in attrs if key.startswith(prefix) and key.endswith(".content")]
    return "\n".join(attrs[key] for key in sorted(keys)) if keys else ""


def metadata_of(attrs: dict[str, str]) -> dict[str, Any]:
    """OpenInference ``metadata`` (a JSON object in a string) as a dict; {} when absent or not an object."""
    text = attrs.get(cv.METADATA_ATTR, "")
    if not text.startswith("{"):
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def tags_of(attrs: dict[str, str]) -> list[str]:
    """OpenInference ``tag.tags`` (a string array) as a list."""
    return _string_list(attrs.get(cv.TAGS_ATTR, ""))


def association_properties(attrs: dict[str, str]) -> dict[str, str]:
    """OpenLLMetry ``traceloop.association.properties.*`` by property name."""
    prefix = cv.TRACELOOP_ASSOCIATION
    return {key[len(prefix):]: value for key, value in attrs.items() if key.startswith(prefix)}


def usage_of(attrs: dict[str, str], resource_fields: dict[str, str]) -> tuple[int, int, int, int, int]:
    """(input, output, cache read, cache write, reasoning) token counts; input includes cached tokens."""
    return (_int(_first(attrs, resource_fields, "input_tokens")), _int(_first(attrs, resource_fields, "output_tokens")),
            _int(_first(attrs, resource_fields, "cache_read_tokens")),
            _int(_first(attrs, resource_fields, "cache_write_tokens")),
            _int(_first(attrs, resource_fields, "reasoning_tokens")))


def reported_cost(attrs: dict[str, str]) -> float | None:
    """A cost the instrumentation reports (USD): flightrec.cost.usd, llm.cost.total, ..., prompt + completion."""
    for key in cv.FIELD_SOURCES["cost_usd"]:
        text = attrs.get(key)
        if text:
            try:
                return max(0.0, float(text))
            except ValueError:
                continue
    parts = [attrs[key] for key in cv.COST_PARTS if key in attrs]
    if parts:
        try:
            return max(0.0, sum(float(part) for part in parts))
        except ValueError:
            return None
    return None


def objects_of(attrs: dict[str, str], aliases: dict[str, str]) -> list[str]:
    """Every ``type:id`` this span names, de-duplicated, in a stable order."""
    found: list[str] = []
    kind, ident = attrs.get(cv.OBJECT_TYPE_ATTR, ""), attrs.get(cv.OBJECT_ID_ATTR, "")
    if kind and ident:
        found.append(f"{kind.strip().lower()}:{ident.strip()}")
    for item in _string_list(attrs.get(cv.OBJECTS_ATTR, "")):
        kind, sep, ident = item.partition(":")
        if sep and kind.strip() and ident.strip():
            found.append(f"{kind.strip().lower()}:{ident.strip()}")
    for key, kind in aliases.items():
        ident = attrs.get(key)
        if ident:
            found.append(f"{kind}:{ident.strip()}")
    return list(dict.fromkeys(found))


def vocabulary(field: str, value: str) -> str:
    value = value.strip().lower()
    return value if value in cv.VOCABULARIES[field] else ""


NO_EVENTS: tuple[list, ...] = ([], [], [])
NO_LINKS: tuple[list, ...] = ([], [], [], [])


def _events(events: Any) -> tuple[list, ...]:
    return (
        [event.time_unix_nano for event in events],
        [event.name for event in events],
        [attributes_to_dict(event.attributes) for event in events],
    )


def _links(links: Any) -> tuple[list, ...]:
    return (
        [link.trace_id.hex() for link in links],
        [link.span_id.hex() for link in links],
        [link.trace_state for link in links],
        [attributes_to_dict(link.attributes) for link in links],
    )


def span_hash(scope_hash: "hashlib._Hash", span: Any) -> int:
    """A span's identity check: its resource, scope and span bytes as received, hashed (never 0)."""
    digest = scope_hash.copy()
    digest.update(span.SerializeToString())
    return int.from_bytes(digest.digest(), "little") or 1


class Normalizer:
    """Turns decoded OTLP requests into column batches for the store."""

    def __init__(self, config: NormalizeConfig | None = None) -> None:
        self.config = config or NormalizeConfig()
        self.pricer = Pricer(self.config.prices, package=self.config.package_prices)

    def usage_and_cost(self, attrs: dict[str, str], res: dict[str, str], model: str,
                       start_ns: int) -> tuple[int, int, float, int]:
        """(tokens in, tokens out, USD, cost known) of a span that counts its own usage.

        A reported cost wins; else the price of (provider, model) on the call's day times the
        tokens (cache reads and writes at their own rates). No price: cost 0 and known 0, never
        a silent 0 USD. A span with no tokens and no reported cost costs nothing, known.
        """
        tokens_in, tokens_out, cache_read, cache_write, _ = usage_of(attrs, res)
        reported = reported_cost(attrs)
        if reported is not None:
            return tokens_in, tokens_out, reported, 1
        if not (tokens_in or tokens_out):
            return 0, 0, 0.0, 1
        cost = self.pricer.cost(model, tokens_in, tokens_out, cache_read, cache_write,
                                provider=provider_of(attrs, res), start_ns=start_ns)
        return (tokens_in, tokens_out, 0.0, 0) if cost is None else (tokens_in, tokens_out, cost, 1)

    def normalize_span(
        self,
        span: Any,
        resource: dict[str, str],
        scope_name: str,
        scope_version: str,
        from_resource: dict[str, str] | None = None,
        content_hash: int = 0,
    ) -> tuple[SpanRow, list[tuple]]:
        """One span as a store row, plus its object-link rows (``LINK_COLUMN_NAMES`` order).

        Span attributes are read before resource ones; ``from_resource`` is
        :func:`resource_fields` of ``resource``, passed in when normalizing many spans;
        ``content_hash`` is :func:`span_hash` of the span as received.
        """
        res = resource_fields(resource) if from_resource is None else from_resource
        attrs = attributes_to_dict(span.attributes)
        trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
        model = _first(attrs, res, "model")
        operation = operation_of(attrs)
        start = span.start_time_unix_nano
        tokens_in = tokens_out = 0
        cost, cost_known = 0.0, 1
        if counts_usage(attrs, operation):
            tokens_in, tokens_out, cost, cost_known = self.usage_and_cost(attrs, res, model, start)
        objects = objects_of(attrs, self.config.link_aliases)
        end = max(span.end_time_unix_nano, start)
        tenant = _first(attrs, res, "tenant") or self.config.default_tenant
        agent = agent_of(attrs, res)
        row: SpanRow = (
            start,
            trace_id,
            span_id,
            span.parent_span_id.hex(),
            span.trace_state,
            span.name,
            SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else "Unspecified",
            resource.get("service.name", ""),
            resource,
            scope_name,
            scope_version,
            attrs,
            end - start,
            STATUS_CODES[span.status.code] if 0 <= span.status.code < len(STATUS_CODES) else "Unset",
            span.status.message,
            *(_events(span.events) if span.events else NO_EVENTS),
            *(_links(span.links) if span.links else NO_LINKS),
            tenant,
            agent,
            operation,
            model,
            _first(attrs, res, "prompt_version"),
            _first(attrs, res, "agent_version"),
            tokens_in,
            tokens_out,
            cost,
            tool_of(attrs, res),
            objects,
            _string_list(attrs.get(cv.INPUTS_ATTR, "")),
            attrs.get("flightrec.action.name", ""),
            attrs.get("flightrec.action.system", ""),
            vocabulary("action_risk", attrs.get("flightrec.action.risk", "")),
            _float(attrs.get("flightrec.action.amount", "")),
            attrs.get("flightrec.action.currency", "").upper(),
            vocabulary("mode", attrs.get("flightrec.mode", "")),
            vocabulary("guardrail_verdict", attrs.get("flightrec.guardrail.verdict", "")),
            vocabulary("human_decision", attrs.get("flightrec.human.decision", "")),
            _first(attrs, res, "session_id"),
            _first(attrs, res, "user_id"),
            text_of(attrs, "input_text", operation),
            text_of(attrs, "output_text", operation),
            content_hash,
            cost_known,
        )
        links = [(*ref.split(":", 1), trace_id, span_id, start, tenant, agent) for ref in objects]
        return row, links

    def normalize_request(self, request: ExportTraceServiceRequest, batch: SpanBatch | None = None) -> SpanBatch:
        """Every span of a (validated) request appended to a batch, with its object links."""
        batch = batch or SpanBatch()
        for resource_spans in request.resource_spans:
            resource = attributes_to_dict(resource_spans.resource.attributes)
            from_resource = resource_fields(resource)
            resource_hash = hashlib.blake2b(resource_spans.resource.SerializeToString(), digest_size=8)
            for scope_spans in resource_spans.scope_spans:
                scope_name, scope_version = scope_spans.scope.name, scope_spans.scope.version
                scope_hash = resource_hash.copy()
                scope_hash.update(scope_spans.scope.SerializeToString())
                for span in scope_spans.spans:
                    row, links = self.normalize_span(
                        span, resource, scope_name, scope_version, from_resource, span_hash(scope_hash, span)
                    )
                    batch.span_rows.append(row)
                    if links:
                        batch.link_rows.extend(links)
        return batch
