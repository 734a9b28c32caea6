"""/api/auth: sign-in (JSON or OAuth2 password form), own account, API keys, optional self sign-up."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from backend.api.deps import AuthServiceDep, CurrentUser
from backend.api.errors import APIError
from backend.auth.api_keys import KEY_ID_PATTERN
from backend.auth.auth_service import SignIn
from backend.storage.api_key_repository import ApiKeyNotFound

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Credentials(BaseModel):
    """Username and password; also accepted as an OAuth2 password form (`application/x-www-form-urlencoded`)."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, description="At most 72 bytes in UTF-8 (bcrypt's limit); longer gets 422.")


class NewApiKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="A label to tell keys apart, e.g. `laptop`.")


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1)
    new_password: str = Field(min_length=1, description="8 characters to 72 bytes.")


_CREDENTIALS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": Credentials.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {"username": {"type": "string"}, "password": {"type": "string"},
                                   "grant_type": {"type": "string", "enum": ["password"]}},
                }
            },
        },
    }
}


async def _credentials(request: Request) -> Credentials:
    """Read the body as JSON or as an OAuth2 password form, whichever the client sent."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    payload: Any
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        payload = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            raise APIError(400, "The body is neither JSON nor an OAuth2 password form.", code="invalid_body") from None
    try:
        return Credentials.model_validate(payload)
    except ValidationError as error:
        problems = [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
        raise RequestValidationError(problems) from None


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _sign_in_json(sign_in: SignIn) -> dict[str, Any]:
    return {
        "access_token": sign_in.token.token,
        "token_type": "bearer",
        "expires_in": sign_in.token.expires_in,
        "user": {"username": sign_in.user.username, "role": sign_in.user.role},
    }


@router.post("/login", openapi_extra=_CREDENTIALS_BODY)
async def login(request: Request, auth: AuthServiceDep) -> dict[str, Any]:
    """Exchange username and password for a sign-in token (`Authorization: Bearer <access_token>`)."""
    credentials = await _credentials(request)
    return _sign_in_json(await auth.login(credentials.username, credentials.password, _client_address(request)))


@router.post("/signup", status_code=201)
async def signup(body: Credentials, request: Request, auth: AuthServiceDep) -> dict[str, Any]:
    """Create a `user` account and sign in; only when the server runs with ALLOW_SIGNUP=true."""
    return _sign_in_json(await auth.signup(body.username, body.password, _client_address(request)))


@router.get("/me")
async def me(user: CurrentUser, auth: AuthServiceDep) -> dict[str, Any]:
    record = await auth.profile(user)
    return {**record.public(), "auth_method": user.auth_method}


@router.put("/me/password")
async def change_password(body: PasswordChange, user: CurrentUser, auth: AuthServiceDep) -> dict[str, Any]:
    """Change your own password; every older sign-in token stops working and a fresh one is returned."""
    return _sign_in_json(await auth.change_own_password(user, body.current_password, body.new_password))


@router.post("/api-keys", status_code=201)
async def create_api_key(body: NewApiKeyRequest, user: CurrentUser, auth: AuthServiceDep) -> dict[str, Any]:
    """Create an API key for OpenAI SDKs. `key` is shown in this response only; store it now."""
    created = await auth.create_api_key(user, body.name.strip() or body.name)
    return {**created.record.public(), "key": created.key}


@router.get("/api-keys")
async def list_api_keys(user: CurrentUser, auth: AuthServiceDep) -> dict[str, Any]:
    return {"object": "list", "data": [record.public() for record in await auth.list_api_keys(user)]}


@router.delete("/api-keys/{key_id}")
async def revoke_api_key(key_id: str, user: CurrentUser, auth: AuthServiceDep) -> dict[str, Any]:
    """Revoke one of your keys; it stops working with the next request."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ApiKeyNotFound(f"No API key with id '{key_id}'.", param="id")
    record = await auth.revoke_api_key(user, key_id)
    return {"id": record.id, "deleted": True}
