"""Dependencies: handlers reach the runtime's parts and the caller's identity through these."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

from collector import IngestPipeline
from flightrec.runtime import Runtime
from rollback import KillSwitches, RollbackService
from store import Store


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the server is starting or stopping")
    return runtime


def get_store(request: Request) -> Store:
    store = get_runtime(request).store
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the store is not open")
    return store


def get_pipeline(request: Request) -> IngestPipeline:
    pipeline = get_runtime(request).pipeline
    if pipeline is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "intake is not running")
    return pipeline


def get_rollback(request: Request) -> RollbackService:
    service = get_runtime(request).rollback
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "rollback is not running")
    return service


def get_switches(request: Request) -> KillSwitches:
    switches = get_runtime(request).switches
    if switches is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "kill switches are not running")
    return switches


def require_api_token(request: Request) -> None:
    """When an API token is configured, every /api route needs ``Authorization: Bearer <token>``."""
    token = request.app.state.settings.api_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token.get_secret_value()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API token: send Authorization: Bearer <FLIGHTREC_API_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
