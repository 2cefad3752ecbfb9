"""Log records that belong to spans, read back onto them: the span's events, and its messages.

GenAI instrumentations send a call's messages as log records (events) carrying the span's
trace and span ids instead of span attributes: ``gen_ai.{system,user,assistant,tool}.message``
and ``gen_ai.choice`` (semantic conventions up to 1.36), or one
``gen_ai.client.inference.operation.details`` with ``gen_ai.input.messages`` /
``gen_ai.output.messages`` (1.37 on). A span that carries no input or output text of its own
gets it from those events, so its story still says what was asked and answered.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone

from pydantic import BaseModel

from flightrec.store.models import SpanEvent, SpanRecord

INPUT_EVENTS = ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message")
OUTPUT_EVENTS = ("gen_ai.choice",)
DETAILS_EVENT = "gen_ai.client.inference.operation.details"


class LogEvent(BaseModel):
    """One log record of a span, as read from otel_logs."""

    trace_id: str
    span_id: str
    time_ns: int
    name: str
    body: str
    attributes: dict[str, str]


def _message_text(body: str, output: bool) -> str:
    """The content of a message event's body (JSON), or the body itself when it is plain text."""
    try:
        value = json.loads(body) if body.startswith("{") else body
    except ValueError:
        return body
    if not isinstance(value, dict):
        return str(value)
    message = value.get("message", value) if output else value
    if not isinstance(message, dict):
        return str(message)
    content = message.get("content")
    if content:
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    calls = message.get("tool_calls")
    return json.dumps(calls, ensure_ascii=False) if calls else ""


def _texts(events: list[LogEvent]) -> tuple[str, str]:
    inputs, outputs = [], []
    for event in events:
        if event.name in INPUT_EVENTS:
            inputs.append(_message_text(event.body, output=False))
        elif event.name in OUTPUT_EVENTS:
            outputs.append(_message_text(event.body, output=True))
        elif event.name == DETAILS_EVENT:
            inputs.append(event.attributes.get("gen_ai.input.messages", ""))
            outputs.append(event.attributes.get("gen_ai.output.messages", ""))
    return "\n".join(text for text in inputs if text), "\n".join(text for text in outputs if text)


def attach_log_events(spans: list[SpanRecord], events: list[LogEvent]) -> list[SpanRecord]:
    """The spans with their log records added as events (time-ordered) and missing texts filled in."""
    by_span: dict[tuple[str, str], list[LogEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.time_ns):
        by_span[(event.trace_id, event.span_id)].append(event)
    out = []
    for span in spans:
        found = by_span.get((span.trace_id, span.span_id))
        if not found:
            out.append(span)
            continue
        added = [SpanEvent(time=datetime.fromtimestamp(e.time_ns / 1e9, tz=timezone.utc), name=e.name or "log",
                           attributes={**e.attributes, **({"body": e.body} if e.body else {})}) for e in found]
        input_text, output_text = _texts(found)
        out.append(span.model_copy(update={
            "events": sorted([*span.events, *added], key=lambda event: event.time),
            "input_text": span.input_text or input_text,
            "output_text": span.output_text or output_text,
        }))
    return out
