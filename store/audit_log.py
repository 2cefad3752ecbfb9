"""Statements for the audit log (``audit_log``) and its signed heads (``audit_heads``).

An append is a compare-and-swap in ClickHouse, so any number of server processes on one
ClickHouse write one chain: the entry for sequence number N goes in with the insert
deduplication token ``audit:N:<previous hash>``. Two writers racing for N send the same token;
the engine keeps the first insert and silently drops the second, whatever its data. Each writer
then reads N back: if the hash stored there is not its own, another writer won, and it tries
again at N + 1 (a bounded number of times). The per-process lock only saves needless races
between threads of one process.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time as clock
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Literal

from flightrec.store.audit import CURRENT_FORMAT, GENESIS, AuditEntry, SignedHead, entry_hash
from flightrec.store.engine import Engine, StoreError

log = logging.getLogger(__name__)

APPEND_ATTEMPTS = 20
ENTRY_COLUMNS = "Seq, Time, Actor, Act, Subject, Details, PrevHash, Hash, Format"


class AuditAppendError(StoreError):
    """An entry could not be appended: other writers kept winning, or the store refuses the number."""


def _now() -> datetime:
    return datetime.now(tz=timezone.utc)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _micros(moment: datetime) -> int:
    return (_utc(moment) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def audit_entry(row: tuple) -> AuditEntry:
    seq, time, actor, act, subject, details, prev, digest, format = row
    return AuditEntry(seq=seq, time=_utc(time), actor=actor, act=act, subject=subject,
                      details=json.loads(details), prev_hash=prev, hash=digest, format=format)


class AuditRepository:
    """The hash-chained audit log and its signed heads.

    ``after_append``, when set (the server sets it to sign the new head), is called with each
    entry this process appended, after the append; its failure is logged, never undoes the entry.
    """

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db
        self._lock = threading.Lock()
        self.after_append: Callable[[AuditEntry], None] | None = None

    def _head(self) -> tuple[int, str]:
        rows = self.engine.query("audit_head", f"SELECT Seq, Hash FROM {self.db}.audit_log ORDER BY Seq DESC LIMIT 1")
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)

    def _hashes_at(self, seq: int) -> list[str]:
        rows = self.engine.query("audit_hashes_at", f"SELECT Hash FROM {self.db}.audit_log WHERE Seq = {{seq:UInt64}}",
                                 {"seq": seq})
        return [row[0] for row in rows]

    def append(self, *, actor: str, act: str, subject: str, details: dict[str, str]) -> AuditEntry:
        """Append one entry at the next free sequence number; AuditAppendError when it cannot."""
        with self._lock:
            entry = self._append_cas(actor=actor, act=act, subject=subject, details=details)
        if self.after_append is not None:
            try:
                self.after_append(entry)
            except Exception:  # the act and its entry stand; verification shows the entry unsigned
                log.exception("audit: entry %d was appended but its head could not be signed", entry.seq)
        return entry

    def _append_cas(self, *, actor: str, act: str, subject: str, details: dict[str, str]) -> AuditEntry:
        """Compare-and-swap at the next number. ``generation`` counts tokens found used with no entry
        stored (the end of the log was removed): every writer walks the same suffixes, so racers still
        collide on one token, and acts keep being recorded (verification reports the removal)."""
        generation = 0
        for attempt in range(APPEND_ATTEMPTS):
            last, prev = self._head()
            seq, moment = last + 1, _now()
            digest = entry_hash(seq, moment, actor, act, subject, details, prev, CURRENT_FORMAT)
            self.engine.insert(
                "audit_append", f"{self.db}.audit_log",
                [[seq], [moment], [actor], [act], [subject], [json.dumps(details, sort_keys=True)], [prev], [digest],
                 [CURRENT_FORMAT]],
                ["Seq", "Time", "Actor", "Act", "Subject", "Details", "PrevHash", "Hash", "Format"],
                dedup_token=f"audit:{seq}:{prev}" + (f":{generation}" if generation else ""),
            )
            stored = self._hashes_at(seq)
            if digest in stored:
                return AuditEntry(seq=seq, time=moment, actor=actor, act=act, subject=subject, details=details,
                                  prev_hash=prev, hash=digest, format=CURRENT_FORMAT)
            if not stored:  # the token was seen before, yet no entry N is there: N was removed
                log.error("audit: entry %d was written before but is gone: entries were removed from the end of "
                          "the audit log (run `flightrec audit verify`); appending after what is left", seq)
                generation += 1
                continue
            clock.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # another writer took N: try N + 1
        raise AuditAppendError(
            f"audit_append: other writers took every sequence number tried ({APPEND_ATTEMPTS} attempts); "
            "the act was not recorded, try again", transient=True)

    def latest_by_subject(self, *, acts: list[str], subject_prefix: str) -> list[AuditEntry]:
        """The newest entry of any of these acts per subject starting with the prefix, by subject."""
        rows = self.engine.query(
            "audit_latest_by_subject",
            "SELECT argMax(Seq, Seq), argMax(Time, Seq), argMax(Actor, Seq), argMax(Act, Seq), Subject, "
            "argMax(Details, Seq), argMax(PrevHash, Seq), argMax(Hash, Seq), argMax(Format, Seq) "
            f"FROM {self.db}.audit_log "
            "WHERE Act IN {acts:Array(String)} AND startsWith(Subject, {prefix:String}) "
            "GROUP BY Subject ORDER BY Subject",
            {"acts": acts, "prefix": subject_prefix},
        )
        return [audit_entry(row) for row in rows]

    def entries(self, *, since_seq: int = 0, limit: int = 1000, actor: str = "", act: str = "",
                after: datetime | None = None, order: Literal["asc", "desc"] = "asc") -> list[AuditEntry]:
        """Entries after ``since_seq`` (and after the time ``after``), by ``actor`` / of ``act`` when given."""
        direction = "DESC" if order == "desc" else "ASC"
        rows = self.engine.query(
            "audit_entries",
            f"SELECT {ENTRY_COLUMNS} FROM {self.db}.audit_log "
            "WHERE Seq > {since:UInt64} AND Time > fromUnixTimestamp64Micro({after:Int64}) "
            "AND ({actor:String} = '' OR Actor = {actor:String}) AND ({act:String} = '' OR Act = {act:String}) "
            f"ORDER BY Seq {direction} LIMIT {{limit:UInt32}}",
            {"since": since_seq, "limit": limit, "actor": actor, "act": act,
             "after": _micros(after) if after else -1},
        )
        return [audit_entry(row) for row in rows]

    def add_head(self, head: SignedHead) -> None:
        """Keep a signed head in the store (the server keeps its newest in a file too)."""
        self.engine.insert(
            "audit_add_head", f"{self.db}.audit_heads",
            [[head.seq], [_utc(head.time)], [head.hash], [head.key_id], [head.signature]],
            ["Seq", "Time", "Hash", "KeyId", "Signature"],
        )

    def heads(self) -> list[SignedHead]:
        """Every stored signed head, by sequence number."""
        rows = self.engine.query(
            "audit_heads", f"SELECT Seq, Hash, Time, KeyId, Signature FROM {self.db}.audit_heads ORDER BY Seq, Time")
        return [SignedHead(seq=seq, hash=digest, time=_utc(moment), key_id=key_id, signature=signature)
                for seq, digest, moment, key_id, signature in rows]

    def latest_head(self) -> SignedHead | None:
        rows = self.engine.query(
            "audit_latest_head",
            f"SELECT Seq, Hash, Time, KeyId, Signature FROM {self.db}.audit_heads ORDER BY Seq DESC, Time DESC LIMIT 1")
        return SignedHead(seq=rows[0][0], hash=rows[0][1], time=_utc(rows[0][2]), key_id=rows[0][3],
                          signature=rows[0][4]) if rows else None

