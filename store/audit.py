"""The audit chain: each entry's hash covers its content and the previous hash.

Pure functions, so ``flightrec verify`` checks a chain offline with no store.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pydantic import BaseModel

GENESIS = "0" * 64


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


def entry_hash(seq: int, time: datetime, actor: str, act: str, subject: str, details: dict[str, str], prev: str) -> str:
    canonical = json.dumps(
        [seq, time.isoformat(), actor, act, subject, details, prev], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify_chain(entries: list[AuditEntry]) -> list[str]:
    """Every break in the chain, as sentences; an empty list means intact."""
    problems: list[str] = []
    previous = GENESIS
    for expected_seq, entry in enumerate(sorted(entries, key=lambda e: e.seq), start=1):
        if entry.seq != expected_seq:
            problems.append(f"entry {entry.seq}: expected sequence number {expected_seq} (an entry is missing)")
        if entry.prev_hash != previous:
            problems.append(f"entry {entry.seq}: does not follow the previous entry's hash")
        recomputed = entry_hash(
            entry.seq, entry.time, entry.actor, entry.act, entry.subject, entry.details, entry.prev_hash
        )
        if recomputed != entry.hash:
            problems.append(f"entry {entry.seq}: content does not match its hash (altered)")
        previous = entry.hash
    return problems
