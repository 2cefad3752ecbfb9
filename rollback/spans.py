"""Undo steps as OTLP spans, so an object's story says what was undone, by whom, and when."""

from __future__ import annotations

import os
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from flightrec.rollback.models import PlanStep, UndoPlan

SERVICE = "flightrec-rollback"


def _kv(key: str, value: str | list[str]) -> KeyValue:
    if isinstance(value, list):
        any_value = AnyValue()
        any_value.array_value.values.extend(AnyValue(string_value=item) for item in value)
        return KeyValue(key=key, value=any_value)
    return KeyValue(key=key, value=AnyValue(string_value=value))


def undo_span_request(plan: UndoPlan, step: PlanStep, actor: str, error: str = "") -> ExportTraceServiceRequest:
    """One span recording one executed (or failed) undo step, linked to the objects it restored."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", SERVICE))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "flightrec.rollback"
    span = scope_spans.spans.add()
    span.trace_id, span.span_id = os.urandom(16), os.urandom(8)
    span.name = f"undo {step.action}"
    span.kind = 1
    end = time.time_ns()
    span.start_time_unix_nano = end - 1_000_000
    span.end_time_unix_nano = end
    attributes = [
        _kv("flightrec.operation", "undo"),
        _kv("gen_ai.agent.name", step.agent),
        _kv("flightrec.undo.of", step.action_id),
        _kv("flightrec.action.name", step.action),
        _kv("flightrec.rollback.plan", plan.id),
        _kv("flightrec.human.actor", actor),
        _kv("flightrec.objects", step.objects),
    ]
    if step.amount:
        attributes.append(_kv("flightrec.rollback.amount", step.amount))
    if step.restored is not None:
        attributes.append(_kv("flightrec.rollback.restored", "yes" if step.restored else "no"))
    span.attributes.extend(attributes)
    if error:
        span.status.code = 2
        span.status.message = error
    return request
