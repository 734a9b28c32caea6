"""Refusals about accounts and API keys, raised by the repositories that check them inside the store's lock."""

from __future__ import annotations

from backend.service_errors import Conflict, NotFound


class UserExists(Conflict):
    code = "user_exists"


class UserNotFound(NotFound):
    code = "user_not_found"


class LastAdmin(Conflict):
    """Refused: the change would leave no enabled admin, and nobody could manage the server."""

    code = "last_admin"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class TooManyApiKeys(Conflict):
    code = "too_many_api_keys"
