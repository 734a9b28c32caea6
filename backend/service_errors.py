"""Errors a service raises for the client to see, without the service knowing about HTTP, and the
failures of the data store, which the client sees only as a fixed sentence.

Each `ServiceError` carries the status and OpenAI error fields it maps to; `api/errors.py` turns any
of them into the OpenAI error shape. Services stay testable without a web framework.
"""

from __future__ import annotations

from pathlib import Path


class ServiceError(Exception):
    """A refusal meant for the client: the message is shown as is, so it must hold no internals."""

    status: int = 400
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_value"


class Unauthenticated(ServiceError):
    """401: the request did not prove who it is; clients are told to send a Bearer credential."""

    status = 401
    code = "invalid_api_key"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Unprocessable(ServiceError):
    status = 422
    code = "unprocessable"


class TooManyRequests(ServiceError):
    """429 with `Retry-After` in whole seconds, which the OpenAI SDKs honour when they retry."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float, *, code: str | None = None) -> None:
        seconds = max(1, int(-(-retry_after_s // 1)))
        super().__init__(message, code=code, headers={"Retry-After": str(seconds)})
        self.retry_after_s = seconds


# Failures of the JSON store (`storage/json_store.py`). Their messages name files under DATA_DIR, so
# `api/errors.py` logs them and answers a fixed sentence; they live here so routes need no storage import.


class JsonStoreError(Exception):
    """Base of the errors raised by the JSON store."""


class CorruptJSONFile(JsonStoreError):
    """A file did not parse; it has been moved aside to `quarantined_to` and left there for inspection."""

    def __init__(self, path: Path, quarantined_to: Path, reason: str) -> None:
        super().__init__(f"{path} was not valid JSON ({reason}); moved aside to {quarantined_to.name}")
        self.path = path
        self.quarantined_to = quarantined_to
        self.reason = reason


class StoreBusy(JsonStoreError):
    """The file's lock could not be taken in time (another writer holds it for too long)."""


class OutsideDataDir(JsonStoreError):
    """A path that does not lie inside the store's root: refused before touching the disk."""
