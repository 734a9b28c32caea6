"""The auth service on real storage: parallel guesses meet the limit, credentials bound to one account."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.auth.auth_service import AuthService, InvalidCredentials
from backend.auth.models import User
from backend.auth.rate_limit import FailureLimiter
from backend.auth.tokens import TokenCodec
from backend.auth.user_service import UserService
from backend.service_errors import TooManyRequests, Unauthenticated
from backend.storage.api_key_repository import ApiKeyRepository
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.user_repository import UserRepository

SECRET = "a-test-signing-key-that-is-long-enough-0123456789"
PASSWORD = "a-decent-password-1"
ADMIN = User("root", role="admin")


@dataclass
class Accounts:
    auth: AuthService
    users: UserRepository
    service: UserService


def _accounts(root: Path, per_name: int = 3, per_address: int = 1000) -> Accounts:
    store, layout = JsonStore(root), DataLayout(root)
    users, keys = UserRepository(store, layout), ApiKeyRepository(store, layout)
    service = UserService(users, keys, ConversationRepository(store, layout), layout)
    auth = AuthService(
        users, keys, service, TokenCodec(SECRET, 3600),
        login_failures_by_name=FailureLimiter(per_name, 900),
        login_failures_by_address=FailureLimiter(per_address, 900),
        allow_signup=False,
    )
    return Accounts(auth, users, service)


async def _outcomes(auth: AuthService, attempts: list[tuple[str, str]]) -> Counter[str]:
    results = await asyncio.gather(
        *(auth.login(name, password, "10.0.0.1") for name, password in attempts), return_exceptions=True
    )
    return Counter(type(result).__name__ for result in results)


async def test_parallel_wrong_passwords_are_checked_only_up_to_the_limit(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path, per_name=3)
    await accounts.service.create_user("alice", PASSWORD, "user")
    outcomes = await _outcomes(accounts.auth, [("alice", "wrong-password")] * 20)
    assert outcomes == {InvalidCredentials.__name__: 3, TooManyRequests.__name__: 17}
    with pytest.raises(TooManyRequests):  # the right password waits too, until the window passes
        await accounts.auth.login("alice", PASSWORD, "10.0.0.2")


async def test_a_successful_sign_in_gives_back_the_attempt_it_reserved(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path, per_name=1000, per_address=2)
    await accounts.service.create_user("alice", PASSWORD, "user")
    for _ in range(4):
        await accounts.auth.login("alice", PASSWORD, "10.0.0.1")
    for _ in range(2):  # the limit of 2 failures is still whole
        with pytest.raises(InvalidCredentials):
            await accounts.auth.login("alice", "wrong-password", "10.0.0.1")
    with pytest.raises(TooManyRequests):
        await accounts.auth.login("alice", PASSWORD, "10.0.0.1")


async def test_a_token_names_its_account_not_just_its_username(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path)
    await accounts.service.create_user("root", PASSWORD, "admin")
    await accounts.service.create_user("alice", PASSWORD, "user")
    old = await accounts.auth.login("alice", PASSWORD, "10.0.0.1")
    await accounts.service.delete_user("alice", acting=ADMIN)
    await accounts.service.create_user("alice", PASSWORD, "user")
    with pytest.raises(Unauthenticated) as caught:
        await accounts.auth.authenticate(old.token.token)
    assert caught.value.code == "invalid_credentials"
    fresh = await accounts.auth.login("alice", PASSWORD, "10.0.0.1")
    assert (await accounts.auth.authenticate(fresh.token.token)).uid == fresh.user.uid != old.user.uid


async def test_an_api_key_left_behind_by_a_deleted_account_does_not_serve_a_new_one_of_that_name(
    tmp_path: Path,
) -> None:
    accounts = _accounts(tmp_path)
    await accounts.service.create_user("root", PASSWORD, "admin")
    await accounts.service.create_user("alice", PASSWORD, "user")
    signed_in = await accounts.auth.login("alice", PASSWORD, "10.0.0.1")
    principal = await accounts.auth.authenticate(signed_in.token.token)
    key = (await accounts.auth.create_api_key(principal, "laptop")).key
    assert (await accounts.auth.authenticate(key)).username == "alice"

    # A deletion cut short after the account went but before its keys did (a crash, say).
    await accounts.users.delete("alice")
    await accounts.service.create_user("alice", PASSWORD, "user")
    with pytest.raises(Unauthenticated) as caught:
        await accounts.auth.authenticate(key)
    assert caught.value.code == "invalid_credentials"
