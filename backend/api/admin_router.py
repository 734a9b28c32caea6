"""/api/admin/users: account management for admins; anyone else gets 403."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import AdminUser, UserServiceDep
from backend.api.json_body import body_docs, json_body
from backend.auth.models import Role

router = APIRouter(prefix="/api/admin", tags=["admin"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(description="3-64 letters, digits, '_', '.' or '-', starting with a letter or digit.")
    password: str = Field(description="8 characters to 72 bytes.")
    role: Role = "user"


class UserChange(BaseModel):
    """Fields to change; absent ones stay as they are. A new password or `disabled: true` signs the user out."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    password: str | None = None
    disabled: bool | None = None


@router.get("/users")
async def list_users(_: AdminUser, users: UserServiceDep) -> dict[str, Any]:
    records = await users.list_users()
    return {"object": "list", "data": [record.public() for record in records], "total": len(records)}


# Bodies are read by `json_body` after the admin check (see backend/api/json_body.py).
NewUserBody = Annotated[NewUser, Depends(json_body(NewUser))]
UserChangeBody = Annotated[UserChange, Depends(json_body(UserChange))]


@router.post("/users", status_code=201, openapi_extra=body_docs(NewUser))
async def create_user(_: AdminUser, users: UserServiceDep, body: NewUserBody) -> dict[str, Any]:
    return (await users.create_user(body.username, body.password, body.role)).public()


@router.patch("/users/{username}", openapi_extra=body_docs(UserChange))
async def update_user(username: str, admin: AdminUser, users: UserServiceDep, body: UserChangeBody) -> dict[str, Any]:
    record = await users.update_user(
        username, acting=admin, role=body.role, password=body.password, disabled=body.disabled
    )
    return record.public()


@router.delete("/users/{username}")
async def delete_user(username: str, admin: AdminUser, users: UserServiceDep) -> dict[str, Any]:
    """Delete the account and everything of it: API keys, conversations, uploaded files and vectors."""
    deleted = await users.delete_user(username, acting=admin)
    return {
        "username": deleted.username,
        "deleted": True,
        "removed": {
            "api_keys": deleted.api_keys, "conversations": deleted.conversations, "documents": deleted.documents,
            "folders": len(deleted.folders),
        },
    }
