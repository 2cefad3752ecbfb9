"""The shapes of an evidence bundle: the export scope, the preview, the manifest, the verifier's verdict.

One module that the API (flightrec/api/exports.py), the builder (evidence/bundle.py), the
offline verifier (evidence/bundle_verify.py) and the dashboards' Evidence page all read, so the
routes and the files keep one set of field names. Pure pydantic: the verifier imports it offline.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

BUNDLE_FORMAT = "flightrec.evidence.bundle.v1"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"
# Every file a bundle holds besides the stories (stories/<type>_<id>.html); the manifest lists all
# but itself and its signature.
SPANS_JSONL, SPANS_PARQUET, PROOFS, CHECKPOINT_NOTE, PUBLIC_KEY = (
    "spans.jsonl", "spans.parquet", "proofs.json", "checkpoint.note", "public-key.pem")
AUDIT, ALERTS, PLANS, CONTROLS, ERASURES, README = (
    "audit.jsonl", "alerts.jsonl", "rollback_plans.jsonl", "controls.jsonl", "erasures.jsonl", "README.txt")
STORIES_DIR = "stories/"
DERIVED_KEY = "derived_not_proven"  # a spans.jsonl line's derived meaning: signed by the manifest only


def parse_moment(value: object) -> object:
    """An ISO 8601 date or date-time (``2026-07-01``, ``2026-07-01T00:00:00Z``) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-07-01 or "
                             "2026-07-01T00:00:00Z)") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


class ExportScope(BaseModel):
    """What goes in a bundle. Filters combine by intersection: the traces linked to the object (or to
    objects of the type), that the agent has a span in, and of those the spans that started in
    [since, until)."""

    object: str | None = Field(default=None, description="one business object, TYPE:ID")
    object_type: str | None = Field(default=None, max_length=256, description="every object of this type")
    agent: str | None = Field(default=None, max_length=256, description="the traces this agent has spans in")
    since: datetime | None = Field(default=None, description="spans that started at or after this time (UTC)")
    until: datetime | None = Field(default=None, description="spans that started before this time (UTC)")

    @field_validator("since", "until", mode="before")
    @classmethod
    def _moment(cls, value: object) -> object:
        return parse_moment(value)

    @field_validator("object", "object_type", "agent", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return value.strip() or None if isinstance(value, str) else value

    @model_validator(mode="after")
    def _coherent(self) -> ExportScope:
        if not any((self.object, self.object_type, self.agent, self.since, self.until)):
            raise ValueError("name a scope: object (TYPE:ID), object_type, agent, or a time window (since, until)")
        if self.object is not None:
            kind, sep, ident = self.object.partition(":")
            if not sep or not kind.strip() or not ident.strip():
                raise ValueError(f"object {self.object!r} is not of the form TYPE:ID (e.g. invoice:INV-1001)")
            kind = kind.strip().lower()
            if self.object_type and self.object_type.lower() != kind:
                raise ValueError(f"object {self.object!r} is not of object_type {self.object_type!r}: give one")
            self.object, self.object_type = f"{kind}:{ident.strip()}", kind
        elif self.object_type is not None:
            self.object_type = self.object_type.lower()
        if self.since and self.until and self.since >= self.until:
            raise ValueError(f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})")
        return self

    @property
    def object_id(self) -> str:
        return self.object.partition(":")[2] if self.object else ""


class ExportCounts(BaseModel):
    spans: int = 0
    traces: int = 0
    objects: int = 0
    audit_entries: int = 0
    alerts: int = 0
    plans: int = 0
    executions: int = Field(default=0, description="steps of those plans that were run (attempted)")
    controls: int = Field(default=0, description="kill-switch states and changes of the agents in scope")
    erasures: int = 0


class ScopeQuery(BaseModel):
    """One statement the server ran to fill the bundle: its name (the store function), what it
    selects, and its bound parameters."""

    name: str
    selects: str
    parameters: dict[str, str | int | list[str] | list[int]]


class ExportPreview(BaseModel):
    """What an export of this scope would hold, before building it."""

    scope: ExportScope
    counts: ExportCounts
    objects: list[str] = Field(description="the first 50 objects in scope, type:id")
    queries: list[ScopeQuery]
    warnings: list[str]


class ManifestFile(BaseModel):
    path: str
    sha256: str
    bytes: int


class ManifestCheckpoint(BaseModel):
    """The one signed checkpoint every proof in the bundle is against."""

    size: int
    root_hash: str
    origin: str
    key_fingerprint: str
    signed_at: datetime


class Manifest(BaseModel):
    """manifest.json: signed by the server key (manifest.sig); the files that are no leaves (stories,
    alerts, plans, controls, derived meaning) are protected by this signature only."""

    format: str = BUNDLE_FORMAT
    bundle_id: str
    scope: ExportScope
    queries: list[ScopeQuery]
    counts: ExportCounts
    software_version: str
    generated_at: datetime
    exported_by: str
    checkpoint: ManifestCheckpoint
    stories: dict[str, int] = Field(description="rendered, in_scope, limit: stories beyond the limit are left out")
    warnings: list[str]
    files: list[ManifestFile]


class BundleProblem(BaseModel):
    """One thing that does not verify: the file, the record in it (``trace:span``, ``audit:N``), why."""

    file: str
    ref: str = ""
    problem: str


class BundleVerdict(BaseModel):
    """What ``flightrec verify bundle.zip`` (and POST /api/evidence/bundles/verify) found."""

    ok: bool
    readable: bool = Field(description="false: not a bundle at all (exit 2)")
    bundle_id: str = ""
    generated_at: datetime | None = None
    exported_by: str = ""
    scope: ExportScope | None = None
    key_fingerprint: str = ""
    key_source: Literal["trusted key", "trusted fingerprint", "bundle", ""] = ""
    checkpoint_size: int = 0
    checkpoint_root: str = ""
    files_checked: int = 0
    spans_checked: int = 0
    audit_checked: int = 0
    erased: list[str] = Field(default_factory=list, description="spans whose content was erased, and when")
    problems: list[BundleProblem] = Field(default_factory=list)
    proves: list[str] = Field(default_factory=list)
    does_not_prove: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
