"""Request bodies bounded while they are read: 413 in the OpenAI error shape past MAX_REQUEST_MB.

A declared Content-Length over the limit is refused before the app runs and before any of the body
is read; a chunked (or otherwise unannounced) body is counted as it arrives and cut off as soon as
the count passes the limit. File uploads (multipart/form-data under /api/files/) have their own,
larger MAX_UPLOAD_MB. Pure ASGI: BaseHTTPMiddleware would break client-disconnect detection.
"""

from __future__ import annotations

from backend.api.errors import APIError, error_response
from backend.metrics import ASGIApp, Message, Receive, Scope, Send

MB = 1024 * 1024
UPLOAD_PREFIX = "/api/files/"


class _BodyTooLarge(Exception):
    """Raised into the app by `receive` once the body passes the limit; the middleware answers 413."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_request_mb: int, max_upload_mb: int) -> None:
        self.app = app
        self.max_request_mb = max_request_mb
        self.max_upload_mb = max_upload_mb

    def _limit_mb(self, scope: Scope) -> tuple[int, str]:
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if scope.get("path", "").startswith(UPLOAD_PREFIX) and content_type == b"multipart/form-data":
            return self.max_upload_mb, "MAX_UPLOAD_MB"
        return self.max_request_mb, "MAX_REQUEST_MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_mb, setting = self._limit_mb(scope)
        limit = limit_mb * MB
        too_large = APIError(
            413, f"The request body is larger than the limit of {limit_mb} MB ({setting}).", code="request_too_large"
        )
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _refuse(too_large, scope, receive, send)
            return

        received = 0
        cut_off = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, cut_off
            if cut_off:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut_off = True
                    raise _BodyTooLarge
            return message

        async def send_unless_cut_off(message: Message) -> None:
            nonlocal response_started
            # Once the body was cut off, whatever the app answers instead (FastAPI turns errors while
            # reading into a 400) is dropped: the client gets the 413.
            if cut_off and not response_started:
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_cut_off)
        except Exception:
            # The cut-off surfaces as whatever the reader raised (ours, or its own wrapping of it).
            if not cut_off:
                raise
        if cut_off and not response_started:
            await _refuse(too_large, scope, receive, send)


async def _refuse(error: APIError, scope: Scope, receive: Receive, send: Send) -> None:
    # Connection: close, so the server stops reading the rest of the body instead of discarding it.
    response = error_response(error)
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
