"""Building OTLP protobuf requests by hand, for tests that need exact bytes."""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

DAY_S = 86_400


def base_s(now_s: int) -> int:
    """An hour ago (recent: older spans fall to the TTL), or earlier so that the two hours after it stay
    in one day: the spans are partitioned by day, and a test's spans must not split at midnight."""
    base = now_s - 3600
    return base - 7200 if base % DAY_S > DAY_S - 7200 else base


BASE_NS = base_s(time.time_ns() // 1_000_000_000) * 1_000_000_000


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(any_value(item) for item in value)
        return out
    return AnyValue(string_value=str(value))


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attrs.items()]


def make_span(
    name: str = "span",
    attrs: dict[str, Any] | None = None,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent: bytes = b"",
    start_ns: int = BASE_NS,
    duration_ns: int = 1_000_000,
) -> Span:
    span = Span(
        trace_id=trace_id if trace_id is not None else os.urandom(16),
        span_id=span_id if span_id is not None else os.urandom(8),
        parent_span_id=parent,
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
    )
    span.attributes.extend(kvs(attrs or {}))
    return span


def make_request(spans: list[Span], resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(kvs(resource or {"service.name": "test-agent"}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    scope_spans.spans.extend(spans)
    return request


_PRICER = None


def price_stored(store: Any, overrides: dict | None = None) -> int:
    """What the server's rate resolver does after inserts: price the stored calls' models."""
    global _PRICER
    from flightrec.collector.prices import Pricer
    from flightrec.collector.rates import resolve_rates

    if overrides is not None:
        store.meaning.clear_rates()
        return resolve_rates(store, Pricer(overrides))
    _PRICER = _PRICER or Pricer()
    return resolve_rates(store, _PRICER)
