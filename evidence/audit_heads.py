"""Signing the audit log's head after each append, and the copy kept outside the store.

After each append this server signs ``(seq, hash, time)`` and keeps the signed head twice: in
the store (``audit_heads``) and, when newer than the one there, in a file in the data directory
(written to a temporary file, then renamed over the old one). The file is the copy that catches
removing the newest entries *and* their heads from the store together.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from flightrec.evidence.audit_verify import AuditVerification, verify_log
from flightrec.evidence.keys import SigningKey
from flightrec.store.audit import AuditEntry, SignedHead, head_message
from flightrec.store.audit_log import AuditRepository

HEAD_FILE = "audit-head.json"
MAX_ENTRIES = 10_000_000


class HeadFileError(ValueError):
    """A head file cannot be read; the message names the file and what is wrong."""


def sign_head(key: SigningKey, seq: int, digest: str, moment: datetime | None = None) -> SignedHead:
    moment = moment or datetime.now(tz=timezone.utc)
    return SignedHead(seq=seq, hash=digest, time=moment, key_id=key.fingerprint,
                      signature=key.sign(head_message(seq, digest, moment)))


def read_head_file(path: Path) -> SignedHead | None:
    """The head in ``path``: a bare head, or a saved ``GET /api/audit/head`` answer; None if there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HeadFileError(f"cannot read the head file {path}: {exc.strerror or exc}") from exc
    return parse_head(text, str(path))


def parse_head(text: str, source: str) -> SignedHead:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise HeadFileError(f"{source} is not JSON ({exc})") from exc
    if isinstance(document, dict) and "head" in document:  # a saved GET /api/audit/head answer
        document = document["head"]
        if document is None:
            raise HeadFileError(f"{source} holds no head (it was saved before the first audit entry)")
    try:
        return SignedHead.model_validate(document)
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'head'}: {error['msg']}" for error in exc.errors())
        raise HeadFileError(f"{source} is not a signed audit head ({wrong}); expected "
                            "{seq, hash, time, key_id, signature} as GET /api/audit/head answers") from exc


class HeadKeeper:
    """Signs each new head, stores it and keeps the newest in the head file (one process's view)."""

    def __init__(self, audit: AuditRepository, key: SigningKey, path: Path) -> None:
        self.audit, self.key, self.path = audit, key, path
        self._lock = threading.Lock()

    def record(self, entry: AuditEntry) -> SignedHead:
        """``AuditRepository.after_append``: sign the head at ``entry``, store it, update the file."""
        head = sign_head(self.key, entry.seq, entry.hash)
        self.audit.add_head(head)
        with self._lock:
            try:
                current = read_head_file(self.path)
            except HeadFileError:
                current = None  # replaced by a good one; verification reported the bad one meanwhile
            if current is None or current.seq < head.seq:
                self._write(head)
        return head

    def file_head(self) -> SignedHead | None:
        return read_head_file(self.path)

    def _write(self, head: SignedHead) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(head.model_dump_json() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def newest_head(self) -> SignedHead | None:
        """The newest head known here: the store's or the file's, whichever covers more."""
        stored = self.audit.latest_head()
        try:
            kept = self.file_head()
        except HeadFileError:
            kept = None
        return max((head for head in (stored, kept) if head is not None), key=lambda head: head.seq, default=None)

    def verify(self, trusted: Sequence[tuple[str, SignedHead]] = ()) -> AuditVerification:
        """The whole log against the stored heads, this server's head file and any ``trusted`` heads."""
        problems: list[str] = []
        kept: list[tuple[str, SignedHead]] = []
        try:
            file_head = self.file_head()
        except HeadFileError as exc:
            problems.append(f"the server's head file: {exc}")
        else:
            if file_head is not None:
                kept.append((f"the server's head file {self.path.name}", file_head))
        result = verify_log(self.audit.entries(limit=MAX_ENTRIES), self.audit.heads(), self.key.public_raw,
                            [*kept, *trusted])
        if problems:
            result = result.model_copy(update={"ok": False, "problems": [*problems, *result.problems]})
        return result
