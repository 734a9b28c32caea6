"""Throttling: per-user requests per minute on /v1/*, failed sign-ins per username and address and per address."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.account_helpers import PASSWORD, assert_error, bearer, create_api_key, create_user, login
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings


@contextmanager
def _server(data_dir: Path, **overrides: object) -> Iterator[RunningServer]:
    settings = make_settings(data_dir, **overrides)
    with ServerThread(settings) as base_url:
        yield RunningServer(base_url=base_url, settings=settings, api_key=credential_for(base_url, settings))


def _login(server: RunningServer, username: str, password: str) -> httpx.Response:
    body = {"username": username, "password": password}
    return httpx.post(f"{server.base_url}/api/auth/login", json=body, timeout=30)


def test_v1_requests_over_the_per_user_limit_get_429_with_retry_after(tmp_path: Path) -> None:
    with _server(tmp_path, rate_limit_rpm=3) as server:
        admin_key = server.api_key
        for _ in range(3):
            assert httpx.get(f"{server.v1}/models", headers=bearer(admin_key)).status_code == 200
        limited = httpx.get(f"{server.v1}/models", headers=bearer(admin_key))
        assert_error(limited, 429, "rate_limit_exceeded")
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert int(limited.headers["Retry-After"]) >= 1 and int(limited.headers["Retry-After"]) <= 20

        with openai.OpenAI(base_url=server.v1, api_key=admin_key, max_retries=0) as sdk, \
                pytest.raises(openai.RateLimitError):
            sdk.models.list()

        # Another user has their own budget; /api/* routes are not counted.
        admin = login(server.base_url, server.settings.admin_username, str(server.settings.admin_password))
        other = create_user(server, admin)
        other_key = create_api_key(server, login(server.base_url, other, PASSWORD))["key"]
        assert httpx.get(f"{server.v1}/models", headers=bearer(other_key)).status_code == 200
        assert httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(admin_key)).status_code == 200


def test_wrong_guesses_from_one_address_make_that_address_wait_for_that_name(tmp_path: Path) -> None:
    with _server(tmp_path, login_free_failures=3, login_max_failures_per_address=100) as server:
        admin = server.settings.admin_username
        for _ in range(3):
            assert_error(_login(server, admin, "wrong-password"), 401)
        throttled = _login(server, admin, str(server.settings.admin_password))  # from here even the right one waits
        assert_error(throttled, 429, "too_many_login_attempts")
        assert throttled.headers["Retry-After"] == "1"
        # Other names from the same address are not affected.
        assert_error(_login(server, "someone-else", "wrong-password"), 401)


def test_failed_sign_ins_are_throttled_per_client_address(tmp_path: Path) -> None:
    with _server(tmp_path, login_free_failures=100, login_max_failures_per_address=4) as server:
        newcomer = create_user(server, login(server.base_url, server.settings.admin_username,
                                             str(server.settings.admin_password)))
        for index in range(4):
            assert_error(_login(server, f"guess-{index}", "wrong-password"), 401)
        throttled = _login(server, newcomer, PASSWORD)  # never signed in from here: waits like everyone
        assert_error(throttled, 429, "too_many_login_attempts")
        # One more failure per 900 s / 4, less what has drained while the four were checked.
        assert 200 <= int(throttled.headers["Retry-After"]) <= 225
        assert _login(server, server.settings.admin_username, str(server.settings.admin_password)).status_code == 200


async def _guess_in_parallel(server: RunningServer, usernames: list[str]) -> Counter[int]:
    """Send one wrong sign-in per name, all at once; the statuses that came back."""
    limits = httpx.Limits(max_connections=len(usernames))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(*(
            client.post("/api/auth/login", json={"username": name, "password": "wrong-password"})
            for name in usernames
        ))
    codes = {401: "invalid_credentials", 429: "too_many_login_attempts"}
    for response in responses:
        assert_error(response, response.status_code, codes.get(response.status_code))
    return Counter(response.status_code for response in responses)


async def test_parallel_wrong_guesses_for_one_username_stop_at_the_limit(tmp_path: Path) -> None:
    with _server(tmp_path, login_free_failures=3, login_max_failures_per_address=1000) as server:
        statuses = await _guess_in_parallel(server, [server.settings.admin_username] * 40)
        assert statuses == {401: 3, 429: 37}
        assert_error(_login(server, server.settings.admin_username, str(server.settings.admin_password)), 429)


async def test_parallel_wrong_guesses_from_one_address_stop_at_the_limit(tmp_path: Path) -> None:
    with _server(tmp_path, login_free_failures=1000, login_max_failures_per_address=4) as server:
        statuses = await _guess_in_parallel(server, [f"guess-{index}" for index in range(40)])
        assert statuses == {401: 4, 429: 36}


def test_successful_sign_ins_are_not_counted_as_failures(tmp_path: Path) -> None:
    with _server(tmp_path, login_free_failures=3, login_max_failures_per_address=3) as server:
        admin, password = server.settings.admin_username, str(server.settings.admin_password)
        assert_error(_login(server, admin, "wrong-password"), 401)
        for _ in range(5):
            assert _login(server, admin, password).status_code == 200
        assert_error(_login(server, "someone-else", "wrong-password"), 401)
        assert_error(_login(server, "someone-else", "wrong-password"), 401)
        assert_error(_login(server, "someone-else", "wrong-password"), 429)  # three failures: the address waits
        assert _login(server, admin, password).status_code == 200  # but not for the admin, who signed in from it


def test_signup_creates_a_user_account_when_enabled(tmp_path: Path) -> None:
    with _server(tmp_path, allow_signup=True) as server:
        response = httpx.post(f"{server.base_url}/api/auth/signup",
                              json={"username": "newcomer", "password": "long-enough-pw"}, timeout=30)
        assert response.status_code == 201
        assert response.json()["user"] == {"username": "newcomer", "role": "user"}
        me = httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(response.json()["access_token"]))
        assert me.json()["role"] == "user"
        taken = httpx.post(f"{server.base_url}/api/auth/signup",
                           json={"username": "Newcomer", "password": "long-enough-pw"}, timeout=30)
        assert_error(taken, 409, "user_exists")
        short = httpx.post(f"{server.base_url}/api/auth/signup",
                           json={"username": "other", "password": "short"}, timeout=30)
        assert_error(short, 422, "password_too_short")
        bad_name = httpx.post(f"{server.base_url}/api/auth/signup",
                              json={"username": "../etc", "password": "long-enough-pw"}, timeout=30)
        assert_error(bad_name, 400, "invalid_username")
