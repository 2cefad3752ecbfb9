"""Verifying an evidence bundle offline: nothing but the zip (and optionally a trusted key) is read.

Imports no store engine, no server, no HTTP client, and opens no socket: the hashing is
evidence/leaves.py's, the proofs evidence/merkle.py's, the checkpoint evidence/checkpoints.py's,
the audit entry hash store/audit.py's (pure functions). Every check that fails is a
:class:`BundleProblem` naming the file and the record (``trace:span``, ``audit:N``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from flightrec.evidence import bundle_models as names
from flightrec.evidence import leaves as canon
from flightrec.evidence.bundle_models import BundleProblem, BundleVerdict, Manifest
from flightrec.evidence.checkpoints import NoteError, open_checkpoint
from flightrec.evidence.keys import fingerprint, verify_signature
from flightrec.evidence.merkle import verify_inclusion
from flightrec.store.audit import AuditEntry, entry_hash

MAX_UNPACKED = 8 << 30  # a bundle that inflates beyond this is refused (a zip bomb is no bundle)
PROVES = [
    "inclusion: every span and audit entry that verified is, byte for byte, a record in the server's evidence log "
    "under the signed checkpoint (the record and content hashes, the leaf, the inclusion proof, the signed root)",
    "integrity: no file was changed, removed or added since the server signed the manifest",
]
DOES_NOT_PROVE = [
    "completeness: the server ran the queries listed in manifest.json at the generation time; the bundle cannot "
    "show that no span or entry matching the scope was left out (a later bundle's checkpoint can be checked for "
    "consistency with this one, GET /api/evidence/proofs/consistency, so the log itself was not rewritten)",
    f"the derived meaning ('{names.DERIVED_KEY}' in spans.jsonl), the stories, alerts, rollback plans and kill-switch "
    "states: signed by the manifest (made by the server), not proven from the leaves",
    "erased content: for a span whose content was erased, the record is proven, the erased content is not",
]


class Unreadable(ValueError):
    """Not a bundle at all (not a zip, no manifest): exit 2."""


def _raw_public(pem: bytes) -> bytes:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class _Check:
    """The verdict being built, and the bundle's files as read."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.verdict = BundleVerdict(ok=False, readable=True)

    def fail(self, file: str, problem: str, ref: str = "") -> None:
        self.verdict.problems.append(BundleProblem(file=file, ref=ref, problem=problem))

    def json(self, file: str) -> object | None:
        try:
            return json.loads(self.files[file])
        except KeyError:
            return None  # reported by the file check
        except ValueError as exc:
            self.fail(file, f"not valid JSON ({exc})")
            return None

    def lines(self, file: str) -> list[tuple[int, dict]]:
        out = []
        for number, text in enumerate(self.files.get(file, b"").splitlines(), start=1):
            try:
                line = json.loads(text)
            except ValueError as exc:
                self.fail(file, f"line {number} is not valid JSON ({exc})")
                continue
            if not isinstance(line, dict):
                self.fail(file, f"line {number} is not a JSON object")
                continue
            out.append((number, line))
        return out


