"""What a leaf of the evidence log is: the canonical forms of a stored span and of an audit entry.

A span's leaf hashes its *record* apart from its *content*, so erasing personal data from the
content later (issue 11, deliverable 6) leaves the leaf, and every proof through it, unchanged:
the content hash stays in the leaf; only the content is gone.

The canonical forms. A span's record and content are bytes in which every string is
length-prefixed (its UTF-8 byte length as uint64 little-endian, then the bytes), a map is its
pair count then its pairs sorted by key bytes, a list its length then its items; the engine
computes them (store/evidence_log.py: ``RECORD_HASH``, ``CONTENT_HASH``) and :func:`span_record`
/ :func:`span_content` write the same bytes in Python, for offline checks (a test compares them)::

    record  = s("flightrec.span.record.v1") s(trace_id) s(span_id) s(parent_span_id) s(trace_state)
              s(name) s(kind) s(service) s(scope_name) s(scope_version) s(status_code)
              s(status_message) s(start_ns) s(end_ns)
    content = s("flightrec.span.content.v1") map(attributes) map(resource)
              u64(#events) [s(time_ns) s(name) map(attributes)]...
              u64(#links)  [s(trace_id) s(span_id) s(trace_state) map(attributes)]...

Times are integer nanoseconds written as decimal strings; strings are as ClickHouse stores them
(ids as stored, ``service`` is ServiceName, ``end_ns`` is start + Duration). Length prefixes
make every form unambiguous, and the engine hashes bytes, so a string that is not valid UTF-8
is hashed as stored. The leaf data is RFC 8785 JSON (ASCII only: ids and hex hashes)::

    span leaf data  = {"v": 1, "kind": "span", "trace_id", "span_id",
                       "record": sha256(record), "content": sha256(content)}
    audit leaf data = {"v": 1, "kind": "audit", "seq": N, "hash": the entry's stored hash}
    leaf hash = SHA-256(0x00 || leaf data)                      (RFC 9162)

Hashed from rows read back from the store, so what is hashed is what is stored.
"""

from __future__ import annotations

import hashlib
import json
import struct
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


def _s(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    return struct.pack("<Q", len(data)) + data


def _map(mapping: dict[str, str]) -> bytes:
    pairs = sorted(mapping.items(), key=lambda pair: pair[0].encode("utf-8", "surrogateescape"))
    return struct.pack("<Q", len(pairs)) + b"".join(_s(key) + _s(value) for key, value in pairs)


def span_record(span: SpanSource) -> bytes:
    fields = ["flightrec.span.record.v1", span.trace_id, span.span_id, span.parent_span_id, span.trace_state,
              span.name, span.kind, span.service, span.scope_name, span.scope_version, span.status_code,
              span.status_message, str(span.start_ns), str(span.start_ns + span.duration_ns)]
    return b"".join(_s(field) for field in fields)


def span_content(span: SpanSource) -> bytes:
    events = b"".join(_s(str(ns)) + _s(name) + _map(attrs)
                      for ns, name, attrs in zip(span.event_ns, span.event_names, span.event_attributes))
    links = b"".join(_s(trace) + _s(span_id) + _s(state) + _map(attrs)
                     for trace, span_id, state, attrs in zip(span.link_trace_ids, span.link_span_ids,
                                                             span.link_states, span.link_attributes))
    return (_s("flightrec.span.content.v1") + _map(span.attributes) + _map(span.resource)
            + struct.pack("<Q", len(span.event_names)) + events + struct.pack("<Q", len(span.link_trace_ids)) + links)


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
