"""Link coverage: a link names a span, and covers that span and all its descendants."""

from __future__ import annotations

from collections.abc import Iterable

from flightrec.store.models import SpanRecord


def covered_spans(spans: Iterable[SpanRecord], anchors: set[tuple[str, str]]) -> list[SpanRecord]:
    """The spans that are an anchor ``(trace_id, span_id)`` or descend from one, time-ordered.

    Resolved at read time, so it does not matter in which order the spans arrived.
    """
    spans = list(spans)
    children: dict[tuple[str, str], list[SpanRecord]] = {}
    by_key: dict[tuple[str, str], SpanRecord] = {}
    for span in spans:
        by_key[(span.trace_id, span.span_id)] = span
        if span.parent_span_id:
            children.setdefault((span.trace_id, span.parent_span_id), []).append(span)
    covered: dict[tuple[str, str], SpanRecord] = {}
    stack = [key for key in anchors if key in by_key]
    while stack:
        key = stack.pop()
        if key in covered:
            continue
        covered[key] = by_key[key]
        stack.extend((child.trace_id, child.span_id) for child in children.get(key, ()))
    return sorted(covered.values(), key=lambda s: (s.start_time, s.trace_id, s.span_id))
