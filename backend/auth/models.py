"""The signed-in principal as the rest of the server sees it, and the stored account records."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["admin", "user"]
AuthMethod = Literal["token", "api_key"]

USERNAME_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$"
"""Usernames name per-user folders, so they are held to a strict, path-safe pattern (also `ADMIN_USERNAME`'s)."""
USERNAME_PATTERN = re.compile(USERNAME_REGEX)


def new_account_uid() -> str:
    """A random id for one account: a name can be reused after deletion, this id never is."""
    return "acct_" + secrets.token_hex(12)


@dataclass(frozen=True)
class User:
    """A signed-in user; `username` is also the id used for per-user data."""

    username: str
    role: Role = "user"
    auth_method: AuthMethod = "token"
    """How this request proved who it is: a sign-in token (JWT) or an API key."""
    api_key_id: str | None = None
    uid: str | None = None
    """The account's random id (see `UserRecord.uid`); set on every principal that authentication builds."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class UserRecord:
    """An account as stored in `users/users.json`."""

    username: str
    password_hash: str
    role: Role
    created_at: str
    updated_at: str
    disabled: bool = False
    token_version: int = 0
    """Part of every sign-in token; bumped on password change or disabling, which voids older tokens."""
    uid: str = field(default_factory=new_account_uid)
    """Random id, also part of every sign-in token, so that an account deleted and created again under
    the same name does not accept the old account's tokens. Records written before it existed get one
    when the users file is upgraded (see `UserRepository`)."""

    def principal(self, auth_method: AuthMethod = "token", api_key_id: str | None = None) -> User:
        return User(
            username=self.username, role=self.role, auth_method=auth_method, api_key_id=api_key_id, uid=self.uid
        )

    def public(self) -> dict[str, object]:
        """What the API shows about an account: never the hash."""
        return {
            "username": self.username,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored in `users/api_keys.json`: only its SHA-256, never the key."""

    id: str
    username: str
    name: str
    prefix: str
    """The first characters of the key, so its owner can tell keys apart."""
    key_hash: str
    created_at: str
    last_used_at: str | None = None
    user_uid: str | None = None
    """The owning account's `uid`, so a key never serves a later account of the same name;
    None on keys made before accounts had one (those are bound by name, and revoked on deletion)."""

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }
