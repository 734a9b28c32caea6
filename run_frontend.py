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
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from backend.config import SettingsError, load_settings
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


def create_frontend_app(backend_url: str) -> Starlette:
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

    return Starlette(routes=routes, lifespan=lifespan)


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
    uvicorn.run(create_frontend_app(backend_url), host=settings.server_host, port=settings.frontend_port,
                **SERVER_OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
