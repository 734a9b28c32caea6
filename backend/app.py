"""The app factory: middleware, error mapping and routers; services come from the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from backend.api import chat_router, health_router, models_router
from backend.api.errors import install_error_handlers
from backend.bootstrap import build_services
from backend.config import Settings
from backend.metrics import Metrics, MetricsMiddleware


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings, metrics)
        app.state.services = services
        try:
            yield
        finally:
            await services.aclose()

    app = FastAPI(title="Local agentic LLM server", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials="*" not in settings.cors_origins,
            allow_methods=["*"],
            # The JS SDK sends x-stainless-*, OpenAI-Organization, OpenAI-Project…: allow any header.
            allow_headers=["*"],
            expose_headers=["X-Session-Id", "Retry-After"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(health_router.router)
    app.include_router(models_router.router)
    app.include_router(chat_router.router)
    return app
