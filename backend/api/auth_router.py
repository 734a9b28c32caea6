"""/api/auth: sign-in (JSON or OAuth2 password form), own account, API keys, optional self sign-up."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from backend.api.deps import AuthServiceDep, CurrentUser
from backend.api.json_body import body_docs, json_body
from backend.auth.account_errors import ApiKeyNotFound
from backend.auth.api_keys import KEY_ID_PATTERN
from backend.auth.auth_service import SignIn

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


# Bodies are read by `json_body` after the route's user (see backend/api/json_body.py).
CredentialsBody = Annotated[Credentials, Depends(json_body(Credentials, forms=True))]
"""JSON or an OAuth2 password form, whichever the client sent."""
PasswordChangeBody = Annotated[PasswordChange, Depends(json_body(PasswordChange))]
NewApiKeyBody = Annotated[NewApiKeyRequest, Depends(json_body(NewApiKeyRequest))]


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
async def login(request: Request, auth: AuthServiceDep, credentials: CredentialsBody) -> dict[str, Any]:
    """Exchange username and password for a sign-in token (`Authorization: Bearer <access_token>`)."""
    return _sign_in_json(await auth.login(credentials.username, credentials.password, _client_address(request)))


@router.post("/signup", status_code=201, openapi_extra=body_docs(Credentials))
async def signup(request: Request, auth: AuthServiceDep, body: CredentialsBody) -> dict[str, Any]:
    """Create a `user` account and sign in; only when the server runs with ALLOW_SIGNUP=true."""
    return _sign_in_json(await auth.signup(body.username, body.password, _client_address(request)))


@router.get("/me")
async def me(user: CurrentUser, auth: AuthServiceDep) -> dict[str, Any]:
    record = await auth.profile(user)
    return {**record.public(), "auth_method": user.auth_method}


@router.put("/me/password", openapi_extra=body_docs(PasswordChange))
async def change_password(
    request: Request, user: CurrentUser, auth: AuthServiceDep, body: PasswordChangeBody
) -> dict[str, Any]:
    """Change your own password; every older sign-in token stops working and a fresh one is returned.

    Wrong `current_password`s are throttled like failed sign-ins (429 with `Retry-After`).
    """
    address = _client_address(request)
    return _sign_in_json(await auth.change_own_password(user, body.current_password, body.new_password, address))


@router.post("/api-keys", status_code=201, openapi_extra=body_docs(NewApiKeyRequest))
async def create_api_key(user: CurrentUser, auth: AuthServiceDep, body: NewApiKeyBody) -> dict[str, Any]:
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
