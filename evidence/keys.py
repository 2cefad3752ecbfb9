"""The server's Ed25519 signing key, kept in the data directory (outside the store).

Generated on first start as a PEM file of mode 0600 (its folder 0700); a key file others may
read is refused, as ssh refuses one. A signature proves something only while the key is out of
reach of whoever could rewrite the store: keep the data directory (or ``FLIGHTREC_AUDIT_KEY``)
on a different trust footing than ClickHouse, and give every server process that appends to one
ClickHouse the same key file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

KEY_FILE = Path("keys") / "audit-ed25519.pem"


class KeyFileError(ValueError):
    """The key file cannot be used; the message says how to fix it."""


class PublicKey(BaseModel):
    """A public key as the API hands it out: PEM, raw base64, and its fingerprint (SHA-256 of the raw key, hex)."""

    algorithm: str = "Ed25519"
    pem: str
    raw_base64: str
    fingerprint: str


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def public_key_info(raw: bytes) -> PublicKey:
    pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return PublicKey(pem=pem, raw_base64=base64.b64encode(raw).decode(), fingerprint=fingerprint(raw))


def verify_signature(public_raw: bytes, message: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` (base64) is a valid Ed25519 signature of ``message`` by this key."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class SigningKey:
    """The private key in memory; :meth:`sign` returns base64."""

    def __init__(self, private: Ed25519PrivateKey, path: Path) -> None:
        self._private, self.path = private, path
        self.public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.fingerprint = fingerprint(self.public_raw)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._private.sign(message)).decode()

    def public(self) -> PublicKey:
        return public_key_info(self.public_raw)


def load_or_create(path: Path) -> SigningKey:
    """The key at ``path``, created (0600, folder 0700) when there is none; KeyFileError when unusable."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it a moment ago: use that one
            return load_or_create(path)
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        return SigningKey(private, path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"the audit signing key {path} may be read by others (mode {mode:o}); "
                        f"fix it with: chmod 600 {path}")
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"the audit signing key {path} is not an unencrypted PEM private key ({exc}); move it "
                        "away to have a new key made (heads signed with the old key then no longer verify)") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"the audit signing key {path} is not an Ed25519 key")
    return SigningKey(private, path)
