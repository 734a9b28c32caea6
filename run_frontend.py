"""Serve the web UI and forward its API calls to the backend, so the browser talks to one origin.

`python run_frontend.py [--port P] [--backend URL]`; defaults from FRONTEND_PORT and SERVER_HOST/PORT.
Streams are forwarded chunk by chunk, so chat answers appear as they are generated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from backend.api.body_limit import BodyLimitMiddleware
from backend.api.http_protocol import slow_client_protocol
from backend.api.security_headers import PAGE_CSP, SecurityHeadersMiddleware
from backend.config import Settings, SettingsError, load_settings
from backend.logging_setup import configure_logging

FRONTEND_DIR = Path(__file__).resolve().parent / "frontend"
FORWARDED_PREFIXES = ("v1", "api", "health", "ready")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length", "host",
              "content-encoding"}
CLIENT_ADDRESS_HEADERS = {"x-forwarded-for", "x-forwarded-proto", "forwarded", "x-real-ip"}
"""Set by proxies to name the client. The API server trusts X-Forwarded-For from this server (loopback),
so what a browser sends in them is dropped and the real values are written instead."""
SERVER_OPTIONS: dict[str, Any] = {"log_config": None, "proxy_headers": False}
"""uvicorn options of the UI server. Browsers connect to it directly, so it trusts no proxy headers: with
uvicorn's default it would take a loopback caller's X-Forwarded-For as the caller's address."""


def create_frontend_app(
    backend_url: str,
    max_request_mb: int = Settings.model_fields["max_request_mb"].default,
    max_upload_mb: int = Settings.model_fields["max_upload_mb"].default,
) -> Starlette:
    client = httpx.AsyncClient(base_url=backend_url, timeout=httpx.Timeout(600, connect=5))

    async def forward(request: Request) -> StreamingResponse | JSONResponse:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in CLIENT_ADDRESS_HEADERS}
        # Failed sign-ins are counted per client address: it must be the caller's real one, not one it claims.
        if request.client:
            headers["x-forwarded-for"] = request.client.host
        headers["x-forwarded-proto"] = request.url.scheme
        upstream_request = client.build_request(
            request.method, request.url.path, params=request.query_params, headers=headers,
            content=await request.body(),
        )
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.TransportError as error:
            body = {"error": {"message": f"The API server at {backend_url} is not reachable: {error}",
                              "type": "service_unavailable_error", "param": None, "code": "backend_unreachable"}}
            return JSONResponse(body, status_code=502)

        async def body_chunks() -> AsyncIterator[bytes]:
            async for chunk in upstream.aiter_raw():
                yield chunk

        response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(body_chunks(), status_code=upstream.status_code, headers=response_headers,
                                 background=BackgroundTask(upstream.aclose))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route(f"/{prefix}{{path:path}}", forward, methods=methods) for prefix in FORWARDED_PREFIXES
    ]
    routes.append(Mount("/", StaticFiles(directory=FRONTEND_DIR, html=True)))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    middleware = [
        # The page's CSP allows its own script and stylesheet only; forwarded API answers keep the API's headers.
        Middleware(SecurityHeadersMiddleware, content_security_policy=PAGE_CSP),
        # Bodies are read whole before they are forwarded: bounded as the API server bounds them.
        Middleware(BodyLimitMiddleware, max_request_mb=max_request_mb, max_upload_mb=max_upload_mb),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Web UI for the local LLM server")
    parser.add_argument("--port", type=int, help="port (overrides FRONTEND_PORT)")
    parser.add_argument("--backend", help="API server URL (default: from SERVER_HOST/SERVER_PORT)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(**({"frontend_port": args.port} if args.port else {}))
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings)
    backend_url = args.backend or settings.backend_url()
    print(f"Web UI on http://{settings.server_host}:{settings.frontend_port} (API at {backend_url})", flush=True)
    app = create_frontend_app(backend_url, settings.max_request_mb, settings.max_upload_mb)
    uvicorn.run(app, host=settings.server_host, port=settings.frontend_port,
                http=slow_client_protocol(settings), **SERVER_OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
