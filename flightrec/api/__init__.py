"""The /api routes. Auth is a router dependency, so no handler can forget it.

``/api/health`` alone is open: load balancers and container health checks probe it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from flightrec.api import (
    alerts,
    audit,
    controls,
    erasures,
    evidence,
    exports,
    health,
    holds,
    links,
    objects,
    principals,
    quarantine,
    rollback,
    rules,
    search,
    stats,
    systems,
    traces,
)
from flightrec.auth import authorize


def build_api_router() -> APIRouter:
    router = APIRouter(prefix="/api")
    router.include_router(health.router)
    protected = APIRouter(dependencies=[Depends(authorize)])
    for module in (stats, traces, objects, search, rollback, controls, audit, alerts, quarantine, systems, links,
                   rules, principals, evidence, holds, erasures, exports):
        protected.include_router(module.router)
    router.include_router(protected)
    return router
