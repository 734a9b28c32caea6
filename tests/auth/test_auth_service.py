"""The auth service on real storage: parallel guesses meet the throttle, password changes and resets, credentials
bound to one account."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.auth.auth_service import AuthService, InvalidCredentials
from backend.auth.login_throttle import LoginThrottle
from backend.auth.models import User
from backend.auth.tokens import TokenCodec
from backend.auth.user_service import UserService
from backend.service_errors import InvalidInput, TooManyRequests, Unauthenticated
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


def _accounts(root: Path, free: int = 3, per_address: int = 1000, per_name: int = 1000) -> Accounts:
    store, layout = JsonStore(root), DataLayout(root)
    users, keys = UserRepository(store, layout), ApiKeyRepository(store, layout)
    service = UserService(users, keys, ConversationRepository(store, layout), layout)
    auth = AuthService(
        users, keys, service, TokenCodec(SECRET, 3600),
        login_throttle=LoginThrottle(
            free_failures=free, max_delay_s=300, max_per_address=per_address, max_per_username=per_name, window_s=900
        ),
        allow_signup=False,
    )
    return Accounts(auth, users, service)


async def _outcomes(auth: AuthService, attempts: list[tuple[str, str]]) -> Counter[str]:
    results = await asyncio.gather(
        *(auth.login(name, password, "10.0.0.1") for name, password in attempts), return_exceptions=True
    )
    return Counter(type(result).__name__ for result in results)


async def test_parallel_wrong_passwords_are_checked_only_up_to_the_limit(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path, free=3)
    await accounts.service.create_user("alice", PASSWORD, "user")
    outcomes = await _outcomes(accounts.auth, [("alice", "wrong-password")] * 20)
    assert outcomes == {InvalidCredentials.__name__: 3, TooManyRequests.__name__: 17}
    with pytest.raises(TooManyRequests):  # from that address even the right password waits for the delay
        await accounts.auth.login("alice", PASSWORD, "10.0.0.1")
    assert (await accounts.auth.login("alice", PASSWORD, "10.0.0.2")).user.username == "alice"  # elsewhere: fine


async def test_parallel_wrong_passwords_from_many_addresses_stop_at_the_ceiling_of_the_name(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path, free=3, per_name=5)
    await accounts.service.create_user("alice", PASSWORD, "user")
    await accounts.auth.login("alice", PASSWORD, "10.0.0.1")  # alice's own address
    results = await asyncio.gather(
        *(accounts.auth.login("alice", "wrong-password", f"10.1.0.{index}") for index in range(30)),
        return_exceptions=True,
    )
    assert Counter(type(result).__name__ for result in results) == {
        InvalidCredentials.__name__: 5, TooManyRequests.__name__: 25,
    }
    with pytest.raises(TooManyRequests):
        await accounts.auth.login("alice", PASSWORD, "10.2.0.1")
    assert (await accounts.auth.login("alice", PASSWORD, "10.0.0.1")).user.username == "alice"


async def test_a_successful_sign_in_gives_back_the_attempt_it_reserved(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path, free=1000, per_address=2)
    await accounts.service.create_user("alice", PASSWORD, "user")
    for _ in range(4):
        await accounts.auth.login("alice", PASSWORD, "10.0.0.1")
    for index in range(2):  # the address's limit of 2 failures is still whole
        with pytest.raises(InvalidCredentials):
            await accounts.auth.login(f"guess-{index}", "wrong-password", "10.0.0.1")
    with pytest.raises(TooManyRequests):
        await accounts.auth.login("bob", PASSWORD, "10.0.0.1")
    # alice signed in from there: the address's ceiling does not apply to her.
    assert (await accounts.auth.login("alice", PASSWORD, "10.0.0.1")).user.username == "alice"


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


async def test_guessing_the_current_password_with_a_stolen_token_is_throttled_like_sign_in(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path, free=3)
    await accounts.service.create_user("alice", PASSWORD, "user")
    signed_in = await accounts.auth.login("alice", PASSWORD, "10.0.0.1")
    stolen = await accounts.auth.authenticate(signed_in.token.token)
    for _ in range(3):
        with pytest.raises(InvalidInput):
            await accounts.auth.change_own_password(stolen, "wrong-password", "a-new-password-2", "203.0.113.5")
    with pytest.raises(TooManyRequests) as caught:
        await accounts.auth.change_own_password(stolen, PASSWORD, "a-new-password-2", "203.0.113.5")
    assert caught.value.code == "too_many_password_attempts" and caught.value.retry_after_s == 1
    with pytest.raises(TooManyRequests):  # the same guesser signing in meets the same counter
        await accounts.auth.login("alice", "wrong-password", "203.0.113.5")
    changed = await accounts.auth.change_own_password(stolen, PASSWORD, "a-new-password-2", "10.0.0.1")
    assert changed.user.token_version == 1


async def test_an_admin_reset_revokes_the_users_api_keys_and_their_own_change_keeps_them(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path)
    await accounts.service.create_user("root", PASSWORD, "admin")
    await accounts.service.create_user("alice", PASSWORD, "user")
    alice = await accounts.auth.authenticate((await accounts.auth.login("alice", PASSWORD, "10.0.0.1")).token.token)
    key = (await accounts.auth.create_api_key(alice, "laptop")).key

    changed = await accounts.auth.change_own_password(alice, PASSWORD, "own-new-password-2", "10.0.0.1")
    assert (await accounts.auth.authenticate(key)).username == "alice"
    fresh = await accounts.auth.authenticate(changed.token.token)

    await accounts.service.update_user("alice", password="reset-by-admin-3", acting=ADMIN)
    for credential, code in ((key, "invalid_api_key"), (changed.token.token, "token_revoked")):
        with pytest.raises(Unauthenticated) as caught:
            await accounts.auth.authenticate(credential)
        assert caught.value.code == code
    assert fresh.username == "alice"
    assert await accounts.auth.list_api_keys(fresh) == []
