"""Building the FastAPI app (OTLP/HTTP + API), separate from starting a server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flightrec.collector.http import build_otlp_router
from flightrec import __version__
from flightrec.api import build_api_router
from flightrec.api.deps import get_pipeline
from flightrec.metrics import RequestLatency, RuntimeCollector
from flightrec.runtime import Runtime
from flightrec.safety import CloseOnErrorMiddleware
from flightrec.settings import Settings
from flightrec.store.engine import StoreError


def build_app(settings: Settings) -> FastAPI:
    """The app of one ``flightrec serve``: its runtime is started and stopped by the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings)
        runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            runtime.shutdown()

    # Swagger UI served from the package (fastapi-offline), so /docs works without internet; no ReDoc,
    # whose page loads its logo from an outside host.
    app = FastAPIOffline(
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},
        title="Flight Recorder",
        version=__version__,
        description="A flight recorder for autonomous AI agents: what happened, why, and based on what.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(lambda: getattr(app.state, "runtime", None)))
    app.add_middleware(RequestLatency, registry=registry)
    app.add_middleware(CloseOnErrorMiddleware)  # outermost: even a failed request is timed first

    @app.get("/metrics", summary="Prometheus metrics: intake, WAL, writer, quarantine, detectors, request latency",
             tags=["health"], response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    @app.exception_handler(StoreError)
    async def store_failed(_: Request, exc: StoreError) -> JSONResponse:
        """The store refused a statement: say which and why, as 503 when a retry may succeed."""
        reason = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        if exc.transient:
            return JSONResponse({"detail": f"the store cannot answer now, retry: {reason}"}, status_code=503,
                                headers={"Retry-After": "2"})
        return JSONResponse({"detail": f"the store refused this request: {reason}"}, status_code=500)

    app.include_router(build_otlp_router(get_pipeline))
    app.include_router(build_api_router())
    return app
