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
from flightrec.collector.prices import DEFAULT_PRICES, ModelPrice
from flightrec.store.models import SpanBatch, SpanRow

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")


class NormalizeConfig(BaseModel):
    """What normalization may be told: link aliases, prices, the default tenant."""

    link_aliases: dict[str, str] = Field(default_factory=lambda: dict(cv.DEFAULT_LINK_ALIASES))
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
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


def agent_of(attrs: dict[str, str], resource_fields: dict[str, str]) -> str:
    for key in cv.FIELD_SOURCES["agent"]:
        if key == "traceloop.entity.name" and attrs.get("traceloop.span.kind", "") not in cv.TRACELOOP_AGENT_KINDS:
            continue
        value = attrs.get(key)
        if value:
            return value
    return resource_fields.get("agent", "")


def text_of(attrs: dict[str, str], field: str) -> str:
    """Input or output text: the structured attribute, else the legacy flattened ones joined."""
    value = _first(attrs, {}, field)
    if value:
        return value
    prefix = cv.TEXT_PREFIXES[field]
    keys = [key for key in attrs if key.startswith(prefix) and key.endswith(".content")]
    return "\n".join(attrs[key] for key in sorted(keys)) if keys else ""


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


class Pricer:
    """Tokens to USD from a price table; the longest model-name prefix wins."""

    def __init__(self, prices: dict[str, ModelPrice]) -> None:
        self._prices = prices
        self._names = sorted(prices, key=len, reverse=True)
        self._cache: dict[str, ModelPrice | None] = {}

    def price_of(self, model: str) -> ModelPrice | None:
        if model not in self._cache:
            lowered = model.lower()
            self._cache[model] = next(
                (self._prices[name] for name in self._names if lowered.startswith(name.lower())), None
            )
        return self._cache[model]

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        price = self.price_of(model) if model else None
        if price is None:
            return 0.0
        return (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / 1e6


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
        self.pricer = Pricer(self.config.prices)

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
        tokens_in = _int(_first(attrs, res, "input_tokens"))
        tokens_out = _int(_first(attrs, res, "output_tokens"))
        cost_text = attrs.get("flightrec.cost.usd")
        cost = _float(cost_text) if cost_text else self.pricer.cost(model, tokens_in, tokens_out)
        objects = objects_of(attrs, self.config.link_aliases)
        start = span.start_time_unix_nano
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
            operation_of(attrs),
            model,
            _first(attrs, res, "prompt_version"),
            _first(attrs, res, "agent_version"),
            tokens_in,
            tokens_out,
            cost,
            _first(attrs, res, "tool"),
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
            text_of(attrs, "input_text"),
            text_of(attrs, "output_text"),
            content_hash,
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
