"""The /api routes. Auth is a router dependency, so no handler can forget it."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from flightrec.api import health, objects, traces
from flightrec.api.deps import require_api_token
from flightrec.settings import Settings


def build_api_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(require_api_token)])
    for module in (health, traces, objects):
        router.include_router(module.router)
    return router
