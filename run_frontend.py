"""Serve the web UI and forward its API calls to the backend, so the browser talks to one origin.

`python run_frontend.py [--port P] [--backend URL] [--with-backend]`; defaults from FRONTEND_PORT and
SERVER_HOST/PORT. Streams are forwarded chunk by chunk, so chat answers appear as they are generated.
With `--with-backend` (what `make run` does) it also starts `run_backend.py` as its child and owns it:
Ctrl-C or SIGTERM stops both and exits 0; if the API server dies, the UI says so and stops too.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
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
from backend.process_lifetime import stop_when_parent_dies
from backend.storage.layout import DataLayout

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
    frontend_dir: Path = FRONTEND_DIR,
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
    # `/api` and `/api/...`, never `/api.js`: a page file whose name begins like a prefix stays the page's.
    routes: list[BaseRoute] = [
        Route(path, forward, methods=methods)
        for prefix in FORWARDED_PREFIXES for path in (f"/{prefix}", f"/{prefix}/{{path:path}}")
    ]
    routes.append(Mount("/", StaticFiles(directory=frontend_dir, html=True)))

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


class ApiServerChild:
    """`run_backend.py` as a child of the UI server: started first, watched, stopped last.

    It runs in its own session, so a Ctrl-C reaches this process only and the two stop in order (the UI
    first, then the API server it forwards to); the kernel stops it too should this process be killed.
    """

    STOP_TIMEOUT_S = 30

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parent / "run_backend.py")],
            start_new_session=True, preexec_fn=stop_when_parent_dies,
        )

    def wait_until_healthy(self, stop_requested: threading.Event, timeout_s: float = 600) -> bool:
        """True once /health answers; False if the child exits, a stop is asked for, or it takes too long."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stop_requested.is_set() and self.process.poll() is None:
            try:
                if httpx.get(f"{self.settings.backend_url()}/health", timeout=2).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            stop_requested.wait(0.2)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _watch_stop_signals() -> threading.Event:
    """SIGINT and SIGTERM set the event instead of raising. uvicorn handles them while it serves and raises
    them again after its shutdown; landing here, they end the program with exit 0 rather than a traceback."""
    stop_requested = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop_requested.set())
    return stop_requested


def _serve_with_backend(settings: Settings, server: uvicorn.Server) -> int:
    stop_requested = _watch_stop_signals()
    child = ApiServerChild(settings)
    try:
        if not child.wait_until_healthy(stop_requested):
            if stop_requested.is_set():
                return 0
            print(f"The API server did not start (exit code {child.process.poll()}); see its log above.",
                  file=sys.stderr, flush=True)
            return 1
        died = threading.Event()

        def watch_child() -> None:
            code = child.process.wait()
            if not server.should_exit and not stop_requested.is_set():
                print(f"The API server stopped (exit code {code}); stopping the web UI.", file=sys.stderr, flush=True)
                died.set()
                server.should_exit = True

        def watch_stop_request() -> None:  # a signal that came before uvicorn took over its handling
            stop_requested.wait()
            server.should_exit = True

        threading.Thread(target=watch_child, daemon=True).start()
        threading.Thread(target=watch_stop_request, daemon=True).start()
        threading.Thread(target=_announce_once_serving, args=(settings, server), daemon=True).start()
        server.run()
        return 1 if died.is_set() else 0
    finally:
        child.stop()


def _announce_once_serving(settings: Settings, server: uvicorn.Server) -> None:
    """The address to open, printed once the UI server listens (not before: the page would not load yet)."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    password_file = DataLayout(settings.data_dir).initial_admin_password_file
    print(f"Open http://{settings.local_host()}:{settings.frontend_port} in a browser.", flush=True)
    if password_file.exists():
        print(f"First sign-in: user '{settings.admin_username}', password in {password_file}", flush=True)
    print("Stop both servers with Ctrl-C.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Web UI for the local LLM server")
    parser.add_argument("--port", type=int, help="port (overrides FRONTEND_PORT)")
    parser.add_argument("--backend", help="API server URL (default: from SERVER_HOST/SERVER_PORT)")
    parser.add_argument("--with-backend", action="store_true",
                        help="also start the API server (run_backend.py) and stop it with this one")
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
    server = uvicorn.Server(uvicorn.Config(app, host=settings.server_host, port=settings.frontend_port,
                                           http=slow_client_protocol(settings), **SERVER_OPTIONS))
    if args.with_backend:
        return _serve_with_backend(settings, server)
    _watch_stop_signals()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
