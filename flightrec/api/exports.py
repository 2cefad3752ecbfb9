"""Evidence bundles: preview a scope, export it as a signed zip (audited), verify an uploaded bundle offline."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from flightrec.api.deps import get_audit_heads, get_sequencer, get_store
from flightrec.api.evidence import as_http
from flightrec.auth import principal_of
from flightrec.evidence import bundle
from flightrec.evidence.audit_heads import HeadKeeper
from flightrec.evidence.bundle_models import BundleVerdict, ExportPreview, ExportScope
from flightrec.evidence.bundle_verify import verify_bundle
from flightrec.evidence.sequencer import Sequencer
from flightrec.store import Store

router = APIRouter(tags=["evidence"])
SCOPE_ERRORS = {404: {"description": "the object, object type or agent named is not in the store (close names given)"},
                413: {"description": "the scope holds more spans than FLIGHTREC_EXPORT_MAX_SPANS"},
                422: {"description": "no scope, a malformed object, unparseable times, since >= until"}}


@router.post("/evidence/exports/preview", summary="What an evidence bundle of this scope would hold",
             response_model=ExportPreview, responses=SCOPE_ERRORS)
def preview(scope: ExportScope, request: Request, store: Store = Depends(get_store)) -> ExportPreview:
    return as_http(lambda: bundle.preview(store, scope, request.app.state.settings.export_max_spans))


@router.post("/evidence/exports", summary="Export an evidence bundle (zip): spans, proofs, stories, signed "
             "manifest; audited", response_class=Response,
             responses={200: {"content": {"application/zip": {}}, "description": "the bundle"}, **SCOPE_ERRORS})
def export(scope: ExportScope, request: Request, store: Store = Depends(get_store),
           sequencer: Sequencer = Depends(get_sequencer), keeper: HeadKeeper = Depends(get_audit_heads)) -> Response:
    settings, who = request.app.state.settings, principal_of(request).name
    made = as_http(lambda: bundle.build(store, sequencer, keeper.key, scope, exported_by=who,
                                         max_spans=settings.export_max_spans, max_stories=settings.export_max_stories))
    store.audit.append(actor=who, act="evidence.export", subject=f"bundle:{made.bundle_id}", details={
        "bundle_id": made.bundle_id, "scope": scope.model_dump_json(exclude_none=True),
        "counts": json.dumps(made.manifest.counts.model_dump(), sort_keys=True),
        "manifest_sha256": made.manifest_sha256})
    return Response(made.data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="flightrec-evidence-{made.bundle_id}.zip"',
        "X-Flightrec-Bundle-Id": made.bundle_id})


@router.post("/evidence/bundles/verify", summary="Verify an uploaded evidence bundle (the offline verifier; "
             "nothing is read from the store)", response_model=BundleVerdict,
             responses={400: {"description": "not a zip / not a bundle"},
                        413: {"description": "larger than FLIGHTREC_BUNDLE_VERIFY_MAX_BYTES"}})
async def verify(request: Request) -> BundleVerdict:
    limit = request.app.state.settings.bundle_verify_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the bundle is {int(declared):,} bytes, more than FLIGHTREC_BUNDLE_VERIFY_MAX_BYTES "
                                 f"({limit:,}): verify it with `flightrec verify bundle.zip`")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the bundle is more than FLIGHTREC_BUNDLE_VERIFY_MAX_BYTES ({limit:,} bytes): "
                                     "verify it with `flightrec verify bundle.zip`")
    if not body:
        raise HTTPException(400, "the request body is empty: send the bundle's zip as the body (application/zip)")
    verdict = await run_in_threadpool(verify_bundle, bytes(body), max_unpacked=max(limit * 40, 1 << 30))
    if not verdict.readable:
        raise HTTPException(400, f"not an evidence bundle: {verdict.problems[0].problem}")
    return verdict
