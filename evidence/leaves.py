"""What a leaf of the evidence log is: the canonical forms of a stored span and of an audit entry.

A span's leaf hashes its *record* apart from its *content*, so erasing personal data from the
content later (issue 11, deliverable 6) leaves the leaf, and every proof through it, unchanged:
the content hash stays in the leaf; only the content is gone.

The canonical forms (all RFC 8785 JSON, UTF-8; hashes are SHA-256, lowercase hex)::

    record  = {"trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind", "service",
               "scope_name", "scope_version", "status_code", "status_message",
               "start_ns", "end_ns"}
    content = {"attributes": {k: v}, "resource": {k: v},
               "events": [{"time_ns", "name", "attributes": {k: v}}, ...],
               "links":  [{"trace_id", "span_id", "trace_state", "attributes": {k: v}}, ...]}
    span leaf data  = {"v": 1, "kind": "span", "trace_id", "span_id",
                       "record": sha256(record), "content": sha256(content)}
    audit leaf data = {"v": 1, "kind": "audit", "seq": N, "hash": the entry's stored hash}
    leaf hash = SHA-256(0x00 || leaf data)                      (RFC 9162)

Every value is a string as ClickHouse stores it (the otel_traces columns: ids as stored, not
re-cased; ``service`` is ServiceName; ``end_ns`` is start + Duration), except ``v`` and ``seq``.
Times are integer nanoseconds since 1970 **written as decimal strings**: RFC 8785 numbers are
IEEE doubles, exact only up to 2**53, and nanosecond times exceed that. Maps are objects, so
RFC 8785 sorts their keys (by UTF-16 code units); events and links keep their stored order. A
string ClickHouse holds that is not valid UTF-8 is hashed as the client reads it (its bytes
in hex): see the report's weak points.

Hashed from rows read back from the store, so what is hashed is what is stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

import rfc8785

from flightrec.evidence.merkle import leaf_hash

LEAF_VERSION = 1


class SpanSource(NamedTuple):
    """One stored span row as the log reads it (store/evidence_log.py selects these columns)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    name: str
    kind: str
    service: str
    scope_name: str
    scope_version: str
    status_code: str
    status_message: str
    start_ns: int
    duration_ns: int
    attributes: dict[str, str]
    resource: dict[str, str]
    event_ns: list[int]
    event_names: list[str]
    event_attributes: list[dict[str, str]]
    link_trace_ids: list[str]
    link_span_ids: list[str]
    link_states: list[str]
    link_attributes: list[dict[str, str]]


def _plain_keys(mapping: dict[str, str]) -> bool:
    """Whether sorting these keys by code point sorts them as RFC 8785 does (by UTF-16 code units):
    true unless a key holds a character at or above U+D800 (surrogate-pair order differs there)."""
    return all(key.isascii() or max(key) < "\ud800" for key in mapping)


def canonical(document: object, *maps: dict[str, str]) -> bytes:
    """RFC 8785 JSON of a document of strings, lists, objects and small integers.

    Python's json with sorted keys and no ASCII escaping writes exactly RFC 8785 for such
    documents (same escapes: ``\\" \\\\ \\b \\f \\n \\r \\t``, other controls as lowercase
    ``\\u00xx``) as long as code-point and UTF-16 key orders agree; ``maps`` are checked for that,
    and the rfc8785 package writes the rare document where they may not (tests compare the two).
    """
    if all(_plain_keys(mapping) for mapping in maps):
        return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return rfc8785.dumps(document)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def span_record(span: SpanSource) -> bytes:
    return canonical({
        "trace_id": span.trace_id, "span_id": span.span_id, "parent_span_id": span.parent_span_id,
        "trace_state": span.trace_state, "name": span.name, "kind": span.kind, "service": span.service,
        "scope_name": span.scope_name, "scope_version": span.scope_version, "status_code": span.status_code,
        "status_message": span.status_message, "start_ns": str(span.start_ns),
        "end_ns": str(span.start_ns + span.duration_ns),
    })


def span_content(span: SpanSource) -> bytes:
    events = [{"time_ns": str(ns), "name": name, "attributes": attrs}
              for ns, name, attrs in zip(span.event_ns, span.event_names, span.event_attributes)]
    links = [{"trace_id": trace, "span_id": span_id, "trace_state": state, "attributes": attrs}
             for trace, span_id, state, attrs in zip(span.link_trace_ids, span.link_span_ids, span.link_states,
                                                     span.link_attributes)]
    return canonical({"attributes": span.attributes, "resource": span.resource, "events": events, "links": links},
                     span.attributes, span.resource, *span.event_attributes, *span.link_attributes)


def span_hashes(span: SpanSource) -> tuple[str, str]:
    """(record hash, content hash) of a stored span, hex."""
    return sha256_hex(span_record(span)), sha256_hex(span_content(span))


def span_leaf_data(trace_id: str, span_id: str, record: str, content: str) -> bytes:
    return canonical({"v": LEAF_VERSION, "kind": "span", "trace_id": trace_id, "span_id": span_id,
                      "record": record, "content": content})


def audit_leaf_data(seq: int, entry_hash: str) -> bytes:
    return canonical({"v": LEAF_VERSION, "kind": "audit", "seq": seq, "hash": entry_hash})


def leaf_data(kind: str, trace_id: str, span_id: str, audit_seq: int, record: str, content: str) -> bytes:
    """The leaf data of a stored leaf row (an audit leaf keeps the entry's hash as its record hash)."""
    if kind == "audit":
        return audit_leaf_data(audit_seq, record)
    return span_leaf_data(trace_id, span_id, record, content)


def leaf_hex(data: bytes) -> str:
    return leaf_hash(data).hex()
