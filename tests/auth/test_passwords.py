"""bcrypt hashing: 12 rounds, verification, and the 72-byte limit refused instead of truncated."""

from __future__ import annotations

import pytest

from backend.auth.passwords import (
    PasswordRejected,
    check_policy,
    generate_password,
    hash_password,
    verify_password,
)


async def test_hash_uses_bcrypt_with_12_rounds_and_verifies() -> None:
    hashed = await hash_password("correct horse battery")
    assert hashed.startswith("$2b$12$")
    assert await verify_password("correct horse battery", hashed)
    assert not await verify_password("correct horse batterY", hashed)


async def test_password_over_72_bytes_is_refused_with_422_not_truncated() -> None:
    long_password = "a" * 73
    with pytest.raises(PasswordRejected) as caught:
        await hash_password(long_password)
    assert caught.value.status == 422 and caught.value.code == "password_too_long"
    hashed = await hash_password("a" * 72)
    with pytest.raises(PasswordRejected):
        await verify_password(long_password, hashed)


def test_limit_counts_utf8_bytes_not_characters() -> None:
    check_policy("é" * 36)  # 72 bytes
    with pytest.raises(PasswordRejected):
        check_policy("é" * 37)  # 37 characters, 74 bytes


def test_short_passwords_are_refused_for_new_accounts() -> None:
    with pytest.raises(PasswordRejected) as caught:
        check_policy("short")
    assert caught.value.code == "password_too_short"


async def test_malformed_stored_hash_never_matches() -> None:
    assert not await verify_password("anything-at-all", "not-a-bcrypt-hash")


def test_generated_passwords_are_long_and_distinct() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(password) >= 20 for password in passwords)
    for password in passwords:
        check_policy(password)
