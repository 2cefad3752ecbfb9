"""The audit chain: each entry's hash covers its content and the previous hash.

Pure functions, so a chain is checked offline with no store. Two hash formats:

- format 1 (the first entries): SHA-256 of Python's ``json.dumps`` of a list, times as
  ``datetime.isoformat()``; kept so entries written before format 2 keep verifying.
- format 2: SHA-256 of the RFC 8785 canonical JSON of the object
  ``{seq, time, actor, act, subject, details, prev}``, ``time`` ISO 8601 UTC with microseconds
  (``2026-03-01T14:30:00.000000Z``): any implementation of RFC 8785 recomputes it.

What a hash chain alone proves: entries are in order, none is missing *between* two others and
none was altered *unless every later hash was recomputed*. Someone who can write to the store
can recompute them, or drop the newest entries; signed heads (``evidence.audit_verify``) catch
that up to the newest head a verifier holds.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import rfc8785
from pydantic import BaseModel

GENESIS = "0" * 64
FORMAT_JSON_LIST = 1
FORMAT_RFC8785 = 2
CURRENT_FORMAT = FORMAT_RFC8785
FORMATS = (FORMAT_JSON_LIST, FORMAT_RFC8785)
HEAD_KIND = "flightrec.audit.head"


class AuditEntry(BaseModel):
    """One person's act: who did what to which subject, when, and the chain link."""

    seq: int
    time: datetime
    actor: str
    act: str
    subject: str
    details: dict[str, str]
    prev_hash: str
    hash: str
    format: int = FORMAT_JSON_LIST


class SignedHead(BaseModel):
    """The log's head as the server signed it: entry ``seq`` has ``hash``, signed at ``time``.

    ``key_id`` is the SHA-256 (hex) of the raw Ed25519 public key, ``signature`` the base64 of the
    Ed25519 signature over :func:`head_message`.
    """

    seq: int
    hash: str
    time: datetime
    key_id: str
    signature: str


def iso_utc(moment: datetime) -> str:
    """``2026-03-01T14:30:00.000000Z``: UTC, always six fraction digits (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_entry(seq: int, time: datetime, actor: str, act: str, subject: str, details: dict[str, str],
                    prev: str) -> bytes:
    """The bytes format 2 hashes: RFC 8785 canonical JSON of the entry's fields."""
    return rfc8785.dumps({"seq": seq, "time": iso_utc(time), "actor": actor, "act": act, "subject": subject,
                          "details": details, "prev": prev})


def entry_hash(seq: int, time: datetime, actor: str, act: str, subject: str, details: dict[str, str], prev: str,
               format: int = CURRENT_FORMAT) -> str:
    """The SHA-256 (hex) an entry of this ``format`` carries; ValueError for a format this code does not know."""
    if format == FORMAT_RFC8785:
        return hashlib.sha256(canonical_entry(seq, time, actor, act, subject, details, prev)).hexdigest()
    if format == FORMAT_JSON_LIST:
        legacy = json.dumps([seq, time.isoformat(), actor, act, subject, details, prev], sort_keys=True,
                            separators=(",", ":"))
        return hashlib.sha256(legacy.encode()).hexdigest()
    raise ValueError(f"unknown audit entry format {format} (known: {', '.join(map(str, FORMATS))})")


def head_message(seq: int, hash: str, time: datetime) -> bytes:
    """What a head's signature covers: RFC 8785 JSON of ``{kind, seq, hash, time}``."""
    return rfc8785.dumps({"kind": HEAD_KIND, "seq": seq, "hash": hash, "time": iso_utc(time)})


def verify_chain(entries: list[AuditEntry]) -> list[str]:
    """Every break in the chain, as sentences; an empty list means intact.

    Checks sequence numbers (gaps, two entries with one number: a fork), each entry's link to the
    previous hash, each entry's own hash in its format, and that no entry falls back to the first
    format after one in a later format (a rewrite may not pick the older format). It cannot see
    entries removed from the end, nor a rewrite whose every later hash was recomputed: that takes
    a signed head.
    """
    problems: list[str] = []
    previous, expected_seq, newest_format = GENESIS, 1, FORMAT_JSON_LIST
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.seq < expected_seq:
            problems.append(f"entry {entry.seq}: a second entry with this sequence number (the chain forked)")
        elif entry.seq > expected_seq:
            missing = f"{expected_seq}" if entry.seq == expected_seq + 1 else f"{expected_seq}..{entry.seq - 1}"
            problems.append(f"entry {entry.seq}: entries {missing} are missing")
        if entry.prev_hash != previous:
            problems.append(f"entry {entry.seq}: does not follow the previous entry's hash")
        if entry.format not in FORMATS:
            problems.append(f"entry {entry.seq}: unknown hash format {entry.format}")
        else:
            if entry.format < newest_format:
                problems.append(f"entry {entry.seq}: hash format {entry.format} after an entry in format "
                                f"{newest_format} (a rewrite may not fall back to the older format)")
            newest_format = max(newest_format, entry.format)
            recomputed = entry_hash(entry.seq, entry.time, entry.actor, entry.act, entry.subject, entry.details,
                                    entry.prev_hash, entry.format)
            if recomputed != entry.hash:
                problems.append(f"entry {entry.seq}: content does not match its hash (altered)")
        previous, expected_seq = entry.hash, max(expected_seq, entry.seq + 1)
    return problems
