"""Password hashing with bcrypt (12 rounds), run in a worker thread because one hash takes ~0.25 s.

bcrypt reads at most 72 bytes of a password; longer ones are refused outright (422) rather than
silently truncated, so two different long passwords can never both unlock an account.
"""

from __future__ import annotations

import asyncio
import secrets

import bcrypt

from backend.service_errors import Unprocessable

BCRYPT_ROUNDS = 12
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_CHARS = 8


class PasswordRejected(Unprocessable):
    code = "invalid_password"


def check_length(password: str, param: str = "password") -> bytes:
    """The password's UTF-8 bytes, or a 422 when bcrypt could not use all of them."""
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(
            f"Passwords are limited to {MAX_PASSWORD_BYTES} bytes in UTF-8 (this one has {len(encoded)}).",
            param=param, code="password_too_long",
        )
    return encoded


def check_policy(password: str, param: str = "password") -> None:
    """Rules for a new password: long enough to resist guessing, short enough for bcrypt."""
    check_length(password, param)
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordRejected(
            f"Passwords need at least {MIN_PASSWORD_CHARS} characters.", param=param, code="password_too_short"
        )


def hash_password_sync(password: str) -> str:
    return bcrypt.hashpw(check_length(password), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode("ascii")


def verify_password_sync(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(check_length(password), password_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash never matches
        return False


async def hash_password(password: str) -> str:
    check_length(password)
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(password: str, password_hash: str) -> bool:
    check_length(password)
    return await asyncio.to_thread(verify_password_sync, password, password_hash)


def generate_password() -> str:
    """A strong random password (about 128 bits) for the first admin."""
    return secrets.token_urlsafe(16)
