"""Security headers on every response: no MIME sniffing, no referrer, no framing, a strict CSP.

Pure ASGI (BaseHTTPMiddleware would break client-disconnect detection in streams). Headers a
response already carries win, so the UI server can forward the API's own headers unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from backend.metrics import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'"
"""JSON needs nothing: no scripts, styles, frames or fetches from an API response."""

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The web UI (`frontend/`): its own script and stylesheet only; it has no inline scripts or styles."""

DOCS_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
"""FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a CDN and start it with an inline script."""

DOCS_PATHS: Mapping[str, str] = {"/docs": DOCS_CSP, "/docs/oauth2-redirect": DOCS_CSP, "/redoc": DOCS_CSP}

COMMON_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


def security_headers(content_security_policy: str) -> list[tuple[bytes, bytes]]:
    """The headers as ASGI pairs (lower-case names), for responses written outside an ASGI app too."""
    pairs = [*COMMON_HEADERS, ("Content-Security-Policy", content_security_policy)]
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


class SecurityHeadersMiddleware:
    """Adds the headers to each response that does not set them itself; `csp_by_path` overrides the CSP."""

    def __init__(
        self, app: ASGIApp, content_security_policy: str = API_CSP, csp_by_path: Mapping[str, str] | None = None
    ) -> None:
        self.app = app
        self.default = security_headers(content_security_policy)
        self.by_path = {path: security_headers(csp) for path, csp in (csp_by_path or {}).items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.by_path.get(scope.get("path", ""), self.default)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in extra if pair[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
