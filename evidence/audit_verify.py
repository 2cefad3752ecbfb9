"""Checking an audit log against its signed heads: a pure function, usable offline.

What it proves, given the entries, the heads and the right public key:

- the chain is whole from entry 1 to the last entry present (no gap, no fork, each entry's hash
  and its link to the one before), each in its hash format;
- every head that verifies pins its entry: rewriting any entry at or before it, even with every
  later hash recomputed, is reported, and so is removing entries up to it (truncation);
- a head kept outside the store (the server's head file, or one an auditor saved earlier from
  ``GET /api/audit/head``) catches removing the newest entries and their stored heads together.

What it does not prove: entries *after* the newest head the verifier holds may have been
rewritten or removed by someone with write access to the store (the chain alone cannot tell);
and a signature means something only while the signing key is out of that someone's reach.
A head signed by any key other than the one given is not trusted (reported as a problem).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from flightrec.evidence.keys import fingerprint, verify_signature
from flightrec.store.audit import AuditEntry, SignedHead, head_message, iso_utc, verify_chain


class AuditVerification(BaseModel):
    """The verdict on an audit log: ``ok`` when ``problems`` is empty."""

    ok: bool
    entries: int
    last_seq: int
    heads_checked: int
    signed_through: int  # the newest entry a valid head covers (0: none)
    unsigned_entries: int  # entries after it: chained, but covered by no head the verifier holds
    key_fingerprint: str
    problems: list[str]
    notes: list[str]


def _check_head(head: SignedHead, label: str, public_raw: bytes, key_id: str, by_seq: dict[int, list[AuditEntry]],
                last_seq: int) -> str | None:
    """A sentence for what is wrong with this head against the entries, or None when it pins its entry."""
    name = f"{label} for entry {head.seq} (signed {iso_utc(head.time)})"
    if head.key_id != key_id:
        return f"{name}: signed by key {head.key_id[:16]}…, not this log's key {key_id[:16]}… (not trusted)"
    if not verify_signature(public_raw, head_message(head.seq, head.hash, head.time), head.signature):
        return f"{name}: the signature does not verify (a forged or altered head)"
    found = by_seq.get(head.seq, [])
    if not found:
        if head.seq > last_seq:
            gone = f"entry {head.seq} was" if head.seq == last_seq + 1 else f"entries {last_seq + 1}..{head.seq} were"
            return f"{name}: the log ends at entry {last_seq}, so {gone} removed (truncated)"
        return f"{name}: entry {head.seq} is missing"
    if all(entry.hash != head.hash for entry in found):
        return (f"{name}: entry {head.seq} no longer has the signed hash: the log was rewritten at or before "
                f"entry {head.seq}")
    return None


def verify_log(entries: Sequence[AuditEntry], heads: Sequence[SignedHead], public_raw: bytes,
               trusted: Sequence[tuple[str, SignedHead]] = ()) -> AuditVerification:
    """Check ``entries`` and the stored ``heads`` with the key ``public_raw`` (raw Ed25519), and the
    ``trusted`` heads kept outside the store, each with a label naming where it came from."""
    problems = verify_chain(list(entries))
    key_id = fingerprint(public_raw)
    by_seq: dict[int, list[AuditEntry]] = {}
    for entry in entries:
        by_seq.setdefault(entry.seq, []).append(entry)
    last_seq = max(by_seq, default=0)
    pinned: list[int] = []
    for label, head in [*(("stored head", head) for head in heads), *trusted]:
        problem = _check_head(head, label, public_raw, key_id, by_seq, last_seq)
        if problem:
            problems.append(problem)
        else:
            pinned.append(head.seq)
    newest_stored = max((head.seq for head in heads), default=0)
    for label, head in trusted:
        if head.seq > newest_stored:
            problems.append(f"{label} for entry {head.seq}: the newest head in the store is for entry {newest_stored}: "
                            "signed heads were removed from the store")
    signed_through = max(pinned, default=0)
    notes = []
    if last_seq > signed_through:
        notes.append(f"entries {signed_through + 1}..{last_seq} are covered by no valid signed head: they are "
                     "chained, but could have been rewritten or removed by someone with write access to the store")
    if not trusted:
        notes.append("no head kept outside the store was given: removing the newest entries together with their "
                     "stored heads would not show")
    return AuditVerification(ok=not problems, entries=len(entries), last_seq=last_seq, heads_checked=len(heads)
                             + len(trusted), signed_through=signed_through,
                             unsigned_entries=max(0, last_seq - signed_through), key_fingerprint=key_id,
                             problems=problems, notes=notes)