def _read_zip(data: bytes, max_unpacked: int) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise Unreadable(f"not a zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        if sum(info.file_size for info in infos) > max_unpacked:
            raise Unreadable(f"the zip inflates to more than {max_unpacked:,} bytes: not an evidence bundle")
        seen = [info.filename for info in infos]
        if len(set(seen)) != len(seen):
            raise Unreadable("the zip holds two members with one name: a bundle never does (a reader could be "
                             "shown either)")
        files = {}
        for info in infos:
            try:
                files[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise Unreadable(f"{info.filename} cannot be read from the zip ({exc})") from None
    if names.MANIFEST not in files:
        raise Unreadable(f"no {names.MANIFEST}: not a Flight Recorder evidence bundle")
    return files


def _key(check: _Check, trusted_pem: bytes | None, trusted_fingerprint: str | None) -> bytes | None:
    """The public key the signatures are checked with: the trusted one, else the bundle's own."""
    verdict = check.verdict
    own = None
    try:
        own = _raw_public(check.files[names.PUBLIC_KEY])
    except KeyError:
        pass  # reported by the file check
    except ValueError as exc:
        check.fail(names.PUBLIC_KEY, f"not an Ed25519 public key in PEM ({exc})")
    if trusted_pem is not None:
        trusted = _raw_public(trusted_pem)
        verdict.key_source = "trusted key"
        if own is not None and own != trusted:
            check.fail(names.PUBLIC_KEY, f"the bundle's key ({fingerprint(own)[:16]}…) is not the trusted key "
                                         f"({fingerprint(trusted)[:16]}…): every signature is checked with the trusted one")
        verdict.key_fingerprint = fingerprint(trusted)
        return trusted
    if own is None:
        return None
    verdict.key_fingerprint = fingerprint(own)
    if trusted_fingerprint:
        verdict.key_source = "trusted fingerprint"
        if fingerprint(own) != trusted_fingerprint.strip().lower():
            check.fail(names.PUBLIC_KEY, f"the bundle's key has fingerprint {fingerprint(own)}, not the trusted "
                                         f"{trusted_fingerprint.strip().lower()}")
    else:
        verdict.key_source = "bundle"
        verdict.notes.append(
            f"only the bundle's own key was used: the signatures prove the bundle is consistent, not who made it; "
            f"compare its fingerprint {fingerprint(own)} with the one the server publishes at GET /api/evidence/key "
            "(or pass --fingerprint / --key)")
    return own


def signature_file(public_raw: bytes, signature_b64: str) -> bytes:
    """manifest.sig as the server writes it: the only form the verifier accepts (no byte of it is free)."""
    return json.dumps({"algorithm": "Ed25519", "key_fingerprint": fingerprint(public_raw),
                       "signature": signature_b64}, indent=2).encode()


def _manifest_signature(check: _Check, public: bytes | None) -> None:
    signature = check.json(names.MANIFEST_SIG)
    if signature is None or public is None:
        return
    given = str(signature.get("signature", "")) if isinstance(signature, dict) else ""
    if check.files[names.MANIFEST_SIG] != signature_file(public, given):
        check.fail(names.MANIFEST_SIG, "not the signature file of this key (algorithm, key fingerprint or form "
                                       "changed, or another key signed it)")
    elif not verify_signature(public, check.files[names.MANIFEST], given) or base64.b64encode(
            base64.b64decode(given)).decode() != given:
        check.fail(names.MANIFEST_SIG, "the signature over manifest.json does not verify with the key: manifest.json "
                                       "or manifest.sig was changed")


def _files(check: _Check, manifest: Manifest) -> None:
    listed = {entry.path: entry for entry in manifest.files}
    for path in sorted(set(check.files) - set(listed) - {names.MANIFEST, names.MANIFEST_SIG}):
        check.fail(path, "a file the manifest does not list (added)")
    for path, entry in sorted(listed.items()):
        data = check.files.get(path)
        if data is None:
            check.fail(path, "listed in the manifest but missing from the bundle (removed)")
        elif hashlib.sha256(data).hexdigest() != entry.sha256 or len(data) != entry.bytes:
            check.fail(path, f"changed: SHA-256 {hashlib.sha256(data).hexdigest()[:16]}… ({len(data):,} bytes), the "
                             f"manifest says {entry.sha256[:16]}… ({entry.bytes:,} bytes)")
    if names.MANIFEST_SIG not in check.files:
        check.fail(names.MANIFEST_SIG, "missing: the manifest is not signed")
    check.verdict.files_checked = len(listed)


def _proven(check: _Check, file: str, ref: str, proof: object, leaf: bytes, size: int, root: bytes | None) -> bool:
    """Whether ``proof`` (from proofs.json) takes this leaf hash to the checkpoint root; a problem if not."""
    if not isinstance(proof, dict):
        check.fail(names.PROOFS, "no inclusion proof for this record", ref)
        return False
    try:
        index, path = int(proof["leaf_index"]), [bytes.fromhex(node) for node in proof["path"]]
    except (KeyError, TypeError, ValueError) as exc:
        check.fail(names.PROOFS, f"the inclusion proof is malformed ({exc})", ref)
        return False
    if leaf.hex() != proof.get("leaf_hash"):
        check.fail(file, f"the record hashes to leaf {leaf.hex()[:16]}…, the proof is for leaf "
                         f"{str(proof.get('leaf_hash'))[:16]}…", ref)
        return False
    if root is None or not verify_inclusion(leaf, index, size, path, root):
        check.fail(names.PROOFS, f"the inclusion proof of leaf {index} does not lead to the signed checkpoint's root", ref)
        return False
    return True


def _audit(check: _Check, proofs: dict, size: int, root: bytes | None) -> dict[int, AuditEntry]:
    """Each audit entry re-hashed (store/audit.py's hash) and proven; the proven ones by number."""
    proven: dict[int, AuditEntry] = {}
    for number, line in check.lines(names.AUDIT):
        try:
            entry = AuditEntry.model_validate(line)
        except ValidationError as exc:
            check.fail(names.AUDIT, f"line {number} is not an audit entry ({exc.errors()[0]['msg']})")
            continue
        ref = f"audit:{entry.seq}"
        check.verdict.audit_checked += 1
        try:
            recomputed = entry_hash(entry.seq, entry.time, entry.actor, entry.act, entry.subject, entry.details,
                                    entry.prev_hash, entry.format)
        except ValueError as exc:
            check.fail(names.AUDIT, str(exc), ref)
            continue
        if recomputed != entry.hash:
            check.fail(names.AUDIT, "the entry does not match its hash (altered)", ref)
            continue
        leaf = canon.leaf_hash(canon.audit_leaf_data(entry.seq, entry.hash))
        if _proven(check, names.AUDIT, ref, proofs.get(str(entry.seq)), leaf, size, root):
            proven[entry.seq] = entry
    return proven


def _erasure_of(check: _Check, audit: dict[int, AuditEntry]) -> Callable[[str, str, str, str], str | None]:
    """A lookup: the sentence for a span whose changed content the bundle's erasures account for, else None.

    Accounted for: the span's erasures (oldest first) start from the leaf's content hash and end at
    the content as exported, and each one's ``erasure.apply`` audit entry is in the bundle and proven."""
    erased: dict[tuple[str, str], list[dict]] = {}
    for _, line in check.lines(names.ERASURES):
        erased.setdefault((str(line.get("trace_id")), str(line.get("span_id"))), []).append(line)

    def lookup(trace: str, span: str, leaf_content: str, content: str) -> str | None:
        records = erased.get((trace, span), [])
        if not records or records[0].get("prior_content_hash") != leaf_content:
            return None
        if records[-1].get("content_hash", content) != content:
            return None
        for record in records:
            entry = audit.get(int(record.get("audit_seq") or 0))
            if entry is None or entry.act != "erasure.apply" or entry.details.get(
                    "request_id", record.get("request_id")) != record.get("request_id"):
                return None
        last = records[-1]
        return (f"content erased on {str(last.get('erased_at'))[:10]} (request {last.get('request_id')}): the record "
                "is proven, the erased content is not")

    return lookup


def _spans(check: _Check, proofs: dict, size: int, root: bytes | None, erasure: Callable) -> list[dict]:
    lines, seen = [], set()
    for number, line in check.lines(names.SPANS_JSONL):
        try:
            source = canon.SpanSource(**{field: line[field] for field in canon.SpanSource._fields})
            record, content = canon.span_hashes(source)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            check.fail(names.SPANS_JSONL, f"line {number} is not a stored span ({type(exc).__name__}: {exc})")
            continue
        lines.append(line)
        ref = f"{source.trace_id}:{source.span_id}"
        if ref in seen:
            check.fail(names.SPANS_JSONL, f"line {number}: the span is in the file twice", ref)
            continue
        seen.add(ref)
        check.verdict.spans_checked += 1
        proof = proofs.get(ref)
        if not isinstance(proof, dict):
            check.fail(names.PROOFS, "no inclusion proof for this span", ref)
            continue
        if record != proof.get("record_hash"):
            check.fail(names.SPANS_JSONL, f"line {number}: the span's record (ids, name, kind, service, scope, "
                                          "status, times) does not hash to the leaf's record hash (changed)", ref)
            continue
        if content != proof.get("content_hash"):
            why = erasure(source.trace_id, source.span_id, str(proof.get("content_hash")), content)
            if why is None:
                check.fail(names.SPANS_JSONL, f"line {number}: the span's content (attributes, resource, events, "
                                              "links) does not hash to the leaf's content hash (changed), and no "
                                              "erasure with a proven audit entry accounts for it", ref)
                continue
            check.verdict.erased.append(f"{ref}: {why}")
            content = str(proof.get("content_hash"))
        leaf = canon.leaf_hash(canon.span_leaf_data(source.trace_id, source.span_id, record, content))
        _proven(check, names.SPANS_JSONL, ref, proof, leaf, size, root)
    return lines


def _plain(value: object) -> object:
    """A Parquet value as JSON reads it (maps come back as lists of pairs)."""
    if isinstance(value, list) and value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _parquet(check: _Check, lines: list[dict]) -> None:
    data = check.files.get(names.SPANS_PARQUET)
    if data is None:
        return
    import pyarrow as pa  # the one check that needs pyarrow: ~0.15 s of a fresh process (numpy with it)
    import pyarrow.parquet as pq

    # One file read on this thread from an Arrow buffer: read_table would import pyarrow.dataset and pandas
    # (~0.5 s more), and over a Python file object it leaves Arrow threads that take the GIL at interpreter
    # exit (apache/arrow#33975: a crash at exit; the flaky SIGABRT of `flightrec verify`).
    try:
        rows = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False).to_pylist()
    except Exception as exc:  # pyarrow raises many kinds on a damaged file
        check.fail(names.SPANS_PARQUET, f"not a readable Parquet file ({type(exc).__name__}: {exc})")
        return
    if len(rows) != len(lines):
        check.fail(names.SPANS_PARQUET, f"{len(rows):,} rows, spans.jsonl has {len(lines):,} spans")
    for number, (row, line) in enumerate(zip(rows, lines), start=1):
        plain = {key: _plain(value) for key, value in row.items()}
        empty = {key: {} for key in ("attributes", "resource") if plain.get(key) == []}
        plain.update(empty)
        plain["event_attributes"] = [item or {} for item in plain.get("event_attributes") or []]
        plain["link_attributes"] = [item or {} for item in plain.get("link_attributes") or []]
        if plain != line:
            fields = sorted(key for key in set(plain) | set(line) if plain.get(key) != line.get(key))
            check.fail(names.SPANS_PARQUET, f"row {number} differs from spans.jsonl in {', '.join(fields)}",
                       f"{line.get('trace_id')}:{line.get('span_id')}")


def verify_bundle(data: bytes, *, trusted_pem: bytes | None = None, trusted_fingerprint: str | None = None,
                  max_unpacked: int = MAX_UNPACKED) -> BundleVerdict:
    """Check a bundle (the zip's bytes); ``trusted_pem`` / ``trusted_fingerprint``: the key it must be signed by."""
    try:
        files = _read_zip(data, max_unpacked)
    except Unreadable as exc:
        return BundleVerdict(ok=False, readable=False, problems=[BundleProblem(file="", problem=str(exc))])
    check = _Check(files)
    verdict = check.verdict
    verdict.does_not_prove = DOES_NOT_PROVE
    try:
        manifest = Manifest.model_validate_json(files[names.MANIFEST])
    except ValidationError as exc:
        check.fail(names.MANIFEST, f"not a bundle manifest ({exc.errors()[0]['msg']}): nothing else can be checked")
        return verdict
    verdict.bundle_id, verdict.generated_at, verdict.exported_by = (manifest.bundle_id, manifest.generated_at,
                                                                    manifest.exported_by)
    verdict.scope = manifest.scope
    public = _key(check, trusted_pem, trusted_fingerprint)
    _manifest_signature(check, public)
    _files(check, manifest)
    size, root = manifest.checkpoint.size, None
    note = files.get(names.CHECKPOINT_NOTE, b"").decode("utf-8", "replace")
    if public is not None and note:
        try:
            opened = open_checkpoint(note, public)
            size, root = opened.size, opened.root
        except NoteError as exc:
            check.fail(names.CHECKPOINT_NOTE, str(exc))
    if root is not None and (size != manifest.checkpoint.size or root.hex() != manifest.checkpoint.root_hash):
        check.fail(names.CHECKPOINT_NOTE, f"the signed checkpoint (size {size}, root {root.hex()[:16]}…) is not the "
                                          f"one the manifest names (size {manifest.checkpoint.size})")
    verdict.checkpoint_size, verdict.checkpoint_root = size, root.hex() if root else ""
    proofs = check.json(names.PROOFS)
    proofs = proofs if isinstance(proofs, dict) else {}
    audit = _audit(check, proofs.get("audit") or {}, size, root)
    lines = _spans(check, proofs.get("spans") or {}, size, root, _erasure_of(check, audit))
    _parquet(check, lines)
    if manifest.counts.spans != len(lines) or manifest.counts.audit_entries != verdict.audit_checked:
        check.fail(names.MANIFEST, f"the manifest counts {manifest.counts.spans:,} spans and "
                                   f"{manifest.counts.audit_entries:,} audit entries; the bundle holds {len(lines):,} "
                                   f"and {verdict.audit_checked:,}")
    verdict.ok = not verdict.problems
    verdict.proves = PROVES if verdict.ok else [
        "nothing, as a whole: the problems above must be explained first (records that verified are still each "
        "proven)"]
    if manifest.warnings:
        verdict.notes += [f"the server warned: {warning}" for warning in manifest.warnings]
    return verdict
