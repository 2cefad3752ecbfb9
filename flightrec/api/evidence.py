"""Evidence: the public key that checks what this server signed (audit heads; checkpoints, issue 11)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from flightrec.api.deps import get_audit_heads
from flightrec.evidence.audit_heads import HeadKeeper
from flightrec.evidence.keys import PublicKey

router = APIRouter(tags=["evidence"])


@router.get("/evidence/key", summary="The server's Ed25519 public key (PEM, raw base64, fingerprint)",
            response_model=PublicKey)
def evidence_key(keeper: HeadKeeper = Depends(get_audit_heads)) -> PublicKey:
    return keeper.key.public()
