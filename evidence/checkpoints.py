"""Signed checkpoints of the evidence log, in the C2SP signed-note checkpoint format.

A checkpoint (https://c2sp.org/tlog-checkpoint) is a note whose text is three lines::

    <origin>
    <tree size, decimal>
    <root hash, base64>

signed as a C2SP signed note (https://c2sp.org/signed-note): a blank line, then one line per
signature, ``— <key name> <base64(key id || signature)>``, where the signature is Ed25519 over
the note text (every line with its newline) and the key id is the first 4 bytes of
``SHA-256(key name || 0x0A || 0x01 || raw public key)`` (0x01: the Ed25519 signature type). Any
tool that reads checkpoints (Go's golang.org/x/mod/sumdb/note, sigsum, transparency-dev) can
check one with the public key from ``GET /api/evidence/key``.

The origin and key name are ``flightrec/<first 16 hex digits of the key's fingerprint>``: the
same for every server process that shares the key file (as the audit log's heads require).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from flightrec.evidence.keys import SigningKey, fingerprint
from flightrec.store.evidence_log import StoredCheckpoint

ED25519_TYPE = b"\x01"
DASH = "\u2014"


class Checkpoint(BaseModel):
    """A checkpoint as the API answers it: size, root (hex), the signed note, when it was signed."""

    origin: str
    size: int
    root_hash: str
    time: datetime
    key_id: str
    note: str

    @classmethod
    def of(cls, stored: StoredCheckpoint) -> "Checkpoint":
        return cls(origin=stored.origin, size=stored.size, root_hash=stored.root_hash, time=stored.time,
                   key_id=stored.key_id, note=stored.note)


class NoteError(ValueError):
    """A note that is not a checkpoint signed by the expected key; the message says what is wrong."""


def key_name(public_raw: bytes) -> str:
    return f"flightrec/{fingerprint(public_raw)[:16]}"


def key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + public_raw).digest()[:4]


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def sign_checkpoint(key: SigningKey, size: int, root: bytes, moment: datetime | None = None) -> StoredCheckpoint:
    """Sign the tree of ``size`` leaves with ``root``: the stored row, its note included."""
    name = key_name(key.public_raw)
    text = checkpoint_text(name, size, root)
    signature = base64.b64decode(key.sign(text.encode()))
    line = f"{DASH} {name} {base64.b64encode(key_id(name, key.public_raw) + signature).decode()}\n"
    return StoredCheckpoint(size=size, root_hash=root.hex(), time=moment or datetime.now(tz=timezone.utc),
                            origin=name, key_id=key.fingerprint, note=f"{text}\n{line}")


class OpenedCheckpoint(BaseModel):
    origin: str
    size: int
    root: bytes


def open_checkpoint(note: str, public_raw: bytes) -> OpenedCheckpoint:
    """Parse a signed checkpoint note and check its signature by this key; NoteError saying why not."""
    text, separator, signatures = note.partition("\n\n")
    if not separator:
        raise NoteError("not a signed note: no blank line between the text and the signatures")
    text += "\n"
    lines = text.split("\n")
    if len(lines) < 4:
        raise NoteError("not a checkpoint: the text needs an origin, a tree size and a root hash line")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise NoteError(f"not a checkpoint: tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as exc:
        raise NoteError(f"not a checkpoint: root hash {root_text!r} is not base64") from exc
    name = key_name(public_raw)
    wanted = key_id(name, public_raw)
    public = Ed25519PublicKey.from_public_bytes(public_raw)
    for line in signatures.splitlines():
        dash, _, rest = line.partition(" ")
        signer, _, blob = rest.partition(" ")
        if dash != DASH or signer != name:
            continue
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:
            continue
        if len(raw) != 68 or raw[:4] != wanted:
            continue
        try:
            public.verify(raw[4:], text.encode())
        except InvalidSignature:
            raise NoteError(f"the signature by {name} does not match the checkpoint text") from None
        return OpenedCheckpoint(origin=origin, size=int(size_text), root=root)
    raise NoteError(f"no signature by {name} (key id {struct.unpack('>I', wanted)[0]:08x}) on the note")
