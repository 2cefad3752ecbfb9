"""Building the FastAPI app (OTLP/HTTP + API), separate from starting a server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from collector.http import build_otlp_router
from flightrec import __version__
from flightrec.api import build_api_router
from flightrec.api.deps import get_pipeline
from flightrec.runtime import Runtime
from flightrec.safety import CloseOnErrorMiddleware
from flightrec.settings import Settings


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

    app = FastAPI(
        title="Flight Recorder",
        version=__version__,
        description="A flight recorder for autonomous AI agents: what happened, why, and based on what.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(CloseOnErrorMiddleware)
    app.include_router(build_otlp_router(get_pipeline))
    app.include_router(build_api_router())
    return app
