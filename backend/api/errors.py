"""The one place that turns exceptions into OpenAI-shaped error responses.

Every error body is `{"error": {"message", "type", "param", "code"}}`; the official SDK reads
`e.code`, `e.param` and `e.type` from it and picks its exception class from the status.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.field_paths import param_from_location
from backend.llm.port import BackendBusy, BackendUnavailable, LLMError, ModelNotFound, UnsupportedRequest
from backend.service_errors import CorruptJSONFile, JsonStoreError, ServiceError, StoreBusy

logger = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class APIError(Exception):
    """An error meant for the client: status, message and the OpenAI fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def api_error_from_llm(error: LLMError) -> APIError:
    """Map the LLM port's typed errors onto HTTP."""
    if isinstance(error, ModelNotFound):
        return APIError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, UnsupportedRequest):
        return APIError(400, str(error), param=error.param, code="unsupported_value")
    if isinstance(error, BackendBusy):
        return APIError(
            503, str(error), code="backend_busy",
            headers={"Retry-After": str(error.retry_after_s), "x-should-retry": "true"},
        )
    if isinstance(error, BackendUnavailable):
        return APIError(503, str(error), code="backend_unavailable")
    return APIError(500, "The model backend failed; see the server log.", code="backend_error", type="server_error")


def validation_error(error: RequestValidationError) -> APIError:
    """FastAPI's 422 becomes a 400 naming the first offending field, as OpenAI does."""
    problems = error.errors()
    first = problems[0] if problems else {"loc": (), "msg": "Invalid request."}
    param = param_from_location(tuple(first.get("loc", ())))
    message = str(first.get("msg", "Invalid request."))
    if param:
        message = f"Invalid value for '{param}': {message}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return APIError(400, message, param=param, code="invalid_value")


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, error: APIError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(LLMError)
    async def _llm_error(_: Request, error: LLMError) -> JSONResponse:
        mapped = api_error_from_llm(error)
        if mapped.status >= 500:
            logger.warning("LLM backend error: %s", error)
        return error_response(mapped)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, error: ServiceError) -> JSONResponse:
        return error_response(
            APIError(error.status, error.message, param=error.param, code=error.code, headers=error.headers)
        )

    @app.exception_handler(JsonStoreError)
    async def _store_error(request: Request, error: JsonStoreError) -> JSONResponse:
        logger.error("Storage error on %s %s: %s", request.method, request.url.path, error)
        if isinstance(error, StoreBusy):
            return error_response(APIError(503, "Storage is busy; retry shortly.", code="storage_busy",
                                           headers={"Retry-After": "1"}))
        if isinstance(error, CorruptJSONFile):
            return error_response(APIError(500, "A data file was corrupt; it has been moved aside and logged.",
                                           code="corrupt_data", type="server_error"))
        return error_response(APIError(500, "Internal storage error; see the server log.", type="server_error"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail) if error.detail else "Request failed."
        if error.status_code == 404 and error.detail == "Not Found":
            message = "Unknown URL: no such route."
        headers = dict(error.headers or {})
        return error_response(APIError(error.status_code, message, headers=headers))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, error: Exception) -> JSONResponse:
        logger.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(APIError(500, "Internal server error; see the server log.", type="server_error"))
