"""The app factory: middleware, error mapping and routers; services come from the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from backend.api import (
    admin_router,
    auth_router,
    chat_router,
    embeddings_router,
    files_router,
    health_router,
    models_router,
    sessions_router,
    tools_router,
)
from backend.api.body_limit import BodyLimitMiddleware
from backend.api.deps import get_rate_limited_user
from backend.api.errors import install_error_handlers
from backend.api.security_headers import DOCS_PATHS, SecurityHeadersMiddleware
from backend.bootstrap import build_services
from backend.config import Settings, load_settings
from backend.logging_setup import configure_logging
from backend.metrics import Metrics, MetricsMiddleware


class _App(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware (which add_middleware cannot reach), so that
        # 500s get the security headers too. /docs and /redoc load Swagger UI and ReDoc from a CDN.
        return SecurityHeadersMiddleware(super().build_middleware_stack(), csp_by_path=DOCS_PATHS)


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

    app = _App(title="Local agentic LLM server", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    # Innermost: its 413s still pass CORS (so browsers can read them) and the metrics.
    app.add_middleware(
        BodyLimitMiddleware, max_request_mb=settings.max_request_mb, max_upload_mb=settings.max_upload_mb
    )
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
    # Every /v1/* route: signed in (token or API key) and within the per-user rate limit.
    signed_in_v1 = [Depends(get_rate_limited_user)]
    app.include_router(models_router.router, dependencies=signed_in_v1)
    app.include_router(chat_router.router, dependencies=signed_in_v1)
    app.include_router(embeddings_router.router, dependencies=signed_in_v1)
    app.include_router(auth_router.router)
    app.include_router(admin_router.router)
    app.include_router(sessions_router.router)
    app.include_router(tools_router.router)
    app.include_router(files_router.router)
    return app


def create_app_from_env() -> FastAPI:
    """For `uvicorn backend.app:create_app_from_env --factory --workers N`: each worker reads the settings."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)
